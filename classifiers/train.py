"""`cnncodes baseline`: trains a pixel baseline on the store's images, split and folds.

Every epoch ends in a checkpoint (weights, optimizer state, history) written atomically, so a
killed run resumes at the next epoch. The run record has the same shape as `fit`'s, so `report`
shows baselines beside the heads.
"""
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from features import schema
from features.errors import UserError
from features.folds import stratified_subset
from features.store import FeatureStore
from .runs import classification_record, save_run, write_json

DEFAULT_EPOCHS = {"cnn": 100, "finetune": 20, "wrn": 200}


@dataclass(frozen=True)
class BaselineConfig:
    kind: str                        # cnn | finetune | wrn
    label: str | None = None
    epochs: int | None = None
    fold: int | None = None          # train on the other folds of the stored 6-fold split, test on this one
    k: int = 6
    batch_size: int = 128
    precision: str = "fp32"
    seed: int = 0
    patience: int | None = None      # early stopping on a 10% validation slice when set
    limit: int | None = None         # a stratified subset of N training rows (quick runs)
    # finetune
    backbone: str = "resnet50"
    weights: str = "imagenet"
    size: int = 224
    head_epochs: int = 2             # phase 1: backbone frozen
    unfreeze_from: str | None = None
    learning_rate: float | None = None
    # wrn
    depth: int = 28
    width: int = 10
    dropout: float = 0.0
    optimizer: str = "sgd"           # sgd (the paper's) or adam (the reference's)
    extra: dict = field(default_factory=dict)

    @property
    def total_epochs(self) -> int:
        return self.epochs or DEFAULT_EPOCHS[self.kind]

    def run_name(self, label: str) -> str:
        where = f"fold{self.fold}of{self.k}" if self.fold is not None else "test"
        return f"baseline-{self.kind}-{label}-{where}-s{self.seed}"


def build(config: BaselineConfig, image_shape, n_classes, phase: int):
    """The model, its optimizer and loss compiled for `phase` (finetune has 2, the others 1)."""
    import keras

    from pipeline.backbones import dtype_policy
    from . import baselines

    keras.utils.set_random_seed(config.seed)
    with dtype_policy(config.precision):
        if config.kind == "cnn":
            built = baselines.basic_cnn(image_shape, n_classes)
            optimizer = keras.optimizers.RMSprop(learning_rate=config.learning_rate or 1e-4)
        elif config.kind == "finetune":
            built = baselines.finetune_model(image_shape, n_classes, config.backbone, config.weights, config.size,
                                             config.seed)
            baselines.set_phase(built, phase, config.unfreeze_from, config.backbone)
            optimizer = (keras.optimizers.Adam(1e-3) if phase == 1 else
                         keras.optimizers.SGD(learning_rate=config.learning_rate or 1e-4, momentum=0.9))
        elif config.kind == "wrn":
            built = baselines.wide_resnet(image_shape, n_classes, config.depth, config.width, config.dropout)
            optimizer = (keras.optimizers.Adam(config.learning_rate or 1e-3) if config.optimizer == "adam" else
                         keras.optimizers.SGD(learning_rate=config.learning_rate or 0.1, momentum=0.9, nesterov=True))
        else:
            raise UserError(f"unknown baseline {config.kind!r}: use cnn, finetune or wrn")
    built.model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return built


def wrn_schedule(config: BaselineConfig):
    """The WRN paper's steps: the rate x0.2 at 30%, 60% and 80% of the epochs (SGD only)."""
    base = config.learning_rate or 0.1
    marks = [int(config.total_epochs * f) for f in (0.3, 0.6, 0.8)]
    return lambda epoch: base * 0.2 ** sum(epoch >= m for m in marks)


