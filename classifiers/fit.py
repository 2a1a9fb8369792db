"""`cnncodes fit`: one head on a feature set's training split, evaluated on the test split."""
import shutil
import time

from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from .heads import make_head
from .runs import classification_record, new_run_dir, save_run


def load_xy(store: FeatureStore, features: str | None, label: str | None, split: str, spatial: bool):
    kind = "spatial" if spatial else "pooled"
    return store.features(features, split=split, kind=kind), store.labels(label, split=split)


def fit_head(store_dir, head: str, *, features: str | None = None, label: str | None = None, spatial: bool = False,
             params: dict | None = None):
    """Trains, tests, saves the head and its run record; returns (run folder, record)."""
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features)
    label = label or store.primary_label
    if spatial and info.spatial_shape is None:
        raise UserError(f"head {head} asked for spatial maps but feature set {info.name} has none: "
                        f"extract with --spatial, or drop --spatial")
    model = make_head(head, **(params or {}))
    X, y = load_xy(store, info.name, label, "train", spatial)
    X_test, y_test = load_xy(store, info.name, label, "test", spatial)
    run = new_run_dir(store.path, "fit", head, label)  # before training: a read-only store fails now, not after
    try:
        start = time.time()
        model.fit(X, y)
        seconds = time.time() - start
        names = store.class_names(label)
        record = {
            "kind": "fit", "head": head, "label": label, "features": info.name, "fingerprint": info.fingerprint,
            "feature_config": info.config, "image_shape": list(store.image_shape), "class_names": names,
            "params": model.get_params(), "spatial": spatial, "fit_seconds": round(seconds, 3),
            "train_accuracy": float(model.score(X, y)),
            **classification_record(y_test, model.predict(X_test), len(names)),
            "history": getattr(model, "history_", None), "epochs": getattr(model, "n_epochs_", None),
            "chosen": {k: getattr(model, k) for k in ("C_", "cv_scores_", "scores_") if hasattr(model, k)},
        }
        save_run(run, record, model)
    except BaseException:  # an interrupted or failed fit leaves no half-written run behind
        shutil.rmtree(run, ignore_errors=True)
        raise
    return run, record
