"""Heads follow the scikit-learn estimator API and learn."""
import numpy as np
import pytest
from sklearn.base import clone
from sklearn.datasets import make_blobs, make_classification
from sklearn.model_selection import GridSearchCV, cross_val_score
from sklearn.preprocessing import StandardScaler
from sklearn.svm import LinearSVC

from cnncodes.classifiers.heads.heads import DenseHead, GapHead, LogRegHead
from cnncodes.classifiers.heads.registry import HEADS, make_head
from cnncodes.classifiers.heads.svm import LinearSVM
from cnncodes.features.errors import UserError

# Quick settings for each registered head (a head added to the registry needs its entry: a KeyError says so)
FAST = {"dense": dict(epochs=30, hidden=64, batch_size=32, learning_rate=1e-3),
        "gap": dict(epochs=40, batch_size=32, learning_rate=1e-2), "svm": dict(Cs=(0.1, 1.0)), "logreg": {}, "knn": {}}


def synthetic(n=600, classes=4):
    X, y = make_classification(n, 20, n_informative=10, n_classes=classes, n_clusters_per_class=1, random_state=0)
    return X[: n // 2], y[: n // 2], X[n // 2:], y[n // 2:]


@pytest.mark.parametrize("name", HEADS)
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


TINY = {"dense": dict(epochs=2, hidden=8), "gap": dict(epochs=2), "svm": dict(C=1.0), "logreg": {},
        "knn": {}}  # for each head


@pytest.mark.parametrize("name", HEADS)
def test_clone_and_grid_search_work(name):
    head = make_head(name, **TINY[name])
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


def test_svm_matches_liblinear_on_real_codes_with_more_features_than_rows(digits_store):
    """ResNet50 codes of the digits, 2,048 features, 400 rows: the row-space Newton steps against liblinear
    on the same standardised codes."""
    from cnncodes.features.store import FeatureStore

    store = FeatureStore.open(digits_store)
    X, y = store.features("r50", split="train")[:400], store.labels(split="train")[:400]
    ours = LinearSVM(C=0.05).fit(X, y)
    ref = LinearSVC(C=0.05, tol=1e-5, max_iter=20000).fit(ours.scaler_.transform(X), y)
    assert np.linalg.norm(ours.coef_ - ref.coef_) / np.linalg.norm(ref.coef_) < 1e-3


def test_svm_chooses_C_by_cross_validation():
    X, y, _, _ = synthetic(400)
    svm = LinearSVM(Cs=(0.001, 1.0), cv=3).fit(X, y)
    assert set(svm.cv_scores_) == {0.001, 1.0} and svm.C_ == max(svm.cv_scores_, key=svm.cv_scores_.get)


def test_unknown_head_is_a_clear_error():
    with pytest.raises(UserError, match="unknown head 'forest': use one of dense, gap, svm, logreg, knn$"):
        make_head("forest")


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

    from cnncodes.classifiers.heads.heads import holdout

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


# -- issue 14: heads that are estimators in full, and honest ----------------------------------------------------
def nearly_dead_channel(seed=0):
    """Two blobs in 8 features plus a ReLU channel that barely fires in training (std about 4e-6) and
    reads 0.5 on every test row, as a new image can make it."""
    X, y = make_blobs(800, 8, centers=2, cluster_std=2.0, random_state=seed)
    rng = np.random.default_rng(seed)
    dead = np.where(rng.random(800) < 0.01, 4e-5, 0.0)
    X = np.column_stack([X, dead]).astype(np.float32)
    X_test = X[500:].copy()
    X_test[:, -1] = 0.5
    return X[:500], y[:500], X_test, y[500:]


@pytest.mark.parametrize("name", ["svm", "logreg", "dense"])
def test_a_nearly_dead_channel_does_not_swamp_the_others(name):
    """Dividing by the channel's own std (+1e-6) made 0.5 into 1e5 and sank such a test from 0.995 to 0.496."""
    X, y, X_test, y_test = nearly_dead_channel()
    head = make_head(name, **{**FAST[name], "epochs": 10} if name == "dense" else FAST[name]).fit(X, y)
    assert head.scaler_.scale_[-1] == 1.0  # negligible spread: a constant, as StandardScaler treats those
    assert head.score(X_test, y_test) > 0.95


@pytest.mark.parametrize("name", HEADS)
def test_non_finite_input_is_an_error_never_a_model(name):
    """LinearSVM given one NaN in 500x8 values stopped "converged" with zero weights and predicted one class."""
    X, y, _, _ = synthetic(500)
    X = X[:, :8].copy()
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        make_head(name, **FAST[name]).fit(X, y)
    X[3, 2] = np.inf
    with pytest.raises(ValueError, match="Input X contains infinity"):
        make_head(name, **FAST[name]).fit(X, y)


def test_a_nan_gradient_never_counts_as_converged():
    from cnncodes.classifiers.heads.svm import squared_hinge_ovr

    X, y, _, _ = synthetic(40)  # 20 rows, 20 features
    A = X[:20].astype(np.float32)
    A[0, 0] = np.nan
    Y = np.where(y[:20, None] == np.arange(4), 1.0, -1.0).astype(np.float32)
    with pytest.raises(FloatingPointError, match="gradient became non-finite"):
        squared_hinge_ovr(A, Y, 1.0)


def test_svm_reports_its_iterations_and_a_stop_at_max_iter():
    from sklearn.exceptions import ConvergenceWarning

    X, y, _, _ = synthetic(400)
    svm = LinearSVM(C=1.0).fit(X, y)
    assert 1 <= svm.n_iter_ < svm.max_iter
    with pytest.warns(ConvergenceWarning, match="max_iter=1 Newton steps.*C=1"):
        assert LinearSVM(C=1.0, max_iter=1).fit(X, y).n_iter_ == 1


def test_svm_stops_no_later_than_liblinear_would():
    """liblinear's primal rule (LinearSVC, tol=1e-4): |g| <= tol * min(#pos, #neg) / n * |g(0)|, per class,
    here checked in float64 at the weights the float32 solver returns."""
    X, y, _, _ = synthetic(1200, classes=5)
    C = 0.5
    svm = LinearSVM(C=C).fit(X, y)
    A = np.column_stack([svm.scaler_.transform(X), np.ones(len(X))])
    W = np.vstack([svm.coef_.T, svm.intercept_]).astype(np.float64)
    Y = np.where(y[:, None] == svm.classes_, 1.0, -1.0)
    gradient = W - 2 * C * A.T @ (Y * np.maximum(0, 1 - Y * (A @ W)))
    positives = (Y > 0).sum(0)
    liblinear = 1e-4 * np.minimum(positives, len(y) - positives) / len(y) * np.linalg.norm(2 * C * A.T @ Y, axis=0)
    assert (np.linalg.norm(gradient, axis=0) <= 1.5 * liblinear).all()  # 1.5: float32 rounding of W itself


@pytest.mark.parametrize("head", [LinearSVM(C=0.5), LinearSVM(Cs=(0.1, 1.0)), LogRegHead(Cs=(0.1, 1.0))])
def test_two_classes_are_one_problem_with_decision_scores_of_shape_n(head):
    X, y = make_blobs(200, 6, centers=2, random_state=0)
    labels = np.array(["no", "yes"])[y]
    head.fit(X, list(labels))  # a plain list of strings
    scores = head.decision_function(X)
    assert scores.shape == (200,)
    assert (head.coef_ if isinstance(head, LinearSVM) else head.model_.coef_).shape == (1, 6)
    assert (head.predict(X) == np.where(scores > 0, "yes", "no")).all()
    assert head.score(X, labels) > 0.95


@pytest.mark.parametrize("name", HEADS)
def test_every_head_says_what_it_chose_and_how_it_scored_on_its_own_holdout(name):
    X, y, _, _ = synthetic(300)
    head = make_head(name, **FAST[name]).fit(X, y)
    assert 0.5 < head.validation_score_ <= 1.0
    if name in ("svm", "logreg"):
        assert head.chosen_params_ == {"C": head.C_}
        scores = head.cv_scores_ if name == "svm" else head.scores_
        assert head.validation_score_ == scores[head.C_]
    elif name == "knn":
        assert head.chosen_params_ == {"k": head.k_} and head.validation_score_ == head.scores_[head.k_]
        assert head.validation_score_ == max(head.scores_.values())
    else:
        chosen = head.chosen_params_
        assert chosen["epochs_trained"] == head.n_epochs_ and 1 <= chosen["best_epoch"] <= head.n_epochs_
        assert head.validation_score_ == head.history_["val_accuracy"][chosen["best_epoch"] - 1]
        assert chosen["learning_rate"] == head.learning_rate and chosen["batch_size"] == head.batch_size


@pytest.mark.parametrize("classes", [2, 5])
def test_svm_probabilities_when_asked_are_scikit_learns_platt_calibration(classes):
    """probability=True gives exactly what CalibratedClassifierCV(sigmoid, the same folds, ensemble=False)
    gives on an SVM with the chosen C; without it the SVM has no predict_proba to be mistaken for one."""
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.model_selection import StratifiedKFold

    X, y, X_test, _ = synthetic(400, classes=classes)
    labels = np.array(list("abcde"))[:classes]
    svm = LinearSVM(Cs=(0.01, 1.0), probability=True).fit(X, labels[y])
    reference = CalibratedClassifierCV(LinearSVM(C=svm.C_), method="sigmoid", ensemble=False,
                                       cv=StratifiedKFold(3, shuffle=True, random_state=0)).fit(X, labels[y])
    p = svm.predict_proba(X_test)
    np.testing.assert_allclose(p, reference.predict_proba(X_test), rtol=1e-6, atol=1e-9)
    assert p.shape == (len(X_test), classes) and np.allclose(p.sum(1), 1) and (svm.sigmoid_a_ < 0).all()
    assert (labels[p.argmax(1)] == svm.predict(X_test)).mean() > 0.9  # calibration keeps the ranking, mostly
    plain = LinearSVM(C=svm.C_).fit(X, labels[y])
    assert not hasattr(plain, "predict_proba") and np.array_equal(plain.coef_, svm.coef_)


def test_calibration_with_a_class_smaller_than_its_folds_is_one_clear_error():
    X, y, _, _ = synthetic(300, classes=3)
    y[:2] = 3  # a fourth class of 2 rows: 3 calibration folds cannot all hold it
    with pytest.raises(UserError, match="cv=3 folds, which needs 3 training rows of every class; the smallest "
                                        "class has 2: lower cv, or drop probability"):
        LinearSVM(C=1.0, probability=True).fit(X, y)
    assert LinearSVM(C=1.0, probability=True, cv=2).fit(X, y).predict_proba(X).shape == (len(X), 4)


def test_a_grid_of_Cs_may_be_a_numpy_array_as_np_logspace_gives():
    X, y, _, _ = synthetic(300)
    for head in (LinearSVM(Cs=np.logspace(-2, 0, 3)), LogRegHead(Cs=np.logspace(-2, 0, 3))):
        assert head.fit(X, y).C_ in np.logspace(-2, 0, 3)


def test_svm_with_a_given_C_holds_nothing_out():
    X, y, _, _ = synthetic(300)
    svm = LinearSVM(C=0.1).fit(X, y)
    assert svm.validation_score_ is None and svm.chosen_params_ == {"C": 0.1}


# -- parameters mean what they say, for Python callers too -------------------------------------------------------
def test_a_bare_parameter_goes_to_every_requested_head_that_takes_it():
    from cnncodes.classifiers.heads.params import resolve_params

    assert resolve_params(["svm", "logreg"], {"tol": 1e-3}) == {"svm": {"tol": 1e-3}, "logreg": {"tol": 1e-3}}
    assert resolve_params(["dense", "svm"], {"C": 0.5}) == {"dense": {}, "svm": {"C": 0.5}}  # was dropped
    assert resolve_params(["svm", "dense"], {"tol": 1e-3, "svm.tol": 1e-5}) == {"svm": {"tol": 1e-5}, "dense": {}}


def test_epochs_go_only_to_the_heads_that_train_for_epochs():
    from cnncodes.classifiers.heads.params import resolve_params

    # was refused: "head svm has no parameter 'epochs'"
    assert resolve_params(["dense", "svm", "cnn"], {}, epochs=5) == {"dense": {"epochs": 5}, "svm": {},
                                                                     "cnn": {"epochs": 5}}
    assert resolve_params(["gap"], {"gap.epochs": 9}, epochs=5) == {"gap": {"epochs": 9}}
    with pytest.raises(UserError, match="--epochs: no requested head \\(svm, logreg\\) takes 'epochs'; dense, gap"):
        resolve_params(["svm", "logreg"], {}, epochs=5)


def test_a_per_head_parameter_answer_can_be_given_again():
    from cnncodes.classifiers.heads.params import resolve_params

    resolved = resolve_params(["svm", "wrn"], {"svm.Cs": [1.0], "wrn.depth": 16})
    assert (resolved == {"svm": {"Cs": [1.0]}, "wrn": {"depth": 16}}
            and resolve_params(["svm", "wrn"], resolved) == resolved)


@pytest.mark.parametrize("heads, params, message", [
    (["dense", "gap"], {"C": 0.5}, "--param C: no requested head \\(dense, gap\\) takes 'C'; svm takes it"),
    (["dense"], {"svm.Cs": [1]},
     "--param svm.Cs is for head svm, which is not requested \\(heads: dense\\): add --head svm"),
    (["dense"], {"svm": {"Cs": [1]}}, "--param svm.Cs is for head svm, which is not requested"),
    (["svm"], {"svm.epochs": 3}, "head svm has no parameter 'epochs': it takes C, Cs, cv"),
    (["svm"], {"nope": 1}, "--param nope: head svm has no parameter 'nope': it takes C, Cs, cv"),
    (["svm", "dense"], {"nope": 1}, "--param nope: no requested head \\(svm, dense\\) takes 'nope'; no head takes it"),
    (["forest"], {},
     "unknown head 'forest': use one of dense, gap, svm, logreg, knn \\(or, in kfold, cnn, finetune, wrn, airbench\\)"),
    (["svm"], {"forest.k": 3}, "unknown head 'forest'"),
    (["knn"], {"k": 3}, "head knn has no parameter 'k': it takes ks, random_state, standardize, temperature"),
    (["cnn"], {"cnn.fold": 2}, "head cnn has no parameter 'fold'"),
])
def test_a_parameter_no_head_takes_is_one_clear_error(heads, params, message):
    from cnncodes.classifiers.heads.params import resolve_params

    with pytest.raises(UserError, match=message):
        resolve_params(heads, params)


@pytest.mark.parametrize("head, name, value, takes", [
    ("svm", "C", "abc", "a positive number up to 1e6, or null"), ("svm", "C", -1, "a positive number"),
    ("svm", "cv", 1, "a whole number of at least 2"), ("svm", "Cs", [], "a non-empty list of positive numbers"),
    ("logreg", "Cs", 5, "a non-empty list"), ("logreg", "max_iter", -1, "a whole number of at least 1"),
    ("dense", "hidden", 0, "a whole number from 1 to 65536"), ("dense", "batch_size", 2.5, "a whole number"),
    ("svm", "probability", "False", "true or false"), ("svm", "probability", "maybe", "true or false"),
    ("dense", "optimizer", "adagrad", "one of adam, sgd"), ("dense", "dropout", 1, "a number from 0 to below 1"),
    ("dense", "patience", None, "a whole number of at least 1"), ("wrn", "depth", 27, "a whole number 6n\\+4"),
    ("cnn", "precision", "fp64", "one of fp32, bf16, fp16"),
    # issue 19: non-finite values (JSON's Infinity, NaN, 1e309) and finite ones too large to compute with
    ("svm", "C", float("inf"), "a positive number up to 1e6"), ("logreg", "Cs", [1e308], "a non-empty list"),
    ("svm", "Cs", [0.1, float("nan")], "a non-empty list"),
    ("logreg", "tol", float("inf"), "a positive number up to 1"),
    ("dense", "learning_rate", float("inf"), "a positive number up to 10"),
    ("gap", "learning_rate", 1e300, "a positive number up to 10"),
    ("cnn", "learning_rate", float("inf"), "a positive number up to 10, or null"),
    ("dense", "hidden", 1_000_000_000, "a whole number from 1 to 65536"),
    ("svm", "random_state", 2**40, "a whole number of at least 0 \\(up to 2\\*\\*32-1\\), or null"),
    ("logreg", "max_iter", 10**40, "a whole number of at least 1"),
    ("wrn", "width", 1000, "a whole number from 1 to 64"),
    ("wrn", "depth", 10_000, "a whole number 6n\\+4 from 10 to 1000"),
    ("finetune", "backbone", "bogus", "one of resnet50, "),
    ("finetune", "weights", "no/such.h5", "imagenet, none or a"),
    ("knn", "ks", [], "a non-empty list of whole numbers"), ("knn", "ks", [0, 5], "a non-empty list of whole numbers"),
    ("knn", "ks", [2.5], "a non-empty list of whole numbers"),
    ("knn", "temperature", 0, "a positive number up to 1000"),
    ("knn", "temperature", float("inf"), "a positive number up to 1000"),
])
def test_a_parameter_value_a_head_cannot_take_is_one_clear_error_before_any_work(head, name, value, takes):
    """Was a 30-50 line traceback from deep in the solver, or (a string for a switch) silently taken as true;
    C=Infinity a FloatingPointError, learning_rate=1e300 a run record of NaN, hidden=1e9 16 s of allocating."""
    import re

    from cnncodes.classifiers.heads.params import resolve_params

    message = f"head {head}: {name} takes {takes}.*, not {re.escape(repr(value))}$"
    with pytest.raises(UserError, match=message):
        resolve_params([head], {name: value})
    if head in HEADS:  # a Python caller's estimator says the same, as the ValueError scikit-learn expects
        X, y, _, _ = synthetic(60)
        with pytest.raises(ValueError, match=f"{name} takes {takes}"):
            HEADS[head](**{name: value}).fit(X, y)


def test_what_the_data_cannot_hold_is_refused_before_training():
    """cv=1000 was scikit-learn's ValueError from inside the C search; hidden units whose weights cannot fit
    in memory the backend's ResourceExhaustedError after 16 s of allocating."""
    from cnncodes.features.errors import BadParameter

    X, y, _, _ = synthetic(60)  # 4 classes of about 7 training rows
    smallest = np.bincount(y).min()
    with pytest.raises(BadParameter, match=f"cv=1000 folds needs 1000 training rows of every class; the smallest "
                                           f"class has {smallest}: give cv={smallest} or less, or a fixed C"):
        LinearSVM(cv=1000).fit(X, y)
    LinearSVM(C=1.0, cv=1000).fit(X, y)  # a fixed C holds nothing out: nothing to refuse
    wide = np.zeros((8, 5000), np.float32)
    with pytest.raises(BadParameter, match="hidden=65536 on 5000 features makes 327,[0-9,]+ weights, more than"):
        DenseHead(hidden=65536).fit(wide, np.arange(8) % 2)


def test_a_keras_head_whose_training_diverges_is_an_error_never_a_model_of_nan():
    from cnncodes.features.errors import BadParameter

    X, y, _, _ = synthetic(200)
    with pytest.raises(BadParameter, match="training diverged .* lower learning_rate, or standardize the inputs"):
        DenseHead(hidden=8, epochs=2, optimizer="sgd", learning_rate=1, standardize=False).fit(X * 1e20, y)


def test_every_parameter_has_a_rule_its_defaults_keep():
    from cnncodes.classifiers.heads.params import check_values, resolve_params
    from cnncodes.classifiers.heads.registry import BASELINES, head_parameters
    from cnncodes.classifiers.heads.value_rules import VALUE_RULES
    from cnncodes.classifiers.training.baseline_config import BaselineConfig

    for head in (*HEADS, *BASELINES):
        assert head_parameters(head) <= set(VALUE_RULES), head
    for head, cls in HEADS.items():
        check_values(head, cls().get_params())
    for kind in BASELINES:
        config = BaselineConfig(kind)
        check_values(kind, {name: getattr(config, name) for name in head_parameters(kind)})
    nulls = {"epochs": None, "patience": None}  # a baseline's null: its kind's default, or off
    assert resolve_params(["cnn"], nulls) == {"cnn": nulls}


def test_the_python_api_reads_parameters_as_the_command_line_does(tmp_path):
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.evaluation.kfold import kfold_scores

    # Checked before the store is even opened: no store is needed to hear about a bad parameter.
    with pytest.raises(UserError, match="--param C: no requested head \\(dense, gap\\) takes 'C'"):
        kfold_scores(tmp_path / "no-store", ["dense", "gap"], params={"C": 0.5})
    with pytest.raises(UserError, match="--param epochs: head svm has no parameter 'epochs': it takes C, Cs"):
        fit_head(tmp_path / "no-store", "svm", params={"epochs": 3})


# -- non-finite codes stop fit and kfold with one line -----------------------------------------------------------
@pytest.fixture
def store_with_nan_codes(digits_store, tmp_path):
    import shutil

    import h5py

    store = shutil.copytree(digits_store, tmp_path / "digits", ignore=shutil.ignore_patterns("runs"))
    with h5py.File(store / "features" / "r50.h5", "r+") as f:  # h5py keeps the Fletcher-32 checksums valid
        codes = f["pooled"]
        codes[5, :3] = np.nan
        codes[9, 0] = np.inf
    return store


def test_nan_codes_stop_fit_and_kfold_with_one_line(store_with_nan_codes):
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.evaluation.kfold import kfold_scores

    message = "feature set r50 has 4 non-finite values \\(NaN or inf\\) among its .* codes: no head can learn"
    with pytest.raises(UserError, match=message):
        fit_head(store_with_nan_codes, "logreg")
    with pytest.raises(UserError, match="feature set r50 has [1-4] non-finite values"):  # the training split's
        kfold_scores(store_with_nan_codes, ["logreg"], k=3, progress=False)
    assert not list((store_with_nan_codes / "runs").glob("*fit-logreg*"))  # no run left behind


def test_nan_codes_of_an_fp16_set_suggest_another_precision():
    from types import SimpleNamespace

    from cnncodes.classifiers.evaluation.fit import check_finite

    info = SimpleNamespace(name="r50-fp16", config={"precision": "fp16"})
    codes = np.ones((10, 4), np.float32)
    check_finite(info, codes)  # finite: nothing to say
    codes[2, 1] = np.inf
    with pytest.raises(UserError,
                       match="r50-fp16 has 1 non-finite.*extract it again with --precision bf16 \\(or fp32\\)"):
        check_finite(info, codes)
