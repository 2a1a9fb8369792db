"""`cnncodes baseline`: trains a pixel baseline on the store's images, split and folds.

Every epoch ends in a checkpoint (weights, optimizer state, the random layers' seeds, history)
written atomically, and every random draw comes from the run's seed and the epoch, so a killed run
resumes at the next epoch and ends as an uninterrupted one would. The run record has the same shape
as `fit`'s, so `report` shows baselines beside the heads.
"""
import hashlib
import os
import shutil
import time
import zipfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.folds import stratified_subset
from cnncodes.features.sealed import SealBroken, all_finite, read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.backbones import check_layer, check_size, dtype_policy
from . import baselines
from .baseline_config import BaselineConfig, resume_settings
from .heads import seeded_batches
from .params import check_values
from .registry import head_parameters
from .runs import classification_record, read_record, save_run


def run_folder(store: Path, config: BaselineConfig, label: str) -> Path:
    """The latest run folder with these settings, or the path of a new one (made only once training starts)."""
    runs = Path(store) / schema.RUNS_DIR
    existing = sorted(runs.glob(f"*-{config.run_name(label)}")) if runs.exists() else []
    if existing:
        return existing[-1]
    return runs / f"{time.strftime('%Y%m%d-%H%M%S')}-{config.run_name(label)}"


@contextmanager
def kept_if_resumable(run: Path):
    """Makes the run folder; a run that fails before its first checkpoint leaves no empty folder
    behind, one with a checkpoint stays to resume from."""
    new = not run.exists()
    run.mkdir(parents=True, exist_ok=True)
    try:
        yield
    except BaseException:
        if new and not Checkpoint(run).state_file.exists():
            shutil.rmtree(run, ignore_errors=True)
        raise


def build(config: BaselineConfig, image_shape, n_classes):
    """The model, every random draw in it (initial weights, dropout and augmentation seeds) made from
    config.seed alone."""
    with dtype_policy(config.precision):
        if config.kind == "cnn":
            built = baselines.basic_cnn(image_shape, n_classes)
        elif config.kind == "finetune":
            built = baselines.finetune_model(image_shape, n_classes, config.backbone, config.weights, config.size,
                                             config.seed)
        elif config.kind == "wrn":
            built = baselines.wide_resnet(image_shape, n_classes, config.depth, config.width, config.dropout)
        else:
            raise UserError(f"unknown baseline {config.kind!r}: use cnn, finetune or wrn")
    seed_new_layers(built, config.seed)
    return built


def compile_phase(built, config: BaselineConfig, phase: int):
    """Makes `phase`'s layers trainable (finetune has 2 phases, the others 1) and compiles a fresh optimizer."""
    import keras  # the backend: only where a network trains, never on quick commands

    rate = config.final_learning_rate
    if config.kind == "finetune":
        baselines.set_phase(built, phase, config.unfreeze_from, config.backbone)
        optimizer = keras.optimizers.Adam(1e-3) if phase == 1 else keras.optimizers.SGD(learning_rate=rate, momentum=0.9)
    elif config.kind == "wrn":
        optimizer = (keras.optimizers.Adam(rate) if config.optimizer == "adam" else
                     keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True))
    else:
        optimizer = keras.optimizers.RMSprop(learning_rate=rate)
    built.model.compile(optimizer=optimizer, loss="sparse_categorical_crossentropy", metrics=["accuracy"])


def derived_seed(seed: int, *where) -> int:
    """A seed of its own for each place in the model, the same in every process."""
    return int(hashlib.sha256("/".join(map(str, (seed, *where))).encode()).hexdigest()[:8], 16) % (2**31 - 1)


def seed_states(model) -> list:
    """The random layers' seed states: model variables that are not weights, and not saved with them."""
    weights = {id(w) for w in model.weights}
    return [v for v in model.variables if id(v) not in weights]


def seed_new_layers(built, seed: int):
    """Re-draws the new layers' weights from their own initializers, and every seed state, from
    (seed, position in the model).

    Keras seeds unseeded layers from Python's process-wide `random` when it makes them, and a Dask
    worker's heartbeat draws from it on another thread (dask.sizeof), so a baseline trained as a k-fold
    task started from weights that depended on timing. Positions, not names: Keras numbers layer names
    by what was built before in the process. The backbone is left as build_backbone made it."""
    for i, layer in enumerate(built.model.layers):
        if layer is built.backbone:
            continue
        for j, var in enumerate(layer.weights):
            init = getattr(layer, f"{var.name}_initializer", None)
            if init is None:
                raise RuntimeError(f"no initializer found for {var.path}")
            config = init.get_config()
            if "seed" in config:
                init = init.__class__.from_config({**config, "seed": derived_seed(seed, i, j)})
            var.assign(init(var.shape, dtype=var.dtype))
    for i, state in enumerate(seed_states(built.model)):
        state.assign(np.array([derived_seed(seed, "rng", i), 0], dtype=state.dtype))


