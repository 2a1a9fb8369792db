"""`cnncodes baseline`: the loop that trains a pixel baseline on the store's images, split and folds.

Every epoch ends in a checkpoint (checkpoint.py: weights, optimizer state, the random layers' seeds,
history) written atomically, and every random draw comes from the run's seed and the epoch (seeding.py),
so a killed run resumes at the next epoch and ends as an uninterrupted one would; early stopping is
early_stopping.BestEpoch's, as the heads'. The run's folder and state are baseline_runs.py's. The run
record has the same shape as `fit`'s, so `report` shows baselines beside the heads.
"""
import functools
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from cnncodes.classifiers.runs.records import classification_record, read_record, run_summary, save_run
from cnncodes.classifiers.training.baseline_config import SCORING_SETTINGS, BaselineConfig
from cnncodes.classifiers.training.checkpoint import Checkpoint
from cnncodes.classifiers.training.early_stopping import BestEpoch
from cnncodes.classifiers.training.schedules import wrn_schedule
from cnncodes.classifiers.training.seeding import seed_new_layers, seed_states
from cnncodes.features.errors import UserError
from cnncodes.features.folds import per_class_draw, stratified_subset
from cnncodes.features.outputs import atomic_write
from cnncodes.features.sealed import all_finite, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.backbones import dtype_policy, layer_after

from . import airbench, networks, view_choice
from .baseline_runs import (
    chosen_params,
    is_finished,
    kept_if_resumable,
    phase_done,
    phases,
    run_folder,
    run_state,
    scored_as_asked,
    trained_phases,
    with_stored_label,
)
from .cached_maps import DrawnMaps, above_cut, check_from_features, check_memory
from .settings_checks import check_config


def build(config: BaselineConfig, image_shape, n_classes, size: int | None = None, maps: tuple | None = None):
    """The model (finetune's at input side `size`, config.size by default; with `maps`, (layer, map shape), the
    part above that cut, on its stored maps), every random draw in it (initial weights, dropout and
    augmentation seeds) made from config.seed alone."""
    with dtype_policy(config.precision or "fp32"):  # airbench sets its own when it trains (airbench.sized)
        if config.kind == "cnn":
            built = networks.basic_cnn(image_shape, n_classes)
        elif config.kind == "finetune":
            built = networks.finetune_model(image_shape, n_classes, config.backbone, config.weights,
                                             size or config.size,
                                             config.seed, config.train_batchnorm, config.crop_area, config.precision)
        elif config.kind == "wrn":
            built = networks.wide_resnet(image_shape, n_classes, config.depth, config.width, config.dropout)
        elif config.kind == "airbench":
            built = airbench.airbench_net(image_shape, n_classes)
        else:
            raise UserError(f"unknown baseline {config.kind!r}: use cnn, finetune, wrn or airbench")
        seed_new_layers(built, config.seed)
        if maps:  # after seeding: the layers above the cut start as a fine-tune from pixels would
            built = above_cut(built, config.backbone, *maps, config.unfreeze_from, config.train_batchnorm)
    return built


NO_WEIGHT_DECAY = ["gamma", "beta", "bias"]  # BatchNorm's scales and shifts, and biases: decay only shrinks them


def compile_phase(built, config: BaselineConfig, phase: int, steps_per_epoch: int | None = None):
    """Makes `phase`'s layers trainable (finetune has 2 phases, the others 1) and compiles a fresh optimizer.
    `steps_per_epoch` sets out finetune's warm-up and cosine schedule (--warmup-epochs, --cosine) in steps."""
    import keras  # the backend: only where a network trains, never on quick commands

    from cnncodes.classifiers.training.keras_training import SmoothedSparseCrossentropy

    rate = config.final_learning_rate
    if config.kind == "finetune":
        networks.set_phase(built, phase, config.unfreeze_from, config.backbone, config.train_batchnorm)
        optimizer = keras.optimizers.Adam(1e-3) if phase == 1 else trained_phase_optimizer(
            config, finetune_schedule(config, steps_per_epoch))
    elif config.kind == "wrn":
        optimizer = trained_phase_optimizer(config, rate)
    elif config.kind == "airbench":
        optimizer = airbench.airbench_optimizer(config, steps_per_epoch)
    else:
        optimizer = keras.optimizers.RMSprop(learning_rate=rate)
    loss = (SmoothedSparseCrossentropy(config.label_smoothing) if config.label_smoothing
            else "sparse_categorical_crossentropy")
    built.model.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])


