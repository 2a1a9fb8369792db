"""The Keras pieces that training is made of, as module-level classes: seeded batches and the callbacks of
the heads and the baselines. It imports the backend at its top, so the functions that train import it where
they run, and quick commands (runs, report, the CLI's choices) never load Keras."""
import time

import keras
import numpy as np

from .early_stopping import BestEpoch


class SeededBatches(keras.utils.PyDataset):
    """Shuffled training batches whose order is drawn from (seed, epoch) alone.

    Keras's own shuffle draws from process-wide random state, which other threads share and which a resumed
    fit starts over (it replayed the first epoch's order). FollowEpochs tells the batches which epoch begins;
    fit with shuffle=False, or Keras shuffles the batches again with Python's `random`. `inputs_for_epoch(rng,
    epoch)`, when given, makes each epoch's inputs in place of X (drawn views, augmented images), from the
    epoch's own generator. With `drop_last` the last partial batch of an epoch is left out."""

    def __init__(self, X, y, batch_size: int, seed: int | None, inputs_for_epoch=None, drop_last: bool = False):
        super().__init__()
        self.inputs, self.y, self.batch_size, self.seed, self.drop_last = X, y, batch_size, seed, drop_last
        self.inputs_for_epoch, self.epoch = inputs_for_epoch, None
        self.start_epoch(0)

    def start_epoch(self, epoch: int):
        if epoch == self.epoch:  # epoch 0 is begun here and again by FollowEpochs
            return
        self.epoch, rng = epoch, np.random.default_rng(None if self.seed is None else [self.seed, epoch])
        self.order = rng.permutation(len(self.y))
        self.X = None  # the last epoch's drawn inputs go before the next are drawn: one copy at a time
        self.X = self.inputs if self.inputs_for_epoch is None else self.inputs_for_epoch(rng, epoch)

    def __len__(self):
        return len(self.y) // self.batch_size if self.drop_last else -(-len(self.y) // self.batch_size)

    def __getitem__(self, i):
        rows = self.order[i * self.batch_size:(i + 1) * self.batch_size]
        return self.X[rows], self.y[rows]


class FollowEpochs(keras.callbacks.Callback):
    """Tells SeededBatches which epoch begins."""

    def __init__(self, batches: SeededBatches):
        super().__init__()
        self.batches = batches

    def on_epoch_begin(self, epoch, logs=None):
        self.batches.start_epoch(epoch)


def seeded_batches(X, y, batch_size: int, seed: int | None, inputs_for_epoch=None, drop_last: bool = False):
    """(batches, callback): SeededBatches and the FollowEpochs that drives them."""
    batches = SeededBatches(X, y, batch_size, seed, inputs_for_epoch, drop_last)
    return batches, FollowEpochs(batches)


class KeepBestEpoch(keras.callbacks.Callback):
    """A head's early stopping: BestEpoch's policy, the best epoch's weights restored when training ends."""

    def __init__(self, patience: int, monitor: str = "accuracy"):
        super().__init__()
        self.policy = BestEpoch(patience, monitor=monitor)

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = self.policy.should_stop(epoch + 1, logs, self.model)

    def on_train_end(self, logs=None):
        if self.policy.weights is not None:
            self.model.set_weights(self.policy.weights)


class EndOfEpoch(keras.callbacks.Callback):
    """A baseline's epoch end: the history and time go into the run's `state`, BestEpoch's policy (when
    `stopper` is given) decides whether to stop, and `checkpoint` saves it all before the next epoch."""

    def __init__(self, state: dict, checkpoint, stopper: BestEpoch | None):
        super().__init__()
        self.state, self.checkpoint, self.stopper = state, checkpoint, stopper

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        state = self.state
        for k, v in (logs or {}).items():
            state["history"].setdefault(k, []).append(float(v))
        state.update(epoch=epoch + 1, seconds=state["seconds"] + time.time() - self.start)
        if self.stopper:
            state["stopped"] = self.stopper.should_stop(epoch + 1, logs, self.model)
            state["best"], self.model.stop_training = self.stopper.record, state["stopped"]
        self.checkpoint.save(self.model, state, self.stopper and self.stopper.weights)


class SmoothedSparseCrossentropy(keras.losses.Loss):
    """Cross-entropy against integer labels with label smoothing (Keras's sparse loss has none): the target puts
    1 - s on the class and s spread evenly over all classes."""

    def __init__(self, label_smoothing: float, name="smoothed_sparse_crossentropy", **kwargs):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing

    def call(self, y_true, y_pred):
        labels = keras.ops.cast(keras.ops.reshape(y_true, (-1,)), "int32")
        targets = keras.ops.one_hot(labels, y_pred.shape[-1], dtype=y_pred.dtype)
        return keras.losses.categorical_crossentropy(targets, y_pred, label_smoothing=self.label_smoothing)

    def get_config(self):
        return {**super().get_config(), "label_smoothing": self.label_smoothing}


class WarmupCosine(keras.optimizers.schedules.LearningRateSchedule):
    """The rate by optimizer step: up from rate / warmup to `rate` over the first `warmup` steps, then `rate`,
    or with `cosine` down along a half cosine to 0 at step `total`. Drawn from the optimizer's own step
    counter, which a checkpoint keeps, so a resumed phase goes on along the same curve."""

    def __init__(self, rate: float, warmup: int, total: int, cosine: bool):
        self.rate, self.warmup, self.total, self.cosine = float(rate), int(warmup), int(total), bool(cosine)

    def __call__(self, step):
        step = keras.ops.cast(step, "float32")
        factor = keras.ops.minimum(1.0, (step + 1.0) / self.warmup) if self.warmup else keras.ops.ones(())
        if self.cosine:
            progress = keras.ops.clip((step - self.warmup) / max(self.total - self.warmup, 1), 0.0, 1.0)
            factor = factor * 0.5 * (1.0 + keras.ops.cos(np.pi * progress))
        return self.rate * factor

    def get_config(self):
        return {"rate": self.rate, "warmup": self.warmup, "total": self.total, "cosine": self.cosine}
