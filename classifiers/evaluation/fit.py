"""`cnncodes fit`: one head on a feature set's training split, evaluated on the test split."""
import sys
import time

import numpy as np

from cnncodes.classifiers.heads.params import resolve_params
from cnncodes.classifiers.heads.registry import make_head
from cnncodes.classifiers.heads.scoring import predicted_with_confidence, score_kind
from cnncodes.classifiers.runs.records import classification_record, new_run_dir, run_summary, save_run
from cnncodes.features.errors import UserError
from cnncodes.features.outputs import discard
from cnncodes.features.store import FeatureStore

CHECK_ROWS = 4096  # rows per finiteness pass: memory stays flat on spatial maps


def load_xy(store: FeatureStore, features: str | None, label: str | None, split: str, spatial: bool):
    kind = "spatial" if spatial else "pooled"
    return store.features(features, split=split, kind=kind), store.labels(label, split=split)


def check_finite(info, *arrays):
    """Codes with NaN or inf are an error, never a model: one line naming the feature set, the count and,
    for fp16 sets (whose range large activations overflow), the precision to extract with instead."""
    bad = sum(int(np.count_nonzero(~np.isfinite(X[i:i + CHECK_ROWS]))) for X in arrays
              for i in range(0, len(X), CHECK_ROWS))
    if bad:
        total = sum(X.size for X in arrays)
        fix = ("fp16 overflows on large activations: extract it again with --precision bf16 (or fp32)"
               if info.config.get("precision") == "fp16" else "extract it again, and check the backbone's weights")
        raise UserError(f"feature set {info.name} has {bad} non-finite values (NaN or inf) among its {total} "
                        f"codes: no head can learn from them; {fix}")


def training_views(store: FeatureStore, info, spatial: bool, views: bool, log):
    """The set's cached augmented views (lazy: read in blocks) when it has them and `views` is on, else None;
    a head trains on them beside the plain codes. A head on spatial maps trains on the plain maps (a set's
    views' maps are finetune --from-features's). A join whose parts' views cannot be joined trains on its
    plain codes, and `log` hears why."""
    if views and (why := views_left_out(store, info)):
        log(f"fit: {why}")
    if not views or spatial or not info.views:
        return None
    return store.views(info.name, lazy=True)


def views_left_out(store: FeatureStore, info) -> str | None:
    """Why a join `A+B` trains on plain codes though a part has views (they are of different crops, or a part
    has none), else None."""
    if not info.parts or info.views:
        return None
    parts = [store.feature_set(part) for part in info.parts]
    if not any(p.views for p in parts):
        return None
    try:
        store.views(info.name, lazy=True)
    except UserError as e:
        return f"{info.name} trains on its plain codes: {e}"
    return None


def fit_head(store_dir, head: str, *, features: str | None = None, label: str | None = None, spatial: bool = False,
             params: dict | None = None, epochs: int | None = None, views: bool = True, log=None):
    """Trains, tests, saves the head and its run record; returns (run folder, record).
    `params` as resolve_params reads them: KEY or HEAD.KEY. With `views` (the default), a set's cached
    augmented views train too (`--no-views`: its plain codes only); `log` (standard error by default) hears
    when a join's views cannot be used."""
    log = log or (lambda m: print(m, file=sys.stderr))
    params = resolve_params([head], params or {}, epochs)[head]
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features)
    label = store.canonical_label_set(label)  # --label CLASS finds `class`; the record keeps the stored name
    if spatial and info.spatial_shape is None:
        raise UserError(f"head {head} asked for spatial maps but feature set {info.name} has none: "
                        f"extract with --spatial, or drop --spatial")
    model = make_head(head, **params)
    X, y = load_xy(store, info.name, label, "train", spatial)
    X_test, y_test = load_xy(store, info.name, label, "test", spatial)
    check_finite(info, X, X_test)
    train_views = training_views(store, info, spatial, views, log)
    partial = new_run_dir(store.path, "fit", head, label)  # before training: a read-only store fails now, not after
    try:
        start = time.time()
        model.fit(X, y, views=train_views)
        seconds = time.time() - start
        names = store.class_names(label)
        record = {
            "kind": "fit", "head": head, "label": label, "features": info.name, "fingerprint": info.fingerprint,
            "feature_config": info.config, "image_shape": list(store.image_shape), "class_names": names,
            "params": model.get_params(), "spatial": spatial, "views": model.n_views_, "fit_seconds": round(seconds, 3),
            "train_accuracy": training_accuracy(model, X, y),
            **test_record(model, X_test, y_test, len(names)),
            "history": getattr(model, "history_", None), "epochs": getattr(model, "n_epochs_", None),
            "validation_accuracy": model.validation_score_, "chosen": model.chosen_params_,
            "validation_scores": grid_scores(model),
        }
        run_summary(record)  # the line the command prints: a record it could not show is never saved
        run = save_run(partial, record, model)
    except BaseException:  # an interrupted or failed fit (a full disk) leaves no half-written run behind
        discard(partial)
        raise
    return run, record


def training_accuracy(model, X, y) -> float | None:
    """The head scored on the rows it learnt; None for a head whose model is those rows (knn: 100% by design)."""
    return None if getattr(model, "keeps_training_rows", False) else float(model.score(X, y))


def test_record(model, X_test, y_test, n_classes: int) -> dict:
    predicted, confidence = predicted_with_confidence(model, X_test)
    return classification_record(y_test, predicted, n_classes, confidence, score_kind(model))


def grid_scores(model) -> list | None:
    """[[C, score], ...] of a linear head's C grid (cross-validated for svm, on the holdout for logreg), or
    [[k, score], ...] of knn's candidate k (on its holdout)."""
    scores = getattr(model, "cv_scores_", None) or getattr(model, "scores_", None)
    return [[C, score] for C, score in scores.items()] if scores else None