def trained_phase_optimizer(config: BaselineConfig, rate):
    """--optimizer sgd (Nesterov momentum 0.9), adam or adamw at `rate` (a number or a schedule), with
    --weight-decay decoupled from the gradient and never applied to BatchNorm's scales and shifts or biases."""
    import keras

    decay = config.weight_decay or None
    if config.optimizer == "sgd":
        optimizer = keras.optimizers.SGD(learning_rate=rate, momentum=0.9, nesterov=True, weight_decay=decay)
    elif config.optimizer == "adamw":
        optimizer = keras.optimizers.AdamW(learning_rate=rate, weight_decay=config.weight_decay)
    else:
        optimizer = keras.optimizers.Adam(learning_rate=rate, weight_decay=decay)
    if config.weight_decay:
        optimizer.exclude_from_weight_decay(var_names=NO_WEIGHT_DECAY)
    return optimizer


def finetune_schedule(config: BaselineConfig, steps_per_epoch: int | None):
    """finetune's phase-2 rate: a number, or a WarmupCosine over the phase's steps."""
    rate = config.final_learning_rate
    if not (config.warmup_epochs or config.cosine):
        return rate
    if steps_per_epoch is None:
        raise ValueError("a warm-up or cosine schedule needs the steps per epoch")
    from cnncodes.classifiers.training.keras_training import WarmupCosine

    epochs = max(config.total_epochs - min(config.head_epochs, config.total_epochs), 1)
    return WarmupCosine(rate, config.warmup_epochs * steps_per_epoch, epochs * steps_per_epoch, config.cosine)


def size_segments(config: BaselineConfig, start: int, until: int) -> list[tuple[int, int]]:
    """(input side, the epoch it trains until) for epochs start+1..until: progressive resizing's pieces."""
    switch = config.progressive_epochs if config.progressive_size else 0
    if start < switch < until:
        return [(config.size_at(start), switch), (config.size, until)]
    return [(config.size_at(start), until)]


