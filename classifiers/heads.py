"""Heads over CNN codes, with the scikit-learn estimator API: parameters only in __init__, fitted
state in trailing-underscore attributes, fit returns self. So clone, cross_val_score and
GridSearchCV work on them."""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.preprocessing import LabelEncoder
from tqdm import tqdm

from cnncodes.features.errors import UserError
from cnncodes.features.folds import stratified_subset
from .svm import LinearSVM, as_vectors


def holdout(y, fraction, seed):
    """(fit rows, validation rows): a seeded stratified slice that works for any class count,
    even when the slice is smaller than the number of classes."""
    val = np.zeros(len(y), bool)
    val[stratified_subset(np.asarray(y), max(1, int(round(fraction * len(y)))), seed)] = True
    return np.flatnonzero(~val), np.flatnonzero(val)


def layer_seeds(random_state):
    """An endless stream of seeds drawn from random_state: one for each random layer or initializer."""
    rng = np.random.default_rng(random_state)
    while True:
        yield int(rng.integers(2**31 - 1))


def standardizer(X, axes):
    mean = X.mean(axis=axes, keepdims=True)
    scale = X.std(axis=axes, keepdims=True) + 1e-6
    return mean.astype(np.float32), scale.astype(np.float32)


def seeded_batches(X, y, batch_size: int, seed: int):
    """(batches, callback): shuffled training batches whose order is drawn from (seed, epoch) alone.

    Keras's own shuffle draws from process-wide random state, which other threads share and which a
    resumed fit starts over (it replayed the first epoch's order). The callback tells the batches which
    epoch begins. Fit with shuffle=False, or Keras shuffles the batches again with Python's `random`."""
    import keras

    class SeededBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.start_epoch(0)

        def start_epoch(self, epoch):
            self.order = np.random.default_rng(None if seed is None else [seed, epoch]).permutation(len(y))

        def __len__(self):
            return -(-len(y) // batch_size)

        def __getitem__(self, i):
            rows = self.order[i * batch_size:(i + 1) * batch_size]
            return X[rows], y[rows]

    class FollowEpochs(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            batches.start_epoch(epoch)

    batches = SeededBatches()
    return batches, FollowEpochs()


def best_epoch(patience: int):
    """Early stopping on validation accuracy, ties broken by validation loss, the best epoch's weights
    restored. Accuracy, not loss: the loss keeps rising after the accuracy peaks (more so with
    smoothed labels); the tie-break matters on small validation slices, where accuracy moves in steps."""
    import keras

    class BestEpoch(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.best, self.best_weights, self.waited = None, None, 0

        def on_epoch_end(self, epoch, logs=None):
            score = (logs["val_accuracy"], -logs["val_loss"])
            if self.best is None or score > self.best:
                self.best, self.best_weights, self.waited = score, self.model.get_weights(), 0
            else:
                self.waited += 1
                self.model.stop_training = self.waited >= patience

        def on_train_end(self, logs=None):
            if self.best_weights is not None:
                self.model.set_weights(self.best_weights)

    return BestEpoch()


class KerasHead(ClassifierMixin, BaseEstimator):
    """Shared training loop of the Keras heads: standardised inputs, label smoothing, early stopping on
    the accuracy of a validation slice of the training data, the best epoch's weights kept."""

    def _build(self, input_shape, n_classes, seeds):
        """The network; `seeds` yields one seed per random layer or initializer."""
        raise NotImplementedError

    def fit(self, X, y):
        import keras

        if self.epochs < 1:
            raise UserError(f"epochs must be at least 1, not {self.epochs}")
        X = np.asarray(X, dtype=np.float32)
        self.encoder_ = LabelEncoder().fit(y)
        self.classes_ = self.encoder_.classes_
        y = self.encoder_.transform(y)
        axes = tuple(range(X.ndim - 1))  # per channel, over samples and positions
        self.mean_, self.scale_ = standardizer(X, axes) if self.standardize else (0.0, 1.0)
        X = (X - self.mean_) / self.scale_
        fit, val = holdout(y, self.validation_fraction, self.random_state)
        Y = np.eye(len(self.classes_), dtype=np.float32)[y]  # one-hot: label smoothing needs it
        # Every random draw (initial weights, dropout, batch order) comes from random_state, none from
        # process-wide state, which other threads (a Dask worker's heartbeat) draw from too.
        self.model_ = self._build(X.shape[1:], len(self.classes_), layer_seeds(self.random_state))
        optimizer = keras.optimizers.get({"class_name": self.optimizer, "config": {"learning_rate": self.learning_rate}})
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)
        self.model_.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        batches, follow = seeded_batches(X[fit], Y[fit], self.batch_size, self.random_state)
        history = self.model_.fit(batches, validation_data=(X[val], Y[val]), epochs=self.epochs, shuffle=False,
                                  callbacks=[follow, best_epoch(self.patience)], verbose=self.verbose)
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        self.n_epochs_ = len(self.history_["loss"])
        return self

    def predict_proba(self, X):
        X = (np.asarray(X, dtype=np.float32) - self.mean_) / self.scale_
        return self.model_.predict(X, batch_size=1024, verbose=0)

    def predict(self, X):
        return self.classes_[self.predict_proba(X).argmax(axis=1)]


class DenseHead(KerasHead):
    """The reference head, Dense(1024, relu) -> Dropout(0.5) -> softmax, with dropout on its input
    and label smoothing at a smaller step, which lift it about 2 points on EfficientNet-Lite0 codes
    of CIFAR-10 (bench/RESULTS.md). input_dropout=0, label_smoothing=0, learning_rate=1e-3 is the
    reference's head exactly. Label smoothing makes its probabilities less peaked than the data
    warrant: read them as scores, not calibrated confidences."""

    def __init__(self, hidden=1024, dropout=0.5, input_dropout=0.2, label_smoothing=0.1, epochs=100,
                 learning_rate=3e-4, batch_size=256, optimizer="adam", validation_fraction=0.1, patience=10,
                 standardize=True, random_state=0, verbose=0):
        self.hidden, self.dropout, self.input_dropout, self.label_smoothing = hidden, dropout, input_dropout, label_smoothing
        self.epochs, self.learning_rate, self.batch_size, self.optimizer = epochs, learning_rate, batch_size, optimizer
        self.validation_fraction, self.patience = validation_fraction, patience
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

    def _build(self, input_shape, n_classes, seeds):
        import keras
        from keras.initializers import GlorotUniform

        inputs = keras.Input(input_shape)
        x = keras.layers.GlobalAveragePooling2D()(inputs) if len(input_shape) == 3 else inputs
        x = keras.layers.Dropout(self.input_dropout, seed=next(seeds))(x) if self.input_dropout else x
        x = keras.layers.Dense(self.hidden, activation="relu", kernel_initializer=GlorotUniform(next(seeds)))(x)
        x = keras.layers.Dropout(self.dropout, seed=next(seeds))(x)
        outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=GlorotUniform(next(seeds)))(x)
        return keras.Model(inputs, outputs)


class GapHead(KerasHead):
    """Global average pooling -> softmax: on spatial maps when given them, else on pooled vectors
    (whose global average they already are, so it is the same function)."""

    def __init__(self, epochs=100, learning_rate=1e-3, label_smoothing=0.0, batch_size=256, optimizer="adam",
                 validation_fraction=0.1, patience=10, standardize=True, random_state=0, verbose=0):
        self.epochs, self.learning_rate, self.label_smoothing = epochs, learning_rate, label_smoothing
        self.batch_size, self.optimizer, self.validation_fraction = batch_size, optimizer, validation_fraction
        self.patience, self.standardize, self.random_state, self.verbose = patience, standardize, random_state, verbose

    def _build(self, input_shape, n_classes, seeds):
        import keras

        inputs = keras.Input(input_shape)
        x = keras.layers.GlobalAveragePooling2D()(inputs) if len(input_shape) == 3 else inputs
        initializer = keras.initializers.GlorotUniform(next(seeds))
        outputs = keras.layers.Dense(n_classes, activation="softmax", kernel_initializer=initializer)(x)
        return keras.Model(inputs, outputs)


class LogRegHead(ClassifierMixin, BaseEstimator):
    """L2 multinomial logistic regression (the linear-probe protocol), C chosen on held-out training data.

    Every C is fitted from zero: warm starts along the C path let lbfgs stop at its first step, since
    scikit-learn's objective (mean loss + |w|^2 / (2 C n)) barely changes its gradient when C moves.
    """

    def __init__(self, Cs=(0.001, 0.003, 0.01, 0.03, 0.1, 1.0), validation_fraction=0.1, max_iter=1000, tol=1e-4,
                 standardize=True, random_state=0, verbose=0):
        self.Cs, self.validation_fraction, self.max_iter, self.tol = Cs, validation_fraction, max_iter, tol
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

    def _model(self, C):
        from sklearn.linear_model import LogisticRegression

        return LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol)

    def fit(self, X, y):
        X = self._prepare(np.asarray(X, dtype=np.float32), fit=True)
        self.classes_ = np.unique(y)
        fit, val = holdout(y, self.validation_fraction, self.random_state)
        with tqdm(total=len(self.Cs) + 1, desc="logreg", unit="fit", disable=not self.verbose) as bar:
            self.scores_ = {}
            for C in self.Cs:
                self.scores_[C] = self._model(C).fit(X[fit], y[fit]).score(X[val], y[val])
                bar.update()
            self.C_ = max(self.Cs, key=lambda C: (self.scores_[C], -C))
            self.model_ = self._model(self.C_).fit(X, y)
            bar.update()
        return self

    def _prepare(self, X, fit=False):
        X = as_vectors(X)
        if fit:
            self.mean_, self.scale_ = standardizer(X, (0,)) if self.standardize else (0.0, 1.0)
        return (X - self.mean_) / self.scale_

    def predict_proba(self, X):
        return self.model_.predict_proba(self._prepare(np.asarray(X, dtype=np.float32)))

    def predict(self, X):
        return self.model_.predict(self._prepare(np.asarray(X, dtype=np.float32)))


HEADS = {"dense": DenseHead, "gap": GapHead, "svm": LinearSVM, "logreg": LogRegHead}


def make_head(name: str, **params):
    if name not in HEADS:
        raise UserError(f"unknown head {name!r}: use one of {', '.join(HEADS)}")
    return HEADS[name](**params)