def wrn_steps(epochs: int) -> list[int]:
    """The epochs after which the WRN paper's rate drops x0.2: 30%, 60% and 80% of the run (SGD only).
    A short run keeps only the steps that fit, each at least one epoch after the one before, so none
    falls on the first epoch (1 epoch: no step; 3 epochs: after epochs 1 and 2)."""
    steps = []
    for fraction in (0.3, 0.6, 0.8):
        step = max(int(epochs * fraction), (steps[-1] if steps else 0) + 1)
        if step < epochs:
            steps.append(step)
    return steps


def wrn_schedule(config: BaselineConfig):
    """The learning rate of each (0-based) epoch under wrn_steps."""
    base, steps = config.final_learning_rate, wrn_steps(config.total_epochs)
    return lambda epoch: base * 0.2 ** sum(epoch >= s for s in steps)


def chosen_params(config: BaselineConfig, state: dict) -> dict:
    """`fit`'s chosen hyperparameters: the epochs trained and the one whose weights were kept (the best
    under --patience, else the last), the learning rate (wrn's first), and the steps wrn's schedule took."""
    best = state["best"]["epoch"] if state["best"] else state["epoch"]
    chosen = {"best_epoch": best, "epochs_trained": state["epoch"], "learning_rate": config.final_learning_rate,
              "batch_size": config.batch_size}
    if config.kind == "wrn" and config.optimizer == "sgd":  # the steps taken (early stopping may come first)
        steps = [str(s) for s in wrn_steps(config.total_epochs) if s < state["epoch"]]
        # no commas: k-fold tables separate each fold's value by them
        chosen["schedule"] = f"x0.2 after epoch{'s' * (len(steps) > 1)} {'/'.join(steps)}" if steps else "constant"
    return chosen


class Checkpoint:
    """Everything training goes on from, in one file per epoch: the weights, the optimizer's variables
    (its step counter included), the random layers' seed states and, under early stopping, the best
    epoch's weights. state.json names the file and is replaced only once the file is complete, so a kill
    at any moment leaves a state and a checkpoint that belong together."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.state_file = folder / "state.json"

    def state(self) -> dict | None:
        if not self.state_file.exists():
            return None
        try:
            return read_sealed(self.state_file)
        except SealBroken as e:
            raise self.damaged(self.state_file, str(e)) from None

    def save(self, model, state: dict, best_weights: list | None = None):
        name = f"checkpoint-{state['epoch']}.npz"
        parts = {"weights": model.weights, "optimizer": model.optimizer.variables, "seeds": seed_states(model),
                 "best": best_weights or []}
        arrays = {f"{part}.{i}": np.asarray(v) for part, values in parts.items() for i, v in enumerate(values)}
        tmp = self.folder / f".{name}.tmp"
        try:
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)
            os.replace(tmp, self.folder / name)
        except BaseException:  # a full disk: no half-written file stays beside the last good checkpoint
            tmp.unlink(missing_ok=True)
            raise
        state["checkpoint"] = name
        write_sealed(self.state_file, state)
        for old in self.folder.glob("checkpoint-*.npz"):
            if old.name != name:
                old.unlink()

    def restore(self, model) -> list | None:
        """Weights and seed states; returns the best epoch's weights when early stopping kept them."""
        saved = self._load()
        self._assign(model.weights, saved, "weights")
        self._assign(seed_states(model), saved, "seeds")
        return self._part(saved, "best") or None

    def restore_optimizer(self, model):
        model.optimizer.build(model.trainable_variables)
        self._assign(model.optimizer.variables, self._load(), "optimizer")

    def _load(self):
        name = (self.state() or {}).get("checkpoint")
        if name is None or not (self.folder / name).exists():
            raise self.damaged(self.folder / (name or "checkpoint-*.npz"))
        try:
            with np.load(self.folder / name) as saved:
                return dict(saved)
        except (OSError, ValueError, zipfile.BadZipFile):
            raise self.damaged(self.folder / name) from None

    def damaged(self, path, why: str = "is damaged or missing") -> UserError:
        return UserError(f"{path} {why}: delete {self.folder} to train this run from the start")

    @staticmethod
    def _part(saved: dict, part: str) -> list:
        return [saved[f"{part}.{i}"] for i in range(sum(k.startswith(f"{part}.") for k in saved))]

    def _assign(self, variables, saved: dict, part: str):
        values = self._part(saved, part)
        if [tuple(v.shape) for v in variables] != [a.shape for a in values]:
            raise UserError(f"the checkpoint in {self.folder} does not fit this model: delete {self.folder} "
                            "to train this run from the start")
        for v, a in zip(variables, values):
            v.assign(a)