def resized(built, config: BaselineConfig, phase: int, size: int, image_shape, n_classes, steps_per_epoch: int):
    """The model at input side `size` going on from `built`: its weights, optimizer variables (the step count,
    so the rate schedule, included) and random layers' seed states. The weights do not depend on the side:
    the backbone is convolutional and pooled, the device resize holds no weights."""
    new = build(config, image_shape, n_classes, size)
    compile_phase(new, config, phase, steps_per_epoch)
    new.model.set_weights(built.model.get_weights())
    pairs = list(zip(seed_states(new.model), seed_states(built.model), strict=True))
    if built.model.optimizer.built:  # not yet when the switch falls on a phase's first epoch: a fresh one either way
        new.model.optimizer.build(new.model.trainable_variables)
        pairs += zip(new.model.optimizer.variables, built.model.optimizer.variables, strict=True)
    for dst, src in pairs:
        dst.assign(src)
    return new


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
    if config.per_class:  # the draw `curve`'s heads on codes fit on, for the same seed
        train_idx = train_idx[per_class_draw(labels[train_idx], config.per_class, config.seed)]
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
    maps, info, earlier = None, None, None
    if config.from_features:  # checked before any training: a set of maps this fine-tune can start from
        info = store.feature_set(config.from_features)
        maps = (check_from_features(info, config.backbone, config.size, config.weights, config.seed),
                info.spatial_shape[1:])
        if not config.unfreeze_from:  # the layers above the cut, all of them: from the first one on
            config = replace(config, unfreeze_from=layer_after(config.backbone, maps[0]))
    if config.kind == "airbench":  # before any run folder: the network cannot take smaller images, and its
        airbench.check_side(store.image_shape)  # batch size and epochs follow the training rows (part of the name)
        rows = len(train_rows(store, config, store.labels(label))[0])
        config = airbench.sized(config, rows - (max(1, rows // 10) if config.patience else 0))
    run = run_folder(store.path, config, label)
    state = run_state(run, config)
    if is_finished(state, config):
        record, problem = read_record(run / "record.json")
        if problem:
            raise UserError(f"{run} is damaged ({problem}): delete it to train this run from the start")
        if scored_as_asked(record, config):
            log(f"baseline: {run.name} was finished before: nothing to train, its record follows")
            return run, record
        log(f"baseline: {run.name} was finished before: scoring its kept weights again, with the test views asked for")
        # the record says how the weights were trained (a run stopped early is finished for a larger --epochs too),
        # and which test figures came before: scoring the test split again is never silent
        earlier = [*record.get("earlier_scores", []), {name: record["params"].get(name) for name in SCORING_SETTINGS}
                   | {"test_accuracy": record["test_accuracy"]}]
        config = replace(BaselineConfig(**record["params"]), test_sides=config.test_sides, test_flip=config.test_flip)
    labels = store.labels(label)
    train_idx, test = train_rows(store, config, labels)
    if len(found := np.unique(labels[train_idx])) < 2:
        raise UserError(f"the training rows hold {len(found)} class{'es' * (len(found) != 1)} of label set {label} "
                        f"({', '.join(names[i] for i in found) or 'no rows'}): a classifier needs two or more (a "
                        f"larger --limit, or another label set)")
    if maps:
        check_memory(info, len(train_idx))
    images = store.features(config.from_features, kind="spatial") if maps else store.images()
    X, y, X_test, y_test = images[train_idx], labels[train_idx], images[test], labels[test]
    del images
    view_maps = None  # the training rows' views' maps: store.views' rows are the training rows, in store order
    if maps and info.views:
        view_maps = store.views(config.from_features, lazy=True, kind="spatial")[train_idx].compute(scheduler="sync")
    features = f"maps of {config.from_features}" if maps else f"pixels {store.image_shape[0]}px"
    if view_maps is not None:
        features += f", each epoch drawing the plain maps or one of {info.views} views per image"
    if config.kind == "cnn" and (side := networks.basic_cnn_upsampled_side(store.image_shape)):
        features += f", upsampled to {side}px"
        log(f"baseline: the store's {store.image_shape[0]}x{store.image_shape[1]} images are smaller than the "
            f"basic CNN's {side}x{side} minimum: upsampled to {side}x{side} (bicubic, on the device)")

    with kept_if_resumable(run):
        ckpt = Checkpoint(run)
        if state["epoch"]:
            log(f"baseline: resuming {run.name} after epoch {state['epoch']}/{config.total_epochs}")
        state.update(config=asdict(config), done=False)

        validation = {}
        if config.patience:  # validated on plain maps or pixels, as the test split is scored
            val = validation_slice(y, config.seed)
            X, y, validation = X[~val], y[~val], {"validation_data": (X[val], y[val])}
            view_maps = view_maps[~val] if view_maps is not None else None
        draw = DrawnMaps(X, view_maps) if view_maps is not None else None
        size = config.size_at(state["epoch"])
        built = build(config, store.image_shape, len(names), size, maps)
        steps = -(-len(y) // config.batch_size)
        if config.kind == "airbench":  # full batches only; the inputs and whitening come from the training images
            airbench.check_batches(config, len(y))
            steps, draw = len(y) // config.batch_size, airbench.AlternatingFlipTranslate(X, config.seed)
            if not state["epoch"]:
                airbench.fit_to_data(built.model, X, config.seed)
        best = ckpt.restore(built.model) if state["epoch"] else None
        for phase, until in phases(config):
            if phase_done(state, phase, until):
                continue
            compile_phase(built, config, phase, steps_per_epoch=steps)
            if state["phase"] == phase and state["epoch"]:  # resumed inside this phase: its optimizer goes on
                ckpt.restore_optimizer(built.model)
            else:  # a phase begins from the best weights of the one before, with a fresh optimizer and patience
                if best is not None:
                    built.model.set_weights(best)
                state.update(phase=phase, stopped=False, best=None)
                state.setdefault("phase_starts", {})[str(phase)] = state["epoch"]
                best = None
            for segment_size, segment_until in size_segments(config, state["epoch"], until):
                if segment_size != size:  # --progressive: the rest of the epochs at --size, going on as they were
                    built, size = resized(built, config, phase, segment_size, store.image_shape, len(names),
                                          steps), segment_size
                best = train_phase(built.model, config, segment_until, state, ckpt, best, X, y, validation, progress,
                                   selects=size == config.size, draw=draw)
                if state["stopped"]:
                    break
        if best is not None:  # early stopping keeps the best epoch's weights
            built.model.set_weights(best)
        if not all_finite(state["history"]):  # never a record of NaN: the run's numbers mean nothing
            raise UserError(f"baseline {config.kind} diverged (its loss became NaN or inf) at learning rate "
                            f"{config.final_learning_rate}: give a lower --learning-rate ({run} holds the diverged "
                            f"weights: delete it)")

        chosen = chosen_params(config, state)
        view, views = {"size": None, "flip": False}, None
        model_at = functools.cache(lambda side: at_side(built, config, side, store.image_shape, len(names)))
        if view_choice.asked(config):  # chosen on the validation slice; the test split is scored once, below
            view, views = view_choice.choose_view(model_at, config, *validation["validation_data"])
            chosen.update(view_choice.chosen_view(view))
        test_probabilities = view_choice.probabilities(model_at(view["size"]), X_test, view["flip"])
        record = {
            "kind": "baseline", "head": config.kind, "label": label, "features": features,
            "fingerprint": str(store.attrs["content_sha256"]), "class_names": names,
            "image_shape": list(store.image_shape), "params": asdict(config), "fit_seconds": round(state["seconds"], 2),
            "epochs": state["epoch"], "seconds_per_epoch": round(state["seconds"] / max(state["epoch"], 1), 2),
            "history": state["history"],
            # like fit's heads: the kept model scored on the rows it trained on (plain, at --size), not Keras's
            # running average
            "train_accuracy": train_accuracy(built.model, config, X, y),
            "validation_accuracy": (state["history"]["val_accuracy"][chosen["best_epoch"] - 1]
                                    if config.patience else None),
            "phases": trained_phases(config, state),
            "chosen": chosen, **({"test_views": views} if views else {}),
            **({"earlier_scores": earlier} if earlier else {}),
            **classification_record(y_test, test_probabilities.argmax(1), len(names), test_probabilities.max(1)),
        }
        run_summary(record)  # the line the command prints: a record it could not show is never saved
        save_weights_atomically(built.model, run / "model.weights.h5")
        save_run(run, record)
        write_sealed(ckpt.state_file, {**state, "done": True})
    return run, record


def train_accuracy(model, config: BaselineConfig, X, y) -> float:
    """The kept model's accuracy on the rows it trained on; airbench's six test-time views make that a long
    pass, so it scores a seeded 5,000 of them (the record's `train_accuracy_rows` says how many)."""
    if config.kind == "airbench" and len(y) > TRAIN_SCORED_ROWS:
        rows = np.sort(np.random.default_rng([config.seed, 13]).permutation(len(y))[:TRAIN_SCORED_ROWS])
        X, y = X[rows], y[rows]
    return float((view_choice.probabilities(model, X).argmax(1) == y).mean())


TRAIN_SCORED_ROWS = 5000


def save_weights_atomically(model, path: Path):
    """Keras writes the file in place: a kill while it writes leaves none half-written beside a finished state."""
    with atomic_write(path) as (tmp,):  # staged under its own name: Keras wants the .weights.h5 ending
        model.save_weights(tmp)


def at_side(built, config: BaselineConfig, side: int | None, image_shape, n_classes):
    """The trained model fed at input side `side` (None or --size: itself): a model built at that side with the
    same weights (the backbone is convolutional and pooled, the device resize holds no weights)."""
    if side is None or side == config.size:
        return built.model
    model = build(config, image_shape, n_classes, side).model
    model.set_weights(built.model.get_weights())
    return model


def train_phase(model, config: BaselineConfig, until: int, state: dict, ckpt: Checkpoint, best: list | None,
                X, y, validation: dict, progress: bool, selects: bool = True, draw=None) -> list | None:
    """Trains from state["epoch"] to `until`, checkpointing every epoch; returns the best epoch's weights
    under early stopping. Batches are drawn from (seed, epoch), so a resumed epoch sees the same ones; so are,
    with `draw` (DrawnMaps), the epoch's inputs. Without `selects` (--progressive's smaller side) no epoch can be
    kept or stop the run: the model is scored at --size."""
    import keras  # the backend: only where a network trains, never on quick commands

    from cnncodes.classifiers.training.keras_training import EndOfEpoch, seeded_batches

    stopper = BestEpoch(config.patience, state["best"], best) if config.patience and selects else None
    batches, follow_epochs = seeded_batches(X, y, config.batch_size, config.seed, inputs_for_epoch=draw,
                                            drop_last=config.kind == "airbench")
    callbacks = [follow_epochs]
    if config.kind == "wrn" and config.optimizer == "sgd":  # before EndOfEpoch, which then keeps each epoch's rate
        callbacks.append(keras.callbacks.LearningRateScheduler(wrn_schedule(config)))
    callbacks.append(EndOfEpoch(state, ckpt, stopper))
    model.fit(batches, epochs=until, initial_epoch=state["epoch"], shuffle=False, callbacks=callbacks,
              verbose=2 if progress else 0, **validation)
    return stopper.weights if stopper else None
