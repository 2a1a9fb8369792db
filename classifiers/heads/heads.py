"""Heads over CNN codes, with the scikit-learn estimator API: parameters only in __init__, fitted
state in trailing-underscore attributes, fit returns self. So clone, cross_val_score and
GridSearchCV work on them. The registry (registry.py) names them.

keras is imported inside the functions that build or train a network: quick commands (runs, report, the
CLI's head choices) import this module through the registry and never load the backend."""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.linear_model import LogisticRegression

from cnncodes.features.errors import BadParameter
from cnncodes.pipeline.console import progress_bar

from .inputs import as_vectors, fit_standardizer, holdout, new_data, standardize, training_data
from .views import drawn_views, view_count, with_all_views


def layer_seeds(random_state):
    """An endless stream of seeds drawn from random_state: one for each random layer or initializer."""
    rng = np.random.default_rng(random_state)
    while True:
        yield int(rng.integers(2**31 - 1))


# Weights a dense head may have: 2**28 float32 are 1 GiB, 4 GiB with the gradients and Adam's two moments.
# More (hidden=1000000000) ended in the backend's ResourceExhaustedError after 16 s of allocating.
MAX_DENSE_WEIGHTS = 2**28


class KerasHead(ClassifierMixin, BaseEstimator):
    """Shared training loop of the Keras heads: standardised inputs, label smoothing, early stopping on
    the accuracy of a validation slice of the training data, the best epoch's weights kept."""

    stacks_views = False  # draws one view per row and epoch (views.drawn_views): memory flat in K

    def _build(self, input_shape, n_classes, seeds):
        """The network; `seeds` yields one seed per random layer or initializer."""
        raise NotImplementedError

    def check_data(self, input_shape, class_counts):
        """Whether these parameters can be fitted on rows of `input_shape` with these class sizes: called
        by training_data before any work (and by kfold for each fold before it starts)."""

    def fit(self, X, y, views=None):
        """`views`: (rows, K, dim) cached augmented views of X's rows (optional): each epoch draws, for each
        training row, its plain codes or one of its views; the validation rows are always plain. Early
        stopping is early_stopping.BestEpoch's, on a validation slice of the training rows."""
        import keras

        from cnncodes.classifiers.training.keras_training import KeepBestEpoch, seeded_batches

        X, y = training_data(self, X, y)  # epochs=0 (or "abc") is refused there, as every parameter is
        self.n_views_ = view_count(X, views)
        self.scaler_ = fit_standardizer(X) if self.standardize else None  # per channel, over samples and positions
        X = standardize(self.scaler_, X)
        fit, val = holdout(y, self.validation_fraction, self.random_state)  # by image: its views go with it
        Y = np.eye(len(self.classes_), dtype=np.float32)[y]  # one-hot: label smoothing needs it
        # Every random draw (initial weights, dropout, batch order) comes from random_state, none from
        # process-wide state, which other threads (a Dask worker's heartbeat) draw from too.
        self.model_ = self._build(X.shape[1:], len(self.classes_), layer_seeds(self.random_state))
        optimizer = keras.optimizers.get({"class_name": self.optimizer,  # float: Keras refuses --param learning_rate=1
                                          "config": {"learning_rate": float(self.learning_rate)}})
        loss = keras.losses.CategoricalCrossentropy(label_smoothing=self.label_smoothing)
        self.model_.compile(optimizer=optimizer, loss=loss, metrics=["accuracy"])
        draw = (lambda rng, epoch: drawn_views(X, views, fit, self.scaler_, rng)) if self.n_views_ else None
        batches, follow = seeded_batches(X[fit], Y[fit], self.batch_size, self.random_state, draw)
        best = KeepBestEpoch(self.patience, self.monitor)
        history = self.model_.fit(batches, validation_data=(X[val], Y[val]), epochs=self.epochs, shuffle=False,
                                  callbacks=[follow, best], verbose=self.verbose)
        self.history_ = {k: [float(v) for v in vs] for k, vs in history.history.items()}
        if not all(np.isfinite(v).all() for v in self.history_.values()):
            raise BadParameter(f"{type(self).__name__}: training diverged (its loss became NaN or inf) at "
                               f"learning_rate={self.learning_rate}: lower learning_rate"
                               + ("" if self.standardize else ", or standardize the inputs (standardize=true)"))
        self.n_epochs_ = len(self.history_["loss"])
        self.validation_score_ = best.policy.record["val_accuracy"]
        self.chosen_params_ = {"best_epoch": best.policy.record["epoch"], "epochs_trained": self.n_epochs_,
                               "learning_rate": self.learning_rate, "batch_size": self.batch_size}
        return self

    def predict_proba(self, X):
        X = new_data(self, X)  # checks fitted first
        return self.model_.predict(standardize(self.scaler_, X), batch_size=1024, verbose=0)

    def predict(self, X):
        best = self.predict_proba(X).argmax(axis=1)
        return self.classes_[best]


