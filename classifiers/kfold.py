"""`cnncodes kfold`: every (head, label, fold) as a Dask task over the stored folds.

Features are scattered to each worker once and every task refers to them; finished folds are
written as they arrive, so a killed or extended run redoes only what is missing.
"""
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.cluster import dask_client
from .fit import check_finite
from .params import BASELINES, resolve_params
from .runs import write_json


def run_fold(X, y, folds, fold: int, head: str, params: dict) -> dict:
    """One task: train on every fold but `fold`, score on `fold`. Runs on a Dask worker.

    One BLAS thread per task, wherever it runs: float sums then happen in the same order in this
    process and on any worker, so the table does not depend on how many workers computed it.
    """
    from threadpoolctl import threadpool_limits

    from cnncodes.classifiers.heads import make_head

    train, test = (folds >= 0) & (folds != fold), folds == fold
    start = time.time()
    with threadpool_limits(limits=1):
        model = make_head(head, **params).fit(X[train], y[train])
        accuracy = float(model.score(X[test], y[test]))
    return {"accuracy": accuracy, "seconds": time.time() - start, "epochs": getattr(model, "n_epochs_", None),
            "validation_accuracy": model.validation_score_, "chosen": model.chosen_params_}


def run_baseline_fold(store_dir: str, label: str, fold: int, k: int, kind: str, params: dict) -> dict:
    """A pixel baseline as a fold task: it reads the store's images itself and trains with checkpoints,
    so a killed k-fold run also resumes inside a fold."""
    from cnncodes.classifiers.train import BaselineConfig, train_baseline

    start = time.time()
    _, record = train_baseline(store_dir, BaselineConfig(kind, label=label, fold=fold, k=k, **params),
                               progress=False, log=lambda m: None)
    return {"accuracy": record["test_accuracy"], "seconds": time.time() - start, "epochs": record["epochs"]}


def task_key(head, label, fold, params, basis: str) -> str:
    """File name of a finished fold: the head's parameters and the data's fingerprint are part of it,
    so a result is reused only for the same head on the same features."""
    digest = hashlib.sha256(json.dumps([params, basis], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{head}-{label}-fold{fold}-{digest}"


def finished_fold(path: Path) -> dict | None:
    """A fold's saved result, or None when it is missing or unreadable: a damaged file is computed again."""
    try:
        result = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) and "accuracy" in result else None


def kfold_scores(store_dir, heads: list[str], labels: list[str] | None = None, *, k: int = 6, on: str = "train",
                 features: str | None = None, params: dict | None = None, epochs: int | None = None,
                 scheduler: str | None = None, workers: int = 1, progress: bool = True) -> dict:
    """Runs what is missing, then returns (and saves) the table: one row per head and label.
    `params` as resolve_params reads them: KEY (every head that takes it), HEAD.KEY, or {HEAD: {KEY: value}}."""
    params = resolve_params(heads, params or {}, epochs)
    if k < 2:
        raise UserError(f"-k must be at least 2, not {k}: each fold is scored by a model trained on the others")
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features) if any(h not in BASELINES for h in heads) else None  # pixels need none
    source = info.name if info else "pixels"
    labels = labels or [store.primary_label]
    split = "train" if on == "train" else None
    folds = store.folds(k, on=on, split=split)
    run = Path(store.path) / schema.RUNS_DIR / f"kfold-{source}-k{k}-{on}"
    (run / "folds").mkdir(parents=True, exist_ok=True)
    basis = info.fingerprint if info else str(store.attrs["content_sha256"])

    def done_file(h, l, f):
        return run / "folds" / f"{task_key(h, l, f, params.get(h, {}), basis)}.json"

    results = {(h, l, f): finished_fold(done_file(h, l, f)) for h in heads for l in labels for f in range(k)}
    todo = [task for task, result in results.items() if result is None]
    if any(h in BASELINES for h in heads) and on != "train":
        raise UserError("pixel baselines use the stored folds over the training split: use --on train")
    start = time.time()
    if todo:
        codes = store.features(info.name, split=split) if info else None
        if codes is not None:
            check_finite(info, codes)
        with dask_client(scheduler, workers) as client:
            X = client.scatter(codes, broadcast=True) if info else None
            F = client.scatter(folds, broadcast=True)
            Y = {l: client.scatter(store.labels(l, split=split), broadcast=True) for l in {l for _, l, _ in todo}}
            futures = {(client.submit(run_baseline_fold, str(store.path), l, f, k, h, params.get(h, {}), pure=False)
                        if h in BASELINES else
                        client.submit(run_fold, X, Y[l], F, f, h, params.get(h, {}), pure=False)): (h, l, f)
                       for h, l, f in todo}
            from distributed import as_completed

            for future in tqdm(as_completed(futures), total=len(futures), desc="kfold", unit="fold", disable=not progress):
                h, l, f = futures[future]
                results[h, l, f] = {"head": h, "label": l, "fold": f, "params": params.get(h, {}), **future.result()}
                write_json(done_file(h, l, f), results[h, l, f])
    wall = time.time() - start

    rows = []
    for h in heads:
        for l in labels:
            folds_done = [results[h, l, f] for f in range(k)]
            acc = np.array([r["accuracy"] for r in folds_done])
            rows.append({"head": h, "label": l, "folds": acc.round(4).tolist(), "mean": float(acc.mean()),
                         "std": float(acc.std(ddof=1)), "seconds": round(sum(r["seconds"] for r in folds_done), 2)})
    table = {"kind": "kfold", "features": source, "fingerprint": info.fingerprint if info else None, "k": k, "on": on,
             "rows": rows, "wall_seconds": round(wall, 2), "tasks_run": len(todo), "workers": scheduler or workers}
    write_json(run / "table.json", table)
    (run / "table.md").write_text(format_table(table))
    return {**table, "path": str(run / "table.md")}


def format_table(table: dict) -> str:
    k = table["k"]
    head = "| head | label set | " + " | ".join(f"fold {i} (%)" for i in range(k)) + " | mean ± std (%) | fit time (s) |"
    lines = [f"{k}-fold on {table['on']}, features {table['features']}", "", head, "|" + " --- |" * (k + 4)]
    for r in table["rows"]:
        folds = " | ".join(f"{100 * a:.2f}" for a in r["folds"])
        lines.append(f"| {r['head']} | {r['label']} | {folds} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | {r['seconds']:.1f} |")
    return "\n".join(lines) + "\n"
