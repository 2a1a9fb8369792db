"""`cnncodes info --check`: every stored byte read once, and each file named sound, damaged, stale or not
verifiable."""
from pathlib import Path

import h5py

from . import schema
from .feature_sets import STALE, FeatureSetInfo, read_parts
from .fingerprint import NAMES_SEAL, SOURCE_KEYS, SOURCES_SEAL, check_text, content_digest, name_keys
from .folds import read_kept_folds
from .reading import DAMAGE, read_everything, reason
from .sealed import check_listed_files, read_sealed


# -- check --------------------------------------------------------------------------------------------
def check_store(store) -> dict[str, str | None]:
    """Reads every stored byte once: path relative to the store -> None when sound, else why it is
    damaged or cannot be verified. Covers data.h5, every feature set (complete or in progress), the
    kept folds and every JSON file under runs/."""
    out = {schema.DATA_FILE: problem_of(lambda: read_everything(store.data_file)) or check_content(store)}
    if store.version < 3:
        out[f"{schema.DATA_FILE} (class names, attributes)"] = (
            f"not verifiable: store schema {store.version} keeps them without checksums; ingest again (into a "
            f"new --store, or with --reingest) to cover them")
    for s in store.feature_sets():
        out[relative(store, s.path)] = s.damaged or check_set(store, s)
    for (on, k), paths in schema.fold_files(store.path).items():
        for path in paths:
            out[relative(store, path)] = problem_of(lambda: read_kept_folds(store, path, k))
    runs = store.path / schema.RUNS_DIR
    for path in sorted(runs.rglob("*.json")) if runs.exists() else []:
        if any(part.startswith(".") for part in path.relative_to(runs).parts):
            continue  # staged by a write still running (or left by a killed one): not a run's file yet
        out[relative(store, path)] = problem_of(lambda: check_listed_files(path, read_sealed(path)))
    return out


def check_content(store) -> str | None:
    """Recomputes data.h5's digests: values rewritten through HDF5 pass its checksums, not these."""
    with h5py.File(store.data_file, "r") as f:
        if content_digest(f, store.label_sets) != store.content:
            return "its images, labels or split differ from what was ingested (content_sha256)"
        return problem_of(lambda: check_text(f, store.attrs, NAMES_SEAL, name_keys(store.label_sets))
                             or check_text(f, store.attrs, SOURCES_SEAL, SOURCE_KEYS))


def check_set(store, s: FeatureSetInfo) -> str | None:
    if s.complete:
        problem = problem_of(lambda: read_everything(s.path))
    else:
        problem = problem_of(lambda: read_parts(s))
    if problem is None and (why := store.of_other_data(s)):
        return f"{STALE} {why}"  # sound bytes of other data: rebuilt when asked for, never read as this data's
    problem = problem or store.stale(s)
    if problem is None and s.data_sha256 is None:
        problem = ("not verifiable: made before cnncodes bound feature sets to their data; re-run `cnncodes "
                   "features` with its options to bind it (nothing is recomputed)")
    return problem


def problem_of(read) -> str | None:
    try:
        read()
    except DAMAGE as e:
        return reason(e)
    return None


def relative(store, path: Path) -> str:
    return str(Path(path).relative_to(store.path))
