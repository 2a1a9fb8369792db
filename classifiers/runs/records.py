"""Run records: every fit, k-fold and baseline leaves its numbers in store/runs/ for `report`."""
import itertools
import re
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import confusion_matrix

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.outputs import claim, discard, new_staging, staging_owner, sync, sync_entry
from cnncodes.features.provenance import code_version
from cnncodes.features.sealed import SealBroken, all_finite, plain, read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import printable

from .persist import has_model, load_model, save_model
from .ranking import (
    Configuration,
    configurations,
    cross_validated_text,
    features_text,
    percent,
    ranked_runs,
    settings_text,
)

LEGACY_MODEL = "model.joblib"  # older cnncodes pickled heads: loaded only when the user trusts the run


# A fit's run is written in a staging folder (outputs.atomic_write's) and renamed into place once its record is
# written: a fit that is killed (SIGKILL: no cleanup runs) never leaves a folder that looks like a run, and the
# next write into runs/ removes what it left.


def folder_part(text: str) -> str:
    """A name from data (a label set, a head) as part of a run folder's name: unsafe characters become '_'."""
    return re.sub(r"[^A-Za-z0-9_.+=-]", "_", text)[:60]


def new_run_dir(store: Path, kind: str, head: str, label: str) -> Path:
    """A fresh staged run folder under STORE/runs/, made before any work, so a store that cannot be written to
    fails at once; save_run publishes it. Names come from data (label sets), so unsafe characters become '_'."""
    runs = Path(store) / schema.RUNS_DIR
    name = "-".join([time.strftime("%Y%m%d-%H%M%S")] + [folder_part(part) for part in (kind, head, label)])
    try:
        runs.mkdir(parents=True, exist_ok=True)
        run = new_staging(runs / name) / name
        run.mkdir()
    except OSError as e:
        raise UserError(f"cannot create a run folder in {runs} ({e.strerror}): make it writable, "
                        f"or copy the store somewhere writable") from None
    return run


def is_staged(run: Path) -> bool:
    return staging_owner(run.parent.name) is not None


def publish(staged: Path) -> Path:
    """Moves a finished run's staged folder to its name, numbered when a run of the same second has it."""
    sync(staged)
    runs = staged.parent.parent
    for i in itertools.count():
        run = runs / (f"{staged.name}-{i}" if i else staged.name)
        try:
            claim(staged, run)  # only where no run is: never onto another
        except FileExistsError:
            continue
        sync_entry(runs)
        discard(staged)
        return run


def classification_record(y_true, y_pred, n_classes: int, confidence=None, score_kind: str = "probability") -> dict:
    """The test split's numbers; with `confidence` (each prediction's score, of `score_kind`) the report can show
    the wrong answers surest first."""
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    record = {"test_accuracy": float((y_true == y_pred).mean()), "per_class_accuracy": per_class.round(4).tolist(),
              "confusion": cm.tolist(), "test_predictions": np.asarray(y_pred).tolist()}
    if confidence is not None:
        record |= {"test_confidence": np.round(np.asarray(confidence, dtype=float), 5).tolist(),
                   "test_score_kind": score_kind}
    return record


