"""`cnncodes kfold`: every (head, label, fold) as a Dask task over the stored folds.

Features are scattered to each worker once and every task refers to them; finished folds are
written as they arrive, so a killed or extended run redoes only what is missing.
"""
import hashlib
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cnncodes.classifiers.baselines.settings_checks import check_config
from cnncodes.classifiers.baselines.train import train_baseline
from cnncodes.classifiers.heads.params import resolve_params
from cnncodes.classifiers.heads.registry import BASELINES, HEADS, make_head
from cnncodes.classifiers.heads.views import check_memory, stacked_bytes
from cnncodes.classifiers.runs.ranking import kfold_cells, number
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.outputs import write_atomically
from cnncodes.features.provenance import code_version, made_by_this_code
from cnncodes.features.sealed import SealBroken, all_finite, read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import printable, progress_bar
from cnncodes.pipeline.extraction.cluster import dask_client

from .fit import check_finite, training_accuracy, views_left_out


def run_fold(X, y, folds, fold: int, head: str, params: dict, views_of: tuple | None = None) -> dict:
    """One task: train on every fold but `fold`, score on `fold`. Runs on a Dask worker.
    `views_of` (store folder, feature set): the training rows' cached views train too, read lazily by the task
    itself (never sent to the worker whole).

    One BLAS thread per task, wherever it runs: float sums then happen in the same order in this
    process and on any worker, so the table does not depend on how many workers computed it.
    """
    code = code_version()  # the worker's, as it imported the code it runs (a checkout edited later is not this)
    train, test = (folds >= 0) & (folds != fold), folds == fold
    views = FeatureStore.open(views_of[0]).views(views_of[1], lazy=True)[np.flatnonzero(train)] if views_of else None
    start = time.time()
    with threadpool_limits(limits=1):
        model = make_head(head, **params).fit(X[train], y[train], views=views)
        seconds = time.time() - start
        accuracy = float(model.score(X[test], y[test]))
        train_accuracy = training_accuracy(model, X[train], y[train])  # as `fit` reports it: on the rows it learnt
    return {"accuracy": accuracy, "train_accuracy": train_accuracy, "seconds": seconds,
            "epochs": getattr(model, "n_epochs_", None), "validation_accuracy": model.validation_score_,
            "chosen": model.chosen_params_, "code": code}


def run_baseline_fold(store_dir: str, label: str, fold: int, k: int, kind: str, params: dict) -> dict:
    """A pixel baseline as a fold task: it reads the store's images itself and trains with checkpoints,
    so a killed k-fold run also resumes inside a fold."""
    code, start = code_version(), time.time()
    _, record = train_baseline(store_dir, BaselineConfig(kind, label=label, fold=fold, k=k, **params),
                               progress=False, log=lambda m: None)
    return {"accuracy": record["test_accuracy"], "seconds": time.time() - start, "epochs": record["epochs"],
            "train_accuracy": record.get("train_accuracy"), "validation_accuracy": record.get("validation_accuracy"),
            "chosen": record.get("chosen"), "code": code}


def folder_name(features: str, most: int = 100) -> str:
    """A feature set's name as part of a folder name: itself, or, for a long `A+B+...` join (file names end at 255
    bytes), its start and a digest of the whole; table.json keeps the name in full."""
    if len(features) <= most:
        return features
    return f"{features[:most - 13]}-{hashlib.sha256(features.encode()).hexdigest()[:12]}"


def task_key(head, label, fold, params, basis: str) -> str:
    """File name of a finished fold: the head's parameters and the data's fingerprint are part of it,
    so a result is reused only for the same head on the same features."""
    digest = hashlib.sha256(json.dumps([params, basis], sort_keys=True, default=str).encode()).hexdigest()[:8]
    return f"{head}-{label}-fold{fold}-{digest}"


def saved_fold(path: Path) -> dict | None:
    """A fold's saved result, or None when it is missing or fails its seal."""
    try:
        result = read_sealed(path)
    except SealBroken:
        return None
    return result if "accuracy" in result and all_finite(result) else None


def finished_fold(path: Path) -> dict | None:
    """A fold's saved result made by this code, else None: a missing or damaged one, or one of other code
    (whose figure belongs to that code), is computed again."""
    result = saved_fold(path)
    return result if made_by_this_code(result) else None