class Checkpoint:
    """weights + optimizer variables + state.json per epoch; each file replaced atomically."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state_file = folder / "state.json"

    def state(self) -> dict | None:
        return json.loads(self.state_file.read_text()) if self.state_file.exists() else None

    def save(self, model, state: dict):
        import keras

        tmp = self.folder / ".ckpt.weights.h5"
        model.save_weights(tmp)
        os.replace(tmp, self.folder / "checkpoint.weights.h5")
        arrays = [keras.ops.convert_to_numpy(v) for v in model.optimizer.variables]
        with open(self.folder / ".optimizer.npz", "wb") as f:
            np.savez(f, *arrays)
        os.replace(self.folder / ".optimizer.npz", self.folder / "optimizer.npz")
        write_json(self.state_file, state)  # last: the state names only files already in place

    def restore(self, model):
        model.load_weights(self.folder / "checkpoint.weights.h5")
        model.optimizer.build(model.trainable_variables)
        saved = np.load(self.folder / "optimizer.npz")
        for v, key in zip(model.optimizer.variables, sorted(saved.files, key=lambda k: int(k.split("_")[1]))):
            v.assign(saved[key])


def train_baseline(store_dir, config: BaselineConfig, *, progress: bool = True, log=print):
    import keras

    store = FeatureStore.open(store_dir)
    label = config.label or store.primary_label
    names = store.class_names(label)
    images, labels = store.images(), store.labels(label)
    if config.fold is None:
        train, test = store.split == 0, store.split == 1
    else:
        folds = store.folds(config.k, on="train", split="all")  # one entry per stored row
        if not 0 <= config.fold < config.k:
            raise UserError(f"--fold {config.fold} is outside 0..{config.k - 1}")
        train, test = (folds >= 0) & (folds != config.fold), folds == config.fold
    train_idx = np.flatnonzero(train)
    if config.limit:  # stored rows are grouped by class: take a stratified subset, not the first rows
        train_idx = train_idx[stratified_subset(labels[train_idx], config.limit, config.seed)]
    X, y, X_test, y_test = images[train_idx], labels[train_idx], images[test], labels[test]

    run = Path(store.path) / schema.RUNS_DIR / config.run_name(label)
    run.mkdir(parents=True, exist_ok=True)
    ckpt = Checkpoint(run)
    state = ckpt.state() or {"epoch": 0, "history": {}, "seconds": 0.0, "config": asdict(config)}
    if state["config"] != json.loads(json.dumps(asdict(config))):
        raise UserError(f"{run} holds a run with other settings: delete it or change --seed")
    if state.get("done"):
        log(f"baseline: {run.name} already finished")
        return run, json.loads((run / "record.json").read_text())
    if state["epoch"]:
        log(f"baseline: resuming {run.name} after epoch {state['epoch']}/{config.total_epochs}")

    phases = [(1, min(config.head_epochs, config.total_epochs)), (2, config.total_epochs)] \
        if config.kind == "finetune" else [(1, config.total_epochs)]
    validation = {}
    if config.patience:  # a seeded stratified 10% of the training rows, which are grouped by class
        val = np.zeros(len(y), bool)
        val[stratified_subset(y, max(1, len(y) // 10), config.seed)] = True
        X, y, validation = X[~val], y[~val], {"validation_data": (X[val], y[val])}
    built = None
    for phase, until in phases:
        if state["epoch"] >= until:
            continue
        built = build(config, store.image_shape, len(names), phase)
        if state["epoch"] and state.get("phase", 1) == phase:
            ckpt.restore(built.model)
        elif state["epoch"]:  # the first epoch of phase 2: carry phase 1's weights, a fresh optimizer
            built.model.load_weights(run / "checkpoint.weights.h5")

        class Save(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.start = time.time()

            def on_epoch_end(self, epoch, logs=None):
                for k, v in (logs or {}).items():
                    state["history"].setdefault(k, []).append(float(v))
                state.update(epoch=epoch + 1, phase=phase, seconds=state["seconds"] + time.time() - self.start)
                ckpt.save(self.model, state)

        callbacks = [Save()]
        if config.kind == "wrn" and config.optimizer == "sgd":
            callbacks.append(keras.callbacks.LearningRateScheduler(wrn_schedule(config)))
        if config.patience:
            callbacks.append(keras.callbacks.EarlyStopping(patience=config.patience, restore_best_weights=True))
        built.model.fit(X, y, batch_size=config.batch_size, epochs=until, initial_epoch=state["epoch"],
                        callbacks=callbacks, verbose=2 if progress else 0, **validation)
    if built is None:  # every epoch was done before a kill that came just before the record
        built = build(config, store.image_shape, len(names), phases[-1][0])
        ckpt.restore(built.model)
    predictions = built.model.predict(X_test, batch_size=256, verbose=0).argmax(1)
    record = {
        "kind": "baseline", "head": config.kind, "label": label, "features": f"pixels {store.image_shape[0]}px",
        "fingerprint": str(store.attrs["content_sha256"]), "class_names": names, "image_shape": list(store.image_shape),
        "params": asdict(config), "fit_seconds": round(state["seconds"], 2), "epochs": state["epoch"],
        "seconds_per_epoch": round(state["seconds"] / max(state["epoch"], 1), 2), "history": state["history"],
        "train_accuracy": float(state["history"].get("accuracy", [float("nan")])[-1]),
        **classification_record(y_test, predictions, len(names)),
    }
    built.model.save_weights(run / "model.weights.h5")
    save_run(run, record)
    ckpt.save(built.model, {**state, "done": True})
    return run, record