@dataclass
class BestEpoch:
    """Early stopping on validation loss whose memory (the best epoch so far and its weights) goes into
    the checkpoint, so a resumed run stops where an uninterrupted one would."""
    patience: int
    record: dict | None = None     # {"epoch": epochs done at the best, "val_loss"}
    weights: list | None = None

    def should_stop(self, epochs_done: int, val_loss: float, model) -> bool:
        if self.record is None or val_loss < self.record["val_loss"]:
            self.record, self.weights = {"epoch": epochs_done, "val_loss": val_loss}, model.get_weights()
            return False
        return epochs_done - self.record["epoch"] >= self.patience


def phase_done(state: dict, phase: int, until: int) -> bool:
    return state["epoch"] >= until or state["phase"] > phase or (state["phase"] == phase and state["stopped"])


def phases(config: BaselineConfig) -> list[tuple[int, int]]:
    """(phase, the epoch it trains until): finetune's frozen and unfrozen phases, one phase otherwise."""
    if config.kind == "finetune":
        return [(1, min(config.head_epochs, config.total_epochs)), (2, config.total_epochs)]
    return [(1, config.total_epochs)]


def run_state(run: Path, config: BaselineConfig) -> dict:
    """The run's training state (a fresh one for a new run), checked against these settings."""
    fresh = {"epoch": 0, "phase": 1, "stopped": False, "best": None, "history": {}, "seconds": 0.0}
    state = {**fresh, **(Checkpoint(run).state() or {"config": asdict(config)})}
    if resume_settings(state["config"]) != resume_settings(asdict(config)):
        raise UserError(f"{run} holds a run with other settings: delete it and run the same command again")
    if state["epoch"] > config.total_epochs:
        raise UserError(f"{run} has trained {state['epoch']} epochs already: give --epochs {state['epoch']} or more")
    return state


def is_finished(state: dict, config: BaselineConfig) -> bool:
    return bool(state.get("done")) and all(phase_done(state, p, until) for p, until in phases(config))


def finished_run(store_dir, config: BaselineConfig) -> Path | None:
    """The run folder of these settings when it has nothing left to train, else None: what
    train_baseline would only read back."""
    store = FeatureStore.open(store_dir)
    config = with_stored_label(store, config)
    run = run_folder(store.path, config, store.canonical_label_set(config.label))
    return run if is_finished(run_state(run, config), config) else None


def with_stored_label(store: FeatureStore, config: BaselineConfig) -> BaselineConfig:
    """--label CLASS as the store names it (`class`), so both find the same run; None stays the default."""
    return config if config.label is None else replace(config, label=store.canonical_label_set(config.label))


def check_config(config: BaselineConfig):
    """Every setting by the rules kfold's --param uses, then against the network it builds (--size, the layer
    to unfreeze from): before any work, in this process, for the CLI and Python callers alike."""
    check_values(config.kind, {name: getattr(config, name) for name in head_parameters(config.kind)})
    if config.kind == "finetune":  # the backbone's input is --size, whatever the images' size
        check_size(config.backbone, config.size)
        if config.unfreeze_from:  # builds the network without weights: seconds, not a phase of training first
            check_layer(config.backbone, config.unfreeze_from)