def kfold_scores(store_dir, heads: list[str], labels: list[str] | None = None, *, k: int = 6, on: str = "train",
                 features: str | None = None, params: dict | None = None, epochs: int | None = None,
                 scheduler: str | None = None, workers: int = 1, progress: bool = True, log=None,
                 views: bool = True) -> dict:
    """Runs what is missing, then returns (and saves) the table: one row per head, label and settings
    finished on these folds and features, by this call or an earlier one.
    `params` as resolve_params reads them: KEY (every head that takes it), HEAD.KEY, or {HEAD: {KEY: value}}.
    `log` hears about saved fold results computed again (standard error by default).
    With `views` (the default) a set's cached augmented views of the training folds' rows train too; their
    table is its own (`kfold-SET-views-...`), beside the plain codes' one."""
    params = resolve_params(heads, params or {}, epochs)
    log = log or (lambda m: print(m, file=sys.stderr))
    if k < 2:
        raise UserError(f"-k must be at least 2, not {k}: each fold is scored by a model trained on the others")
    if any(h in BASELINES for h in heads) and on != "train":
        raise UserError("pixel baselines use the stored folds over the training split: use --on train")
    if params.get("finetune", {}).get("from_features"):
        raise UserError("kfold fine-tunes each fold from pixels: --from-features is `cnncodes baseline finetune`'s "
                        "(give it --fold I -k K to fine-tune one fold from the maps)")
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features) if any(h not in BASELINES for h in heads) else None  # pixels need none
    source = info.name if info else "pixels"
    labels = list(dict.fromkeys(map(store.canonical_label_set, labels or [None])))
    split = "train" if on == "train" else None
    folds = store.folds(k, on=on, split=split)
    n_views = info.views if info and views and any(h not in BASELINES for h in heads) else 0
    if info and views and (why := views_left_out(store, info)):
        log(f"kfold: {why}")
    if n_views and on != "train":
        log(f"kfold: the views of {info.name} are of training rows only; --on {on} trains on the plain codes")
        n_views = 0
    views_of = (str(store.path), info.name) if n_views else None
    run = Path(store.path) / schema.RUNS_DIR / f"kfold-{folder_name(source)}{'-views' if n_views else ''}-k{k}-{on}"
    basis = (info.fingerprint + (f"+{n_views}views" if n_views else "")) if info else str(store.attrs["content_sha256"])

    def done_file(h, l, f):
        return run / "folds" / f"{task_key(h, l, f, params.get(h, {}), basis)}.json"

    todo = [(h, l, f) for h in heads for l in labels for f in range(k) if finished_fold(done_file(h, l, f)) is None]
    older = sum(saved_fold(done_file(*task)) is not None for task in todo)
    damaged = sum(done_file(*task).exists() for task in todo) - older
    if damaged:  # said once, however many: never a result, never silently redone
        log(printable(f"kfold: computing again {damaged} saved fold result(s) in {run / 'folds'} that fail their "
                      f"checksum or have none (changed on disk, edited by hand, or saved before cnncodes 0.3)"))
    if older:
        log(printable(f"kfold: computing again {older} saved fold result(s) in {run / 'folds'} made by other code "
                      f"(cnncodes' source has changed since, or they predate cnncodes recording its code)"))
    start = time.time()
    if todo:
        codes = store.features(info.name, split=split) if info else None
        if codes is not None:
            check_finite(info, codes)
        check_tasks(store, todo, params, folds, split, codes)  # every refusal before Dask starts
        if n_views and not scheduler:  # linear heads stack every view: those running at once must fit together
            check_stacked_views(todo, folds, n_views, codes.shape[1], min(workers, len(todo)))
        (run / "folds").mkdir(parents=True, exist_ok=True)
        with dask_client(scheduler, workers) as client:
            X = client.scatter(codes, broadcast=True) if info else None
            F = client.scatter(folds, broadcast=True)
            Y = {l: client.scatter(store.labels(l, split=split), broadcast=True) for l in {l for _, l, _ in todo}}
            futures = {(client.submit(run_baseline_fold, str(store.path), l, f, k, h, params.get(h, {}), pure=False)
                        if h in BASELINES else
                        client.submit(run_fold, X, Y[l], F, f, h, params.get(h, {}), views_of, pure=False)): (h, l, f)
                       for h, l, f in todo}
            from distributed import as_completed  # a second of imports, paid only when folds are computed

            for future in progress_bar(as_completed(futures), total=len(futures), desc="kfold", unit="fold",
                                       disable=not progress):  # each fold written as it arrives: the table reads them
                h, l, f = futures[future]
                # the code the worker ran (a cluster's, or this checkout's if it was edited since this process
                # began); a worker that said none ran code too old to say: its fold is not this code's
                result = future.result()
                write_sealed(done_file(h, l, f), {"head": h, "label": l, "fold": f, "params": params.get(h, {}),
                                                  **result, "code": result.get("code")})
        if strays := sum(finished_fold(done_file(*task)) is None for task in todo):
            log(printable(f"kfold: {strays} fold(s) were computed by other code than this process's (cnncodes' source "
                          f"changed while it ran, or the cluster runs another version): they are left out of the "
                          f"table; run the command again with one version"))
    wall = time.time() - start

    rows = table_rows(run / "folds", k, basis)
    table = {"kind": "kfold", "features": source, "fingerprint": info.fingerprint if info else None, "views": n_views,
             "k": k, "on": on,
             "rows": rows, "wall_seconds": round(wall, 2), "tasks_run": len(todo), "workers": scheduler or workers,
             "code": code_version()}
    run.mkdir(parents=True, exist_ok=True)
    write_sealed(run / "table.json", table)
    write_atomically(run / "table.md", format_table(table))
    return {**table, "path": str(run / "table.md")}