def save_run(run: Path, record: dict, model=None) -> Path:
    """The model first, the record last: a run folder with a record.json is complete. A record with NaN or
    inf in it is refused (it would be shown as a result). The record keeps the code that made it (code_version).
    Returns the run's folder: a hidden one made by new_run_dir is renamed into place."""
    record = {**record, "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "code": code_version()}
    if not all_finite(plain(record)):
        raise UserError("the run's numbers are not all finite (NaN or inf): nothing saved; "
                        "check the head's parameters (a learning_rate too high?)")
    if model is not None:
        save_model(model, run)
    write_sealed(run / "record.json", record)
    return publish(run) if is_staged(run) else run


def load_run(run, trust_pickle: bool = False) -> tuple[dict, object]:
    """(record, fitted head or None). A head saved as a pickle by an older cnncodes loads only when
    the user says they trust it: unpickling a file runs whatever code it names."""
    run = Path(run)
    if not (run / "record.json").is_file():
        raise UserError(f"{run} is not a run folder (no record.json): give a folder under STORE/runs/")
    record, problem = read_record(run / "record.json")
    if problem:
        raise UserError(f"{run} is damaged ({problem}): re-run the command that made it")
    if has_model(run):
        return record, load_model(run)
    if (run / LEGACY_MODEL).exists():
        if not trust_pickle:
            raise UserError(f"{run / LEGACY_MODEL} was saved by an older cnncodes as a pickle, which can run code: "
                            f"re-fit it, or pass --trust-model if you made it yourself")
        return record, joblib.load(run / LEGACY_MODEL)
    return record, None


# -- reading every run, a damaged one never hiding the others ------------------------------------------------
RECORD_KEYS = ("kind", "head", "label", "test_accuracy", "class_names", "confusion", "test_predictions")
TABLE_KEYS = ("k", "on", "features", "rows", "wall_seconds")
ROW_KEYS = ("head", "label", "folds", "mean", "std", "seconds")


def read_record(path: Path) -> tuple[dict | None, str | None]:
    """(record, None), or (None, why it cannot be used)."""
    return _read_json(Path(path), record_problem)


def _read_json(path: Path, problem) -> tuple[dict | None, str | None]:
    """A sealed file's content when its seal holds, it has what `problem` asks and every number is finite."""
    try:
        found = read_sealed(path)
    except SealBroken as e:
        return None, f"{path.name} {e}"
    why = problem(found) or (None if all_finite(found) else "holds a number that is not finite (NaN or inf)")
    return (None, f"{path.name} {why}") if why else (found, None)


def record_problem(record) -> str | None:
    """What makes a run record unusable by `runs`, `report` and `predict`, or None."""
    if not isinstance(record, dict):
        return "is not a JSON object"
    missing = [k for k in RECORD_KEYS if k not in record]
    if missing:
        return f"lacks {', '.join(missing)}"
    names, confusion, predictions = record["class_names"], record["confusion"], record["test_predictions"]
    if not _number(record["test_accuracy"]):
        return "has a test_accuracy that is not a number"
    if not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
        return "has class_names that are not a list of names"
    if not (isinstance(confusion, list) and len(confusion) == len(names)
            and all(isinstance(row, list) and len(row) == len(names) and all(map(_count, row)) for row in confusion)):
        return f"has a confusion matrix that is not {len(names)} x {len(names)} counts"
    if not (isinstance(predictions, list) and all(_count(p) and p < len(names) for p in predictions)):
        return "has test_predictions that are not class indices"
    for key in ("train_accuracy", "fit_seconds"):
        if record.get(key) is not None and not _number(record[key]):
            return f"has a {key} that is not a number"
    history = record.get("history")
    if history is not None and not (isinstance(history, dict) and all(
            isinstance(v, list) and all(map(_number, v)) for v in history.values())):
        return "has a history that is not lists of numbers"
    return None


def table_problem(table) -> str | None:
    """What makes a k-fold table.json unusable by `report`, or None."""
    if not isinstance(table, dict):
        return "is not a JSON object"
    missing = [k for k in TABLE_KEYS if k not in table]
    if missing:
        return f"lacks {', '.join(missing)}"
    if not (_count(table["k"]) and isinstance(table["rows"], list)):
        return "has no whole-number k or no list of rows"
    for row in table["rows"]:
        if not (isinstance(row, dict) and all(k in row for k in ROW_KEYS) and isinstance(row["folds"], list)
                and all(map(_number, row["folds"] + [row["mean"], row["std"]]))):
            return f"has a row without {', '.join(ROW_KEYS)}"
    return None


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _count(x) -> bool:
    return isinstance(x, int) and not isinstance(x, bool) and x >= 0


def _scan(store: Path, pattern: str, problem) -> tuple[list[dict], list[tuple[Path, str]]]:
    root = Path(store) / schema.RUNS_DIR
    good, damaged = [], []
    for path in sorted(root.glob(pattern)) if root.exists() else []:
        if path.parent.name.startswith("."):  # a run still being written, or left by a killed one
            continue
        found, why = _read_json(path, problem)
        if why:
            damaged.append((path.parent, why))
        else:
            good.append({**found, "run": str(path.parent)})
    return good, damaged


def all_runs(store: Path) -> list[dict]:
    """Every fit and baseline run whose record can be used, each with `stale`: why it was made from data the
    store no longer holds (None when it was not); damaged ones are in `damaged_runs`."""
    runs = _scan(store, "*/record.json", record_problem)[0]
    return [{**r, "stale": why} for r, why in zip(runs, stale_reasons(store, runs))]


STALE_EXPLAINED = ("[stale]: made from codes or images the store no longer holds (ingested again, or the feature set "
                   "rebuilt since): fit or train it again")


def stale_reasons(store: Path, runs: list[dict]) -> list[str | None]:
    """For each run: why its data is not the store's now (a baseline's images, a fit's feature set), else None.
    None for all when the store itself cannot be opened (its own error says why, elsewhere)."""
    try:
        opened = FeatureStore.open(store)
    except UserError:
        return [None] * len(runs)
    fingerprints = {}

    def current(name: str) -> str | None:
        if name not in fingerprints:
            try:
                fingerprints[name] = opened.feature_set(name).fingerprint
            except UserError:
                fingerprints[name] = None
        return fingerprints[name]

    reasons = []
    for r in runs:  # a baseline records the store's content it trained on, a fit its feature set's fingerprint
        now = opened.content if r.get("kind") == "baseline" else current(str(r.get("features")))
        reasons.append(None if r.get("fingerprint") == now else "made from data the store no longer holds")
    return reasons


def kfold_tables(store: Path) -> list[dict]:
    """Every k-fold table that can be used, oldest name first; damaged ones are in `damaged_runs`."""
    return _scan(store, "kfold-*/table.json", table_problem)[0]


def damaged_runs(store: Path) -> list[tuple[Path, str]]:
    """(run folder, why) for each run record or k-fold table that cannot be read or lacks what it must hold."""
    return _scan(store, "*/record.json", record_problem)[1] + _scan(store, "kfold-*/table.json", table_problem)[1]


def damage_warnings(store: Path) -> list[str]:
    """One line per damaged run, for commands that list runs: they name it and go on with the rest."""
    return [printable(f"warning: skipped {folder}: {why}; delete it, or re-run the command that made it")
            for folder, why in damaged_runs(store)]


def latest_runs(store: Path, every: bool = False) -> list[dict]:
    """Fit and baseline runs on the test split (not a k-fold's per-fold baselines), in ranking order
    (validation accuracy, else the k-fold mean, never test accuracy): the latest of each configuration
    (head, features, label set, parameters), or with `every` all its runs, newest first. Each carries
    `configuration_runs`, the number of runs of its configuration."""
    return ranked_runs(all_runs(store), kfold_tables(store), every=every)


# train and test accuracy right after the label set, where scripts that read this table find them (make demo's test)
RUNS_HEADER = ["head", "features", "weights", "label set", "train accuracy (%)", "test accuracy (%)",
               "validation accuracy (%)", "k-fold mean ± std (%)", "runs", "fit time (s)", "settings"]
TEXT_COLUMNS = {0, 1, 2, 3, 10}  # left-aligned; numbers are right-aligned


def format_runs(runs: list[dict], tables: list[dict] | None = None) -> str:
    """A plain-text table of the given runs (per-fold baselines left out), ranked as `latest_runs`
    ranks them: what was trained on which codes (and weights), how it scored on validation (or k-fold)
    and, beside, on the test split. `tables`: the k-fold tables, by default those of the runs' store."""
    if tables is None:
        tables = kfold_tables(Path(runs[0]["run"]).parent.parent) if runs and "run" in runs[0] else []
    rows = [run_row(r, c) for c in configurations(runs, tables) for r in reversed(c.runs)]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(RUNS_HEADER)]

    def line(cells):
        padded = [c.ljust(w) if i in TEXT_COLUMNS else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "  ".join(padded).rstrip()
    return "\n".join([line(RUNS_HEADER)] + [line(r) for r in rows]) + "\n"


def run_row(r: dict, group: Configuration) -> list[str]:
    count = r.get("configuration_runs") or len(group.runs)  # latest_runs counts what it left out
    extraction = r.get("feature_config") if isinstance(r.get("feature_config"), dict) else {}
    cells = [r.get("head"), features_text(r), extraction.get("weights", "–"), r.get("label"),
             percent(r.get("train_accuracy")), percent(r["test_accuracy"]), percent(r.get("validation_accuracy")),
             cross_validated_text(group.cross_validated), count, f"{number_or(r.get('fit_seconds'), 0):.1f}",
             settings_text(group.settings) or "–"]
    return [printable(c) for c in cells]  # names and settings come from data: never a terminal's control codes


def run_summary(r: dict) -> str:
    """The line `fit` and `baseline` print for the run they made: its accuracies ("–" where a head records none:
    knn's training accuracy), what it chose, and its time."""
    chosen = ", ".join(f"{k} {v}" for k, v in (r.get("chosen") or {}).items())
    validation = r.get("validation_accuracy")
    scores = (f"test accuracy {percent(r['test_accuracy'])}%, train {percent(r.get('train_accuracy'))}"
              + ("%" if r.get("train_accuracy") is not None else "")
              + (f", validation {percent(validation)}%" if validation is not None else ""))
    if r.get("kind") == "baseline":
        return (f"{r['head']} ({r['label']}): {scores}" + (f"; {chosen}" if chosen else f"; {r['epochs']} epochs")
                + f"; {number_or(r.get('seconds_per_epoch'), 0):.1f} s/epoch")
    return (f"{r['head']} on {r['features']} ({r['label']}): {scores}" + (f"; chose {chosen}" if chosen else "")
            + (f"; trained with {r['views']} views" if r.get("views") else "")
            + f"; {number_or(r.get('fit_seconds'), 0):.1f} s")


def number_or(value, default):
    """A record's optional number (which may be absent or null), else the default."""
    return value if _number(value) else default