def validation_slice(y, seed: int):
    """A seeded stratified 10% of the training rows (which are grouped by class) for early stopping."""
    val = np.zeros(len(y), bool)
    val[stratified_subset(y, max(1, len(y) // 10), seed)] = True
    return val


def train_rows(store, config: BaselineConfig, labels):
    """(training rows, test mask): the store's split, or the stored folds when config.fold is set."""
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
    return train_idx, test


def train_baseline(store_dir, config: BaselineConfig, *, progress: bool = True, log=print):
    """Trains the run `config` describes, or resumes it, or goes on with it for more epochs; returns
    (run folder, record)."""
    check_config(config)
    store = FeatureStore.open(store_dir)
    config = with_stored_label(store, config)
    label = store.canonical_label_set(config.label)
    names = store.class_names(label)
    run = run_folder(store.path, config, label)
    state = run_state(run, config)
    if is_finished(state, config):
        log(f"baseline: {run.name} was finished before: nothing to train, its record follows")
        record, problem = read_record(run / "record.json")
        if problem:
            raise UserError(f"{run} is damaged ({problem}): delete it to train this run from the start")
        return run, record
    images, labels = store.images(), store.labels(label)
    train_idx, test = train_rows(store, config, labels)
    X, y, X_test, y_test = images[train_idx], labels[train_idx], images[test], labels[test]
    features = f"pixels {store.image_shape[0]}px"
    if config.kind == "cnn" and (side := baselines.basic_cnn_upsampled_side(store.image_shape)):
        features += f", upsampled to {side}px"
        log(f"baseline: the store's {store.image_shape[0]}x{store.image_shape[1]} images are smaller than the "
            f"basic CNN's {side}x{side} minimum: upsampled to {side}x{side} (bicubic, on the device)")

    with kept_if_resumable(run):
        ckpt = Checkpoint(run)
        if state["epoch"]:
            log(f"baseline: resuming {run.name} after epoch {state['epoch']}/{config.total_epochs}")
        state.update(config=asdict(config), done=False)

        validation = {}
        if config.patience:
            val = validation_slice(y, config.seed)
            X, y, validation = X[~val], y[~val], {"validation_data": (X[val], y[val])}
        built = build(config, store.image_shape, len(names))
        best = ckpt.restore(built.model) if state["epoch"] else None
        for phase, until in phases(config):
            if phase_done(state, phase, until):
                continue
            compile_phase(built, config, phase)
            if state["phase"] == phase and state["epoch"]:  # resumed inside this phase: its optimizer goes on
                ckpt.restore_optimizer(built.model)
            else:  # a phase begins from the best weights of the one before, with a fresh optimizer and patience
                if best is not None:
                    built.model.set_weights(best)
                state.update(phase=phase, stopped=False, best=None)
                best = None
            best = train_phase(built.model, config, until, state, ckpt, best, X, y, validation, progress)
        if best is not None:  # early stopping keeps the best epoch's weights
            built.model.set_weights(best)
        if not all_finite(state["history"]):  # never a record of NaN: the run's numbers mean nothing
            raise UserError(f"baseline {config.kind} diverged (its loss became NaN or inf) at learning rate "
                            f"{config.final_learning_rate}: give a lower --learning-rate ({run} holds the diverged "
                            f"weights: delete it)")

        def predict(images):  # inference mode: no augmentation, no dropout
            return built.model.predict(images, batch_size=256, verbose=0).argmax(1)

        chosen = chosen_params(config, state)
        record = {
            "kind": "baseline", "head": config.kind, "label": label, "features": features,
            "fingerprint": str(store.attrs["content_sha256"]), "class_names": names,
            "image_shape": list(store.image_shape), "params": asdict(config), "fit_seconds": round(state["seconds"], 2),
            "epochs": state["epoch"], "seconds_per_epoch": round(state["seconds"] / max(state["epoch"], 1), 2),
            "history": state["history"],
            # like fit's heads: the kept model scored on the rows it trained on, not Keras's running average
            "train_accuracy": float((predict(X) == y).mean()),
            "validation_accuracy": (state["history"]["val_accuracy"][chosen["best_epoch"] - 1]
                                    if config.patience else None),
            "chosen": chosen,
            **classification_record(y_test, predict(X_test), len(names)),
        }
        built.model.save_weights(run / "model.weights.h5")
        save_run(run, record)
        write_sealed(ckpt.state_file, {**state, "done": True})
    return run, record


def train_phase(model, config: BaselineConfig, until: int, state: dict, ckpt: Checkpoint, best: list | None,
                X, y, validation: dict, progress: bool) -> list | None:
    """Trains from state["epoch"] to `until`, checkpointing every epoch; returns the best epoch's weights
    under early stopping. Batches are drawn from (seed, epoch), so a resumed epoch sees the same ones."""
    import keras  # the backend: only where a network trains, never on quick commands

    stopper = BestEpoch(config.patience, state["best"], best) if config.patience else None

    class EndOfEpoch(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.start = time.time()

        def on_epoch_end(self, epoch, logs=None):
            for k, v in (logs or {}).items():
                state["history"].setdefault(k, []).append(float(v))
            state.update(epoch=epoch + 1, seconds=state["seconds"] + time.time() - self.start)
            if stopper:
                state["stopped"] = stopper.should_stop(epoch + 1, logs["val_loss"], self.model)
                state["best"], self.model.stop_training = stopper.record, state["stopped"]
            ckpt.save(self.model, state, stopper and stopper.weights)

    batches, follow_epochs = seeded_batches(X, y, config.batch_size, config.seed)
    callbacks = [follow_epochs]
    if config.kind == "wrn" and config.optimizer == "sgd":  # before EndOfEpoch, which then keeps each epoch's rate
        callbacks.append(keras.callbacks.LearningRateScheduler(wrn_schedule(config)))
    callbacks.append(EndOfEpoch())
    model.fit(batches, epochs=until, initial_epoch=state["epoch"], shuffle=False, callbacks=callbacks,
              verbose=2 if progress else 0, **validation)
    return stopper.weights if stopper else None
