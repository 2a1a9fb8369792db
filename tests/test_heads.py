"""Heads follow the scikit-learn estimator API and learn."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.svm import LinearSVC
from sklearn.preprocessing import StandardScaler

from cnncodes.classifiers.heads import DenseHead, GapHead, LogRegHead, make_head
from cnncodes.classifiers.svm import LinearSVM
from cnncodes.features.errors import UserError

FAST = {"dense": dict(epochs=30, hidden=64, batch_size=32, learning_rate=1e-3), "gap": dict(epochs=40, batch_size=32, learning_rate=1e-2), "svm": dict(Cs=(0.1, 1.0)), "logreg": {}}


def synthetic(n=600, classes=4):
    X, y = make_classification(n, 20, n_informative=10, n_classes=classes, n_clusters_per_class=1, random_state=0)
    return X[: n // 2], y[: n // 2], X[n // 2:], y[n // 2:]


@pytest.mark.parametrize("name", ["dense", "gap", "svm", "logreg"])
def test_head_learns_well_above_chance_and_separable_perfectly(name):
    X, y, Xt, yt = synthetic()
    assert make_head(name, **FAST[name]).fit(X, y).score(Xt, yt) > 0.7  # chance is 0.25
    Xs, ys = make_blobs(300, 8, centers=3, cluster_std=0.5, random_state=1)
    labels = np.array(["a", "b", "c"])[ys]  # string labels come back as given
    head = make_head(name, **FAST[name]).fit(Xs[::2], labels[::2])
    assert (head.predict(Xs[1::2]) == labels[1::2]).all()


def test_gap_head_pools_spatial_maps():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    maps = rng.normal(size=(300, 3, 3, 6)).astype(np.float32)
    maps[np.arange(300), :, :, y] += 2.0  # class k lights up channel k everywhere
    head = GapHead(epochs=30, batch_size=32, learning_rate=1e-2).fit(maps[:200], y[:200])
    assert head.model_.input_shape == (None, 3, 3, 6)
    assert head.score(maps[200:], y[200:]) > 0.9


@pytest.mark.parametrize("head", [DenseHead(epochs=2, hidden=8), GapHead(epochs=2), LinearSVM(C=1.0), LogRegHead()])
def test_clone_and_grid_search_work(head):
    X, y, _, _ = synthetic(300)
    copy = clone(head)
    assert copy.get_params() == head.get_params() and not hasattr(copy, "classes_")
    grid = {"C": [0.1, 1.0]} if isinstance(head, LinearSVM) else {"standardize": [True, False]}
    search = GridSearchCV(head, grid, cv=2).fit(X, y)
    assert search.best_params_.keys() == grid.keys()
    assert len(cross_val_score(clone(head), X, y, cv=2)) == 2


def test_svm_matches_liblinear_linearsvc():
    X, y, Xt, yt = synthetic(1200, classes=5)
    scaler = StandardScaler().fit(X)
    ours = LinearSVM(C=0.5, tol=1e-4).fit(X, y)
    ref = LinearSVC(C=0.5, tol=1e-5, max_iter=20000).fit(scaler.transform(X), y)
    assert np.linalg.norm(ours.coef_ - ref.coef_) / np.linalg.norm(ref.coef_) < 0.02
    assert abs(ours.score(Xt, yt) - ref.score(scaler.transform(Xt), yt)) <= 0.01


def test_svm_chooses_C_by_cross_validation():
    X, y, _, _ = synthetic(400)
    svm = LinearSVM(Cs=(0.001, 1.0), cv=3).fit(X, y)
    assert set(svm.cv_scores_) == {0.001, 1.0} and svm.C_ == max(svm.cv_scores_, key=svm.cv_scores_.get)


def test_unknown_head_is_a_clear_error():
    with pytest.raises(UserError, match="unknown head 'knn'"):
        make_head("knn")


@pytest.mark.parametrize("name", ["dense", "logreg"])
def test_validation_slice_smaller_than_the_class_count_works(name):
    """100 classes, 300 rows: a 10% validation slice holds 30 rows, fewer than the classes."""
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(100), 3)
    X = rng.normal(size=(300, 16)) + np.eye(100)[y][:, :16] * 3
    head = make_head(name, **({"epochs": 2, "hidden": 16} if name == "dense" else {"Cs": (1.0,)})).fit(X, y)
    assert len(head.classes_) == 100


def test_logreg_scores_every_C_with_a_converged_fit():
    """Each candidate C is its own fit from zero, and so is the final model. A warm-started path once
    stopped lbfgs at its first step on many weak features (as CNN codes are), so large Cs all scored
    what the previous C had, and the choice meant nothing."""
    from sklearn.linear_model import LogisticRegression

    from cnncodes.classifiers.heads import holdout

    rng = np.random.default_rng(0)
    y = rng.integers(0, 5, 8000)
    X = rng.normal(0, 0.08, (5, 256))[y] + rng.normal(size=(8000, 256))  # 256 weakly informative features
    head = LogRegHead(Cs=(0.001, 0.01, 0.1, 1.0)).fit(X, y)
    Xs = ((X - X.mean(0)) / (X.std(0) + 1e-6)).astype(np.float32)
    fit, val = holdout(y, 0.1, 0)
    for C in head.Cs:
        assert head.scores_[C] == LogisticRegression(C=C, max_iter=1000).fit(Xs[fit], y[fit]).score(Xs[val], y[val])
    final = LogisticRegression(C=head.C_, max_iter=1000).fit(Xs, y)
    np.testing.assert_allclose(head.model_.coef_, final.coef_, rtol=1e-5, atol=1e-6)


def test_logreg_with_a_class_only_in_the_validation_slice():
    rng = np.random.default_rng(0)
    y = np.append(np.repeat(np.arange(10), 21), 10)  # class 10 has one row, which the 10% slice takes
    X = rng.normal(size=(211, 16)) + np.eye(16)[y] * 3
    head = LogRegHead(Cs=(0.1, 1.0)).fit(X, y)
    assert list(head.classes_) == list(range(11)) and head.predict(X[:20]).shape == (20,)
    assert head.score(X, y) > 0.8


@pytest.mark.parametrize("name", ["dense", "gap"])
def test_keras_head_depends_on_its_data_and_random_state_alone(name, monkeypatch):
    """Keras seeds unseeded layers, and shuffles, from process-wide random state, which a Dask worker's
    heartbeat draws from on another thread: a k-fold fold came out different in a fresh worker. Here
    every layer made draws from Python's `random` first, as that thread might."""
    import random

    import keras

    X, y, Xt, _ = synthetic(200)
    params = {**FAST[name], "epochs": 3}
    clean = make_head(name, **params).fit(X, y).predict_proba(Xt)
    make = keras.layers.Layer.__init__

    def draw_first(self, *args, **kwargs):
        random.random()
        make(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__init__", draw_first)
    random.seed(1)
    np.testing.assert_array_equal(make_head(name, **params).fit(X, y).predict_proba(Xt), clean)
    assert not np.array_equal(make_head(name, **params, random_state=1).fit(X, y).predict_proba(Xt), clean)
