"""The knn head: each code's class is the vote of its k most similar training codes (cosine similarity), each
vote weighted by its similarity, k chosen on a holdout of the training rows. Its fitted state is the training
codes themselves, searched exactly at predict (neighbors.nearest: in blocks, memory flat)."""
import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from cnncodes.pipeline.console import progress_bar

from .inputs import as_vectors, fit_standardizer, holdout, new_data, standardize, training_data
from .neighbors import nearest
from .views import view_count, with_all_views


class KnnHead(ClassifierMixin, BaseEstimator):
    """k nearest neighbors by cosine similarity, votes weighted by exp(similarity / temperature).

    Raw codes, not standardised, by default: on Lite0's last layer over CIFAR-10 (the head's 10% holdout of the
    training split searched among the other 90%: bench/knn.py, bench/HISTORY.md) the two tie at their best k with
    these weights (77.06% raw at k=20, 77.14% standardised at k=50); raw codes need no scaler, and cosine
    similarity of raw codes is the usual kNN probe of CNN features (Wu et al. 2018; DINO, Caron et al. 2021, whose
    temperature 0.07 this is). Weights exp(similarity / 0.07) beat a plain vote and weights equal to the
    similarity at every k from 3 on, raw or standardised (raw, k=20: 77.06 against 75.98 and 76.40%): neighbors'
    similarities differ by little (0.77 for the nearest, 0.70 for the 50th, medians), so weights equal to them
    barely favour the nearest. Temperature 0.03 scores 0.4 points more on raw codes (77.46% at k=20), within the
    holdout's noise (one standard error is 0.6 points on 5,000 rows), and 1.8 less on standardised ones (best k).

    Parameters
    ----------
    ks : candidate k, each scored on the holdout; the best is kept (equal scores: the smaller k)
    temperature : votes weigh exp((similarity - the nearest's similarity) / temperature); large is a plain vote
    standardize : standardise each channel (over the training codes) before the search
    validation_fraction, random_state : the seeded stratified holdout that chooses k
    verbose : a progress bar over the searched rows

    Attributes
    ----------
    classes_ : the labels, sorted
    n_features_in_ : columns of the training data
    scaler_ : StandardScaler or None (standardize=False)
    codes_ : (rows, dim) float32, the training codes searched at predict (standardised with standardize; with
             views, every row's views after the plain rows)
    targets_ : (rows,) int, each row of codes_'s class, an index into classes_
    scores_ : {k: accuracy on the holdout} for each candidate
    k_ : the chosen k; validation_score_ its holdout accuracy; chosen_params_ {"k": k_}
    n_views_ : augmented views per row trained on (0: none)
    """

    stacks_views = True  # searches every view beside its row (views.with_all_views): kfold sizes its memory
    # its training rows are its model: each finds itself at similarity 1, so a training accuracy says nothing (100%)
    # and costs a search of every row against every row; fit and kfold record none
    keeps_training_rows = True

    def __init__(self, *, ks=(1, 3, 5, 10, 20, 50), temperature=0.07, standardize=False, validation_fraction=0.1,
                 random_state=0, verbose=0):
        self.ks, self.temperature, self.standardize = ks, temperature, standardize
        self.validation_fraction, self.random_state, self.verbose = validation_fraction, random_state, verbose

    def check_data(self, input_shape, class_counts):
        """Any data fits: the holdout is stratified for any class size, and k is cut to the rows there are."""

    def fit(self, X, y, views=None):
        """`views`: (rows, K, dim) cached augmented views of X's rows (optional): each is searched as a training
        code of its row's class; k is chosen on plain held-out rows, whose views are never searched."""
        X, y = training_data(self, X, y)
        X = as_vectors(X)
        self.n_views_ = view_count(X, views)
        self.scaler_ = fit_standardizer(X) if self.standardize else None
        X = np.array(standardize(self.scaler_, X), dtype=np.float32)  # a copy: the head never aliases the caller's X
        fit, val = holdout(y, self.validation_fraction, self.random_state)
        base, base_y = with_all_views(X, y, views, fit, self.scaler_) if self.n_views_ else (X[fit], y[fit])
        ks = sorted({min(int(k), len(base)) for k in self.ks})  # k above the rows searched is every row: said so
        found = self._search(X[val], base, max(ks), "knn holdout")
        del base
        self.scores_ = {k: float(np.mean(self._proba(found, base_y, k).argmax(1) == y[val])) for k in ks}
        self.k_ = max(self.scores_, key=lambda k: (self.scores_[k], -k))
        self.codes_, self.targets_ = (with_all_views(X, y, views, np.arange(len(y)), self.scaler_) if self.n_views_
                                      else (X, y))
        self.validation_score_ = self.scores_[self.k_]
        self.chosen_params_ = {"k": self.k_}
        return self

    def _search(self, queries, base, k, desc):
        with progress_bar(total=len(queries), desc=desc, unit="row", disable=not self.verbose) as bar:
            return nearest(queries, base, k, progress=bar.update)

    def _proba(self, found, targets, k) -> np.ndarray:
        """Each class's share of the similarity-weighted votes of the first k neighbors found."""
        s = found.similarity[:, :k].astype(np.float64)  # float64: a tiny temperature divides without overflow
        weights = np.exp((s - s[:, :1]) / self.temperature)  # the nearest weighs 1, so no row's weights all vanish
        votes = np.zeros((len(s), len(self.classes_)))
        np.add.at(votes, (np.arange(len(s))[:, None], targets[found.index[:, :k]]), weights)
        return votes / votes.sum(axis=1, keepdims=True)

    def predict_proba(self, X):
        X = as_vectors(new_data(self, X))  # checks fitted first
        X = standardize(self.scaler_, X)
        return self._proba(self._search(X, self.codes_, self.k_, "knn"), self.targets_, self.k_)

    def predict(self, X):
        best = self.predict_proba(X).argmax(axis=1)  # checks fitted first
        return self.classes_[best]