class DenseHead(KerasHead):
    """The reference head, Dense(1024, relu) -> Dropout(0.5) -> softmax, with dropout on its input
    and label smoothing at a smaller step, which lift it about 2 points on EfficientNet-Lite0 codes
    of CIFAR-10 (bench/HISTORY.md). input_dropout=0, label_smoothing=0, learning_rate=1e-3 is the
    reference's head exactly. It keeps the epoch of the lowest validation loss and waits 20 epochs for a
    lower one: the best of six rules by 3-fold on the training split (bench/RESULTS.md, early stopping).
    Label smoothing makes its probabilities less peaked than the data warrant: read them as scores, not
    calibrated confidences."""

    def __init__(self, hidden=1024, dropout=0.5, input_dropout=0.2, label_smoothing=0.1, epochs=100,
                 learning_rate=3e-4, batch_size=256, optimizer="adam", validation_fraction=0.1, patience=20,
                 monitor="loss", standardize=True, random_state=0, verbose=0):
        self.hidden, self.dropout, self.input_dropout, self.label_smoothing = (
            hidden, dropout, input_dropout, label_smoothing)
        self.epochs, self.learning_rate, self.batch_size, self.optimizer = epochs, learning_rate, batch_size, optimizer
        self.validation_fraction, self.patience, self.monitor = validation_fraction, patience, monitor
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

    def check_data(self, input_shape, class_counts):
        width = input_shape[-1]  # spatial maps are pooled to their channels first
        weights = (width + 1) * self.hidden + (self.hidden + 1) * len(class_counts)
        if weights > MAX_DENSE_WEIGHTS:
            raise BadParameter(f"DenseHead: hidden={self.hidden} on {width} features makes {weights:,} weights, more "
                               f"than the {MAX_DENSE_WEIGHTS:,} that fit in memory: lower hidden")

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
    (whose global average they already are, so it is the same function). Adam at 3e-4: the best of three
    settings by 3-fold cross-validation on the training split (bench/HISTORY.md)."""

    def __init__(self, epochs=100, learning_rate=3e-4, label_smoothing=0.0, batch_size=256, optimizer="adam",
                 validation_fraction=0.1, patience=10, monitor="accuracy", standardize=True, random_state=0, verbose=0):
        self.epochs, self.learning_rate, self.label_smoothing = epochs, learning_rate, label_smoothing
        self.batch_size, self.optimizer, self.validation_fraction = batch_size, optimizer, validation_fraction
        self.patience, self.monitor = patience, monitor
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

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

    stacks_views = True  # trains on every view at once (views.with_all_views): kfold sizes its memory

    def __init__(self, Cs=(0.001, 0.003, 0.01, 0.03, 0.1, 1.0), validation_fraction=0.1, max_iter=1000, tol=1e-4,
                 standardize=True, random_state=0, verbose=0):
        self.Cs, self.validation_fraction, self.max_iter, self.tol = Cs, validation_fraction, max_iter, tol
        self.standardize, self.random_state, self.verbose = standardize, random_state, verbose

    def check_data(self, input_shape, class_counts):
        """Any data fits: the holdout is stratified for any class size."""

    def _model(self, C):
        return LogisticRegression(C=C, max_iter=self.max_iter, tol=self.tol)

    def fit(self, X, y, views=None):
        """`views`: (rows, K, dim) cached augmented views of X's rows (optional): every view trains beside its
        plain row; C is still chosen on plain held-out rows, whose views are left out of the fit."""
        X, y = training_data(self, X, y)
        X = as_vectors(X)
        self.n_views_ = view_count(X, views)
        self.scaler_ = fit_standardizer(X) if self.standardize else None
        X = standardize(self.scaler_, X)
        fit, val = holdout(y, self.validation_fraction, self.random_state)
        with progress_bar(total=len(self.Cs) + 1, desc="logreg", unit="fit", disable=not self.verbose) as bar:
            self.scores_ = {}
            train = with_all_views(X, y, views, fit, self.scaler_) if self.n_views_ else (X[fit], y[fit])
            for C in self.Cs:
                self.scores_[C] = self._score_on_holdout(C, *train, X[val], y[val])
                bar.update()
            del train
            self.C_ = max(self.Cs, key=lambda C: (self.scores_[C], -C))
            everything = with_all_views(X, y, views, np.arange(len(y)), self.scaler_) if self.n_views_ else (X, y)
            self.model_ = self._model(self.C_).fit(*everything)
            bar.update()
        self.n_iter_ = self.model_.n_iter_
        self.validation_score_ = self.scores_[self.C_]
        self.chosen_params_ = {"C": self.C_}
        return self

    def _score_on_holdout(self, C, X_fit, y_fit, X_val, y_val) -> float:
        if len(np.unique(y_fit)) < 2:  # tiny data: the slice left one class to learn from, which says nothing
            return float(np.mean(y_val == y_fit[0])) if len(y_fit) else 0.0
        return float(self._model(C).fit(X_fit, y_fit).score(X_val, y_val))

    def _codes(self, X):
        X = as_vectors(new_data(self, X))  # checks fitted first
        return standardize(self.scaler_, X)

    def decision_function(self, X):
        """(n,) for two classes (positive: classes_[1]), else (n, n_classes)."""
        codes = self._codes(X)
        return self.model_.decision_function(codes)

    def predict_proba(self, X):
        codes = self._codes(X)
        return self.model_.predict_proba(codes)

    def predict(self, X):
        codes = self._codes(X)
        return self.classes_[self.model_.predict(codes)]

