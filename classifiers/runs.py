"""Run records: every fit, k-fold and baseline leaves its numbers in store/runs/ for `report`."""
import json
import os
import time
from pathlib import Path

import joblib
import numpy as np
from sklearn.metrics import confusion_matrix

from features import schema
from features.errors import UserError


def new_run_dir(store: Path, kind: str, head: str, label: str) -> Path:
    base = Path(store) / schema.RUNS_DIR / f"{time.strftime('%Y%m%d-%H%M%S')}-{kind}-{head}-{label}"
    run, i = base, 1
    while run.exists():
        run, i = base.with_name(f"{base.name}-{i}"), i + 1
    run.mkdir(parents=True)
    return run


def write_json(path: Path, obj):
    """Atomic: a reader (or a resumed run) never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, default=_plain))
    os.replace(tmp, path)


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def classification_record(y_true, y_pred, n_classes: int) -> dict:
    cm = confusion_matrix(y_true, y_pred, labels=np.arange(n_classes))
    per_class = cm.diagonal() / np.maximum(cm.sum(axis=1), 1)
    return {"test_accuracy": float((y_true == y_pred).mean()), "per_class_accuracy": per_class.round(4).tolist(),
            "confusion": cm.tolist(), "test_predictions": np.asarray(y_pred).tolist()}


def save_run(run: Path, record: dict, model=None) -> Path:
    if model is not None:
        joblib.dump(model, run / "model.joblib")
    write_json(run / "record.json", {**record, "created": time.strftime("%Y-%m-%dT%H:%M:%S")})
    return run


def load_run(run) -> tuple[dict, object]:
    run = Path(run)
    if not (run / "record.json").exists():
        raise UserError(f"{run} is not a run folder (no record.json): give a folder under STORE/runs/")
    record = json.loads((run / "record.json").read_text())
    model = joblib.load(run / "model.joblib") if (run / "model.joblib").exists() else None
    return record, model


def all_runs(store: Path) -> list[dict]:
    root = Path(store) / schema.RUNS_DIR
    out = []
    for path in sorted(root.glob("*/record.json")) if root.exists() else []:
        record = json.loads(path.read_text())
        record["run"] = str(path.parent)
        out.append(record)
    return out


def latest_runs(store: Path, every: bool = False) -> list[dict]:
    """Fit and baseline runs, oldest first; unless `every`, only the latest of each configuration
    (head, features, label, parameters), so re-running a command does not repeat a row."""
    runs = [r for r in all_runs(store) if r.get("kind") in ("fit", "baseline")]
    if every:
        return runs
    latest = {}
    for r in sorted(runs, key=lambda r: r.get("created", "")):
        key = json.dumps([r.get("head"), r.get("features"), r.get("label"), r.get("params")], sort_keys=True, default=str)
        latest.pop(key, None)
        latest[key] = r
    return list(latest.values())


def format_runs(runs: list[dict]) -> str:
    """A plain-text table of runs: what was trained on which codes (and weights), and how it scored."""
    header = ["head", "features", "weights", "label", "train acc (%)", "test acc (%)", "fit time (s)"]
    rows = [[str(r.get("head")), str(r.get("features")), str((r.get("feature_config") or {}).get("weights", "-")),
             str(r.get("label")), f"{100 * r.get('train_accuracy', float('nan')):.2f}", f"{100 * r['test_accuracy']:.2f}",
             f"{r.get('fit_seconds', 0):.1f}"] for r in runs]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h) for i, h in enumerate(header)]
    line = lambda cells: "  ".join(c.ljust(w) if i < 4 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(header)] + [line(r) for r in rows]) + "\n"
