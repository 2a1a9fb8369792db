"""Heads trained on cached augmented views: linear heads on every view, network heads on one drawn per row and
epoch; a held-out row's views never train; fit, kfold and sweep read a set's views unless told --no-views."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from sklearn.model_selection import StratifiedKFold

from cnncodes.classifiers.evaluation.fit import fit_head
from cnncodes.classifiers.evaluation.kfold import kfold_scores
from cnncodes.classifiers.heads import views as views_module
from cnncodes.classifiers.heads.inputs import holdout
from cnncodes.classifiers.heads.registry import HEADS, make_head
from cnncodes.classifiers.heads.views import drawn_views, with_all_views
from cnncodes.cli import cli
from cnncodes.features.errors import BadParameter
from cnncodes.features.sealed import read_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

quiet = dict(progress=False, log=lambda m: None)
FAST = {"dense": {"epochs": 30, "hidden": 32, "learning_rate": 1e-2, "patience": 30},
        "gap": {"epochs": 30, "learning_rate": 1e-2, "patience": 30}, "svm": {"Cs": (0.01, 1.0)},
        "logreg": {"Cs": (0.1, 1.0)}, "knn": {}}


def signal_only_in_views(n=240, d=8, classes=3, K=4, seed=0):
    """Training rows whose plain codes are noise and whose K views show their class; test rows show it too.
    A head learns the classes only from the views."""
    rng = np.random.default_rng(seed)
    means = 3 * rng.normal(size=(classes, d))
    y, y_test = rng.integers(classes, size=n), rng.integers(classes, size=n)
    X = rng.normal(size=(n, d)).astype(np.float32)
    V = (means[y][:, None] + 0.5 * rng.normal(size=(n, K, d))).astype(np.float32)
    X_test = (means[y_test] + 0.5 * rng.normal(size=(n, d))).astype(np.float32)
    return X, y, V, X_test, y_test


@pytest.mark.parametrize("head", HEADS)
def test_a_head_learns_what_only_the_views_show(head):
    X, y, V, X_test, y_test = signal_only_in_views()
    with_views = make_head(head, **FAST[head]).fit(X, y, views=V)
    plain = make_head(head, **FAST[head]).fit(X, y)
    assert with_views.n_views_ == 4 and plain.n_views_ == 0
    assert with_views.score(X_test, y_test) >= 0.9
    assert plain.score(X_test, y_test) <= 0.6  # chance is 1/3: the plain codes hold nothing


class RecordingViews:
    """Views that remember which rows were read, in order."""

    def __init__(self, V):
        self.V, self.shape, self.reads = V, V.shape, []

    def __getitem__(self, rows):
        self.reads.append(np.asarray(rows))
        return self.V[rows]

    def rows_read(self, first=0, last=None):
        return set(np.concatenate(self.reads[first:last]).tolist()) if self.reads[first:last] else set()


@pytest.mark.parametrize("head", ["dense", "gap"])
def test_a_network_head_never_reads_the_views_of_its_validation_rows(head):
    X, y, V, _, _ = signal_only_in_views()
    spy = RecordingViews(V)
    model = make_head(head, **{**FAST[head], "epochs": 3}).fit(X, y, views=spy)
    fit, val = holdout(model.classes_.searchsorted(y), model.validation_fraction, model.random_state)
    assert spy.rows_read() == set(fit.tolist()) and not spy.rows_read() & set(val.tolist())
    assert len(spy.reads) == 3 * -(-len(fit) // views_module.block_rows(spy))  # one pass over the rows an epoch


def test_logreg_chooses_C_without_the_views_of_its_holdout_and_fits_every_view_after():
    X, y, V, _, _ = signal_only_in_views()
    spy = RecordingViews(V)
    model = make_head("logreg", **FAST["logreg"]).fit(X, y, views=spy)
    fit, val = holdout(y, model.validation_fraction, model.random_state)
    search = spy.rows_read(0, 1)  # blocks of 2048 rows: one read for the search, one for the final fit
    assert search == set(fit.tolist()) and len(spy.reads) == 2 and spy.rows_read(1) == set(range(len(y)))


def test_svm_cross_validates_C_over_images_their_views_with_them():
    X, y, V, _, _ = signal_only_in_views()
    spy = RecordingViews(V)
    model = make_head("svm", **FAST["svm"]).fit(X, y, views=spy)
    folds = list(StratifiedKFold(model.cv, shuffle=True, random_state=model.random_state).split(X, y))
    for read, (train, test) in zip(spy.reads, folds):
        assert set(read.tolist()) == set(train.tolist())  # a scored row's views never train its fold
    assert len(spy.reads) == model.cv + 1 and spy.rows_read(model.cv) == set(range(len(y)))


def test_svm_probabilities_are_calibrated_on_folds_trained_with_their_rows_views(monkeypatch):
    """The sigmoids were fitted on scores of SVMs trained on plain rows only, then applied to one trained on
    views too."""
    X, y, V, X_test, y_test = signal_only_in_views()
    X = X + 3 * np.eye(8, dtype=np.float32)[y]  # the plain codes show the class too, less clearly than the views
    X_test = X_test + 3 * np.eye(8, dtype=np.float32)[y_test]
    calls = []
    fit = HEADS["svm"].fit

    def spy(self, X_fit, y_fit, views=None):
        calls.append((len(X_fit), None if views is None else np.asarray(views)))
        return fit(self, X_fit, y_fit, views=views)

    monkeypatch.setattr(HEADS["svm"], "fit", spy)
    model = make_head("svm", **FAST["svm"], probability=True).fit(X, y, views=V)
    folds = StratifiedKFold(model.cv, shuffle=True, random_state=model.random_state).split(X, y)
    calibration = calls[1:1 + model.cv]  # after the fit itself: one SVM per calibration fold
    for (rows, views), (train, _) in zip(calibration, folds):
        assert rows == len(train) and np.array_equal(views, V[train])  # each fold's rows' views, no others
    proba = model.predict_proba(X_test)
    assert (model.classes_[proba.argmax(1)] == model.predict(X_test)).mean() >= 0.95
    assert proba[np.arange(len(y_test)), y_test].mean() > 0.6  # the true class's probability


def test_blocks_of_views_are_read_a_bounded_number_of_bytes_at_a_time(monkeypatch):
    monkeypatch.setattr(views_module, "BLOCK_BYTES", 4 * 4 * 8 * 10)  # 10 rows of 4 views of 8 floats
    X, y, V, _, _ = signal_only_in_views(n=55, K=4)
    spy = RecordingViews(V)
    blocks = list(views_module.view_blocks(spy, np.arange(55)))
    assert [len(b) for _, b in blocks] == [10] * 5 + [5] and [s for s, _ in blocks] == list(range(0, 55, 10))


def test_every_view_follows_its_row_standardised_as_the_plain_codes():
    from sklearn.preprocessing import StandardScaler

    X, y, V, _, _ = signal_only_in_views(n=10, K=3)
    scaler = StandardScaler().fit(X)
    rows = np.array([1, 4, 7])
    codes, labels = with_all_views(scaler.transform(X), y, V, rows, scaler)
    np.testing.assert_allclose(codes[:3], scaler.transform(X[rows]), rtol=1e-6)
    np.testing.assert_allclose(codes[3:], scaler.transform(V[rows].reshape(-1, X.shape[1])), rtol=1e-5, atol=1e-6)
    assert labels.tolist() == y[rows].tolist() + np.repeat(y[rows], 3).tolist()
    with_bias, _ = with_all_views(scaler.transform(X), y, V, rows, scaler, bias=True)  # the SVM's: no copy to add it
    np.testing.assert_array_equal(with_bias[:, :-1], codes)
    assert (with_bias[:, -1] == 1).all()


def test_each_epoch_draws_the_plain_codes_or_one_view_per_row_from_its_seed():
    X, y, V, _, _ = signal_only_in_views(n=300, K=3)
    rows = np.arange(0, 300, 2)
    draws = [drawn_views(X, V, rows, None, np.random.default_rng(s)) for s in (0, 0, 1)]
    np.testing.assert_array_equal(draws[0], draws[1])
    candidates = np.concatenate([X[rows][:, None], V[rows]], axis=1)  # (rows, K + 1, d)
    picked = np.array([[np.flatnonzero((candidates[i] == draw[i]).all(axis=1))[0] for i in range(len(rows))]
                       for draw in draws])
    assert set(np.unique(picked[0])) == {0, 1, 2, 3}  # the plain codes and every view are drawn
    assert (picked[0] != picked[2]).mean() > 0.5  # another seed, other draws


def test_views_that_do_not_line_up_or_with_spatial_maps_are_refused():
    X, y, V, _, _ = signal_only_in_views(n=20)
    with pytest.raises(ValueError, match=r"expected \(20, K, 8\)"):
        make_head("logreg").fit(X, y, views=V[:10])
    with pytest.raises(BadParameter, match="views are pooled codes"):
        make_head("gap", epochs=1).fit(X.reshape(20, 2, 2, 2), y, views=V)


def test_a_linear_head_whose_views_exceed_memory_is_one_line_naming_the_way_out(monkeypatch):
    X, y, V, _, _ = signal_only_in_views(n=50)
    monkeypatch.setattr(views_module, "available_memory", lambda: 1000)
    with pytest.raises(BadParameter, match="--head dense .* fewer views or workers, or --no-views"):
        make_head("logreg").fit(X, y, views=V)


@pytest.fixture(scope="module")
def views_store(tmp_path_factory):
    """60 digits (30 train rows), Lite0 at 32 with random weights and 2 views of each training row."""
    store = ingest(tmp_path_factory.mktemp("vt") / "s", IngestConfig("digits", limit=30), **quiet).path
    config = FeatureConfig("efficientnet_lite0", "none", 32, views=2, seed=1)
    name = extract_features(store, config, name="viewcodes", **quiet).name
    return store, name


def test_fit_trains_on_a_sets_views_unless_told_not_to(views_store):
    store, name = views_store
    _, record = fit_head(store, "logreg", features=name, params={"Cs": [0.1]})
    _, plain = fit_head(store, "logreg", features=name, params={"Cs": [0.1]}, views=False)
    assert record["views"] == 2 and plain["views"] == 0
    result = CliRunner().invoke(cli, ["fit", "--store", str(store), "--head", "logreg", "--param", "Cs=[0.1]",
                                      "--quiet"])
    assert result.exit_code == 0 and "trained with 2 views" in result.output
    result = CliRunner().invoke(cli, ["fit", "--store", str(store), "--head", "logreg", "--param", "Cs=[0.1]",
                                      "--quiet", "--no-views"])
    assert result.exit_code == 0 and "views" not in result.output
    listed = CliRunner().invoke(cli, ["runs", "--store", str(store)]).output  # two configurations, told apart
    assert listed.count(f"{name} (+ 2 views)") == 1 and listed.count(name) == 2


def test_kfold_with_views_trains_each_fold_on_its_training_rows_views_in_a_table_of_its_own(views_store,
                                                                                                monkeypatch):
    store, name = views_store
    fitted = []
    real_fit = HEADS["logreg"].fit

    def spy(self, X, y, views=None):
        fitted.append(None if views is None else np.asarray(views.compute()))
        return real_fit(self, X, y, views=views)

    monkeypatch.setattr(HEADS["logreg"], "fit", spy)
    params = {"logreg": {"Cs": [0.1]}}
    table = kfold_scores(store, ["logreg"], k=2, features=name, params=params, **quiet)
    plain = kfold_scores(store, ["logreg"], k=2, features=name, params=params, views=False, **quiet)
    assert table["views"] == 2 and plain["views"] == 0 and table["path"] != plain["path"]
    assert "-views-k2-train" in table["path"] and "trained with its 2 views" in open(table["path"]).read()
    s = FeatureStore.open(store)
    every, folds = s.views(name), s.folds(2, split="train")
    with_views = [v for v in fitted if v is not None]
    assert len(with_views) == 2 and sum(v is None for v in fitted) == 2
    for fold_views in with_views:  # each fold read the views of exactly its training rows
        assert any(np.array_equal(fold_views, every[(folds >= 0) & (folds != f)]) for f in range(2))
    assert not np.array_equal(with_views[0], with_views[1])
    again = kfold_scores(store, ["logreg"], k=2, features=name, params=params, **quiet)
    assert again["tasks_run"] == 0 and again["rows"] == table["rows"]  # kept apart from the plain table's folds
    assert read_sealed(Path(table["path"]).with_name("table.json"))["views"] == 2


def test_kfold_refuses_linear_heads_whose_views_would_not_fit_in_memory_together(views_store, monkeypatch):
    """Each fold checked its own stacked views against the memory free as it started: two at once took twice."""
    from cnncodes.classifiers.evaluation import kfold

    store, name = views_store
    stacked = views_module.stacked_bytes(20, 2, FeatureStore.open(store).feature_set(name).pooled_shape[1])
    monkeypatch.setattr(views_module, "available_memory", lambda: int(3 * stacked))  # one fits in half, two not
    monkeypatch.setattr(kfold, "dask_client", lambda *a: pytest.fail("Dask started before the check"))
    with pytest.raises(BadParameter, match="2 linear heads at once"):
        kfold_scores(store, ["logreg"], k=3, features=name, params={"logreg": {"Cs": [0.3]}}, workers=2, **quiet)


def test_damaged_views_are_one_line_naming_the_file_however_late_they_are_read(views_store, monkeypatch):
    import h5py

    from cnncodes.features.errors import DamagedError

    store, name = views_store
    read = h5py.Dataset.__getitem__

    def failing(self, index):
        if self.name == "/views":
            raise OSError("Can't synchronously read data (filter returned failure during read)")
        return read(self, index)

    monkeypatch.setattr(h5py.Dataset, "__getitem__", failing)
    with pytest.raises(DamagedError, match=rf"{name}.h5 is damaged .*filter returned failure.*: re-run"):
        fit_head(store, "logreg", features=name, params={"Cs": [0.1]})


def test_a_join_whose_views_cannot_be_joined_trains_on_its_plain_codes_and_says_why(views_store):
    store, name = views_store
    plain = extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, layer="block6a_expand_activation"),
                             name="plaincodes", **quiet).name
    said = []
    _, record = fit_head(store, "logreg", features=f"{name}+{plain}", params={"Cs": [0.1]}, log=said.append)
    assert record["views"] == 0 and len(said) == 1 and "trains on its plain codes" in said[0]
    assert "plaincodes has no views" in said[0]
