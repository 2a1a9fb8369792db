"""Where things live in a store directory. README.md's "Store schema" section documents the same."""
import hashlib
from pathlib import Path

# 2: per-row sources, Fletcher-32 checksums, folds computed on demand.
# 3: class names and the skipped list checksummed, attributes sealed, HDF5 metadata checksummed (libver
#    v110), the source's identity recorded, feature sets bound to their data, kept folds sealed.
SCHEMA_VERSION = 3
DATA_FILE = "data.h5"            # images, labels, split, sources, folds: written once by ingest
FOLDS_DIR = "folds"              # <on>-k<K>-<seal>.npy: fold assignments computed after ingest, when first asked for
FEATURES_DIR = "features"        # one <name>.h5 per complete feature set: pooled, [spatial], [views], [view_maps]
VIEW_MAPS = "view_maps"          # the views' spatial maps (a set with --views and --spatial): dataset and chunk kind
PARTS_SUFFIX = ".parts"          # <name>.parts/: committed chunks of a feature set in progress
RUNS_DIR = "runs"                # one folder per fit / kfold / baseline run
AUDITS_DIR = "audits"            # <feature set>/audit.json and audit.csv: the latest `cnncodes audit` of each set
HASHES_DIR = "hashes"            # <method>-<seal>.npy: the images' perceptual hashes, computed when first asked for
SPLITS = ("train", "test")       # split codes 0 and 1; ingest writes train rows first


# Every dataset carries Fletcher-32 checksums per chunk: a damaged chunk fails the read instead of
# feeding a head. (HDF5 cannot filter variable-length strings: strings are stored fixed-length.)
CHECKSUM = {"fletcher32": True}
# HDF5 1.10 object headers and chunk indexes carry checksums of their own: a flipped shape or attribute
# fails the open. String attributes live outside them, so every file's attributes are also sealed.
LIBVER = ("v110", "v110")
ATTRS_SEAL = "attrs_sha256"      # sha256 of the canonical JSON of a file's other root attributes


def data_path(store: Path) -> Path:
    return Path(store) / DATA_FILE


def features_dir(store: Path) -> Path:
    return Path(store) / FEATURES_DIR


def feature_path(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}.h5"


def parts_dir(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}{PARTS_SUFFIX}"


def audit_dir(store: Path, features: str, most: int = 100) -> Path:
    """STORE/audits/<set>/; a join's long name is cut and told apart by a hash (a file name has 255 bytes)."""
    if len(features) > most:
        features = f"{features[:most - 13]}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"
    return Path(store) / AUDITS_DIR / features


def folds_path(store: Path, on: str, k: int, seal: str) -> Path:
    """A kept fold assignment. `seal` binds its bytes to the data it was computed from (see FeatureStore)."""
    return Path(store) / FOLDS_DIR / f"{on}-k{k}-{seal}.npy"


def fold_files(store: Path) -> dict[tuple[str, int], list[Path]]:
    """(on, k) -> the kept files of that assignment (sealed, or unsealed ones of schema 2)."""
    out = {}
    folder = Path(store) / FOLDS_DIR
    for p in sorted(folder.glob("*-k*.npy")) if folder.exists() else []:
        on, _, rest = p.stem.partition("-k")
        k = rest.split("-")[0]
        if k.isdigit():
            out.setdefault((on, int(k)), []).append(p)
    return out


def fold_seal(path: Path) -> str | None:
    """The seal in a kept fold file's name; None for an unsealed file of schema 2."""
    parts = Path(path).stem.split("-")
    return parts[2] if len(parts) == 3 else None


def hashes_path(store: Path, method: str, seal: str) -> Path:
    """Kept perceptual hashes. `method` names the hashes and the library version that made them; `seal` binds the
    file's bytes to the data they were computed from, as a kept fold assignment's does."""
    return Path(store) / HASHES_DIR / f"{method}-{seal}.npy"


def chunk_file(kind: str, start: int, count: int, crc: int | None = None) -> str:
    """A committed chunk of a set in progress: `pooled-<start>_<rows>-<crc32>.npy` (and `spatial-...`, and
    `views-...` and `view_maps-...` whose rows are the chunk's training rows, each with its views). The CRC of
    the file's bytes is in its name, so a chunk damaged on disk is caught before assembly."""
    return f"{kind}-{start:09d}_{count}" + (f"-{crc:08x}" if crc is not None else "") + ".npy"


def chunk_paths(parts: Path, kind: str = "pooled") -> list[tuple[int, Path]]:
    """(start row, file) of every chunk file of `kind`, several per start row included."""
    return [(int(p.stem.split("-")[1].split("_")[0]), p) for p in Path(parts).glob(f"{kind}-*.npy")]


def chunk_files(parts: Path, kind: str = "pooled") -> dict[int, tuple[int, Path]]:
    """start row -> (row count, file) of every committed chunk of `kind` (pooled files are the commit mark)."""
    out = {}
    for p in Path(parts).glob(f"{kind}-*.npy"):
        rows = p.stem.split("-")[1]
        start, count = rows.split("_")
        out[int(start)] = (int(count), p)
    return out


def committed_chunks(parts: Path) -> dict[int, int]:
    """start row -> row count of every committed chunk."""
    return {start: count for start, (count, _) in chunk_files(parts).items()}