def check_tasks(store: FeatureStore, todo: list[tuple], params: dict, folds, split, codes):
    """What a task would refuse on a worker (after a traceback there), refused here: a head's parameters
    against each fold's training rows (an SVM's cv against its smallest class, a dense head's size against
    the codes' width), a baseline's settings against its network (backbone, --size, unfreeze_from)."""
    for head in dict.fromkeys(h for h, _, _ in todo):
        if head in BASELINES:
            check_config(BaselineConfig(head, **params.get(head, {})))
            continue
        model = make_head(head, **params.get(head, {}))
        for label in dict.fromkeys(l for h, l, _ in todo if h == head):
            y = store.labels(label, split=split)
            for fold in sorted({f for h, l, f in todo if (h, l) == (head, label)}):
                train = (folds >= 0) & (folds != fold)
                model.check_data(codes.shape[1:], np.unique(y[train], return_counts=True)[1])


def check_stacked_views(todo: list[tuple], folds, n_views: int, dim: int, tasks: int):
    """Refuses, before any fold, linear heads whose stacked views `tasks` folds at once would not fit in memory."""
    linear = [f for h, _, f in todo if h in HEADS and HEADS[h].stacks_views]
    if linear:
        rows = max(int(((folds >= 0) & (folds != f)).sum()) for f in linear)
        check_memory(stacked_bytes(rows, n_views, dim), min(tasks, len(linear)))


def table_rows(folder: Path, k: int, basis: str) -> list[dict]:
    """One row for every (head, label, parameters) whose k folds are all in `folder`, computed on these
    features by this code: the table is built from every finished fold, so earlier runs' heads stay in it
    until the code changes."""
    groups: dict[tuple, dict[int, dict]] = {}
    for path in sorted(folder.glob("*.json")):
        r = finished_fold(path)
        try:
            ours = path.stem == task_key(r["head"], r["label"], r["fold"], r["params"], basis)
        except (TypeError, KeyError):  # damaged, or not a fold record
            continue
        if ours:  # else computed on other features that had this name
            settings = json.dumps(r["params"], sort_keys=True, default=str)
            groups.setdefault((r["head"], r["label"], settings), {})[r["fold"]] = r
    return [table_row([found[f] for f in range(k)]) for _, found in sorted(groups.items()) if len(found) == k]


def table_row(folds: list[dict]) -> dict:
    """Mean ± std over the folds, the mean training accuracy (None unless every fold has one: older fold
    records and baselines may lack it) and each chosen hyperparameter per fold."""
    first, acc = folds[0], np.array([r["accuracy"] for r in folds])
    train = [number(r.get("train_accuracy")) for r in folds]
    chosen = [r.get("chosen") if isinstance(r.get("chosen"), dict) else {} for r in folds]
    names = list(dict.fromkeys(name for c in chosen for name in c))
    return {"head": first["head"], "label": first["label"], "settings": first["params"],
            "params": run_params(first["head"], first["params"]),
            "folds": acc.round(4).tolist(), "mean": float(acc.mean()), "std": float(acc.std(ddof=1)),
            "train_accuracy": None if None in train else float(np.mean(train)),
            "chosen": {name: [c.get(name) for c in chosen] for name in names},
            "seconds": round(sum(r["seconds"] for r in folds), 2)}


def run_params(head: str, given: dict) -> dict | None:
    """Every parameter the folds ran with, defaults included, as `fit` and `baseline` records keep them:
    `runs` shows a k-fold mean only beside runs of the same parameters. None when they no longer make
    a head (a fold record from an older cnncodes)."""
    try:
        if head in BASELINES:
            return asdict(BaselineConfig(head, **given))
        return make_head(head, **given).get_params()
    except (TypeError, UserError):
        return None


def format_table(table: dict) -> str:
    """The table as Markdown (printed by `kfold`, saved as table.md), laid out as the report shows it."""
    header, rows = kfold_cells(table)  # names and settings come from data: never a terminal's control codes
    views = f", trained with its {table['views']} views" if table.get("views") else ""
    lines = [printable(f"{table['k']}-fold on {table['on']}, features {table['features']}{views}"), "",
             "| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(map(printable, cells)) + " |" for cells in rows]
    return "\n".join(lines) + "\n"
