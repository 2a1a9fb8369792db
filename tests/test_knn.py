"""The knn head (classifiers/knn.py): k chosen on a holdout of the training rows, votes weighted by similarity,
its training codes saved as its arrays; `fit`, `predict` and `export-model` with it."""
import numpy as np
import pytest

from cnncodes.classifiers.heads.inputs import holdout
from cnncodes.classifiers.heads.knn import KnnHead
from cnncodes.classifiers.heads.neighbors import nearest
from conftest import run_cli


def noisy_blobs(n=600, flip=0.3, seed=0):
    """Two well-separated classes with a share of labels flipped at random: one neighbor copies a flipped label
    as readily as a true one, many neighbors outvote it, so k=1 is clearly worse than a larger k."""
    rng = np.random.default_rng(seed)
    truth = rng.integers(0, 2, n)
    X = rng.normal(size=(n, 8)) + 4 * np.eye(8)[truth]  # cosine separates them too: different directions
    y = np.where(rng.random(n) < flip, 1 - truth, truth)
    return X.astype(np.float32), y, truth


def test_k_is_chosen_on_the_holdout_where_one_neighbor_is_clearly_worse():
    X, y, truth = noisy_blobs()
    head = KnnHead(ks=(1, 5, 25)).fit(X, y)
    assert head.scores_[1] < head.scores_[25] - 0.1  # about 0.58 against 0.7 with 30% of labels flipped
    assert head.k_ > 1 and head.validation_score_ == max(head.scores_.values())
    # the scores are those of the holdout rows, searched among the other training rows only
    fit, val = holdout(y, head.validation_fraction, head.random_state)
    found = nearest(X[val], X[fit], 1)
    assert head.scores_[1] == pytest.approx(np.mean(y[fit][found.index[:, 0]] == y[val]))
    X_test, _, truth_test = noisy_blobs(seed=1)
    assert head.score(X_test, truth_test) > 0.9  # the vote recovers the true classes
    assert KnnHead(ks=(1,)).fit(X, y).score(X_test, truth_test) < 0.8


def test_after_choosing_k_it_searches_every_training_row():
    X, y, _ = noisy_blobs(200)
    head = KnnHead(ks=(1,)).fit(X, y)
    _, val = holdout(y, head.validation_fraction, head.random_state)
    assert len(head.codes_) == len(X) and np.array_equal(head.targets_, y)
    assert np.array_equal(head.predict(X[val]), y[val])  # a held-out row now finds itself
    X_copy = X.copy()
    head = KnnHead().fit(X_copy, y)
    X_copy[:] = 0  # the head keeps its own copy of the codes
    assert np.array_equal(head.predict(X), KnnHead().fit(X, y).predict(X))


def test_votes_are_weighted_by_similarity_and_the_temperature_sets_how_much():
    """One neighbor of class a at similarity 0.99, two of class b at 0.90: a plain vote says b; a low
    temperature lets the nearest outweigh them."""
    base = np.array([[0.99, np.sqrt(1 - 0.99 ** 2), 0], [0.9, 0, np.sqrt(1 - 0.81)], [0.9, 0, -np.sqrt(1 - 0.81)],
                     [-1, 0, 0], [-1, 0.1, 0]], np.float32)
    labels = np.array(["a", "b", "b", "a", "b"])
    query = np.array([[1, 0, 0]], np.float32)
    for temperature, expected in ((0.07, "a"), (1000, "b")):
        head = KnnHead(ks=(3,), temperature=temperature).fit(base, labels)
        assert head.predict(query)[0] == expected
    p = KnnHead(ks=(3,), temperature=0.07).fit(base, labels).predict_proba(query)[0]
    assert p[0] == pytest.approx(1 / (1 + 2 * np.exp(-0.09 / 0.07)), rel=1e-4)  # the nearest weighs 1
    assert KnnHead(ks=(3,), temperature=1e-9).fit(base, labels).predict_proba(query)[0].tolist() == [1.0, 0.0]


def test_spatial_maps_are_pooled_first():
    rng = np.random.default_rng(0)
    y = np.arange(90) % 3
    maps = rng.normal(size=(90, 2, 2, 6)).astype(np.float32)
    maps[np.arange(90), :, :, y] += 3.0
    head = KnnHead().fit(maps[:60], y[:60])
    assert head.codes_.shape == (60, 6)
    assert np.array_equal(head.predict(maps[60:]), KnnHead().fit(maps[:60].mean((1, 2)), y[:60]).predict(
        maps[60:].mean((1, 2))))


# -- fit, save, predict, export-model ----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def knn_run(digits_store, tmp_path_factory):
    import shutil

    from cnncodes.classifiers.evaluation.fit import fit_head

    store = shutil.copytree(digits_store, tmp_path_factory.mktemp("knn") / "store")
    run, record = fit_head(store, "knn", params={"ks": [1, 5]}, log=lambda m: None)
    return store, run, record


def test_fit_saves_the_training_codes_and_loads_them_back_to_the_same_answers(knn_run):
    from cnncodes.classifiers.runs.persist import load_model
    from cnncodes.features.store import FeatureStore

    store, run, record = knn_run
    s = FeatureStore.open(store)
    X, X_test = s.features("r50", split="train"), s.features("r50", split="test")
    loaded = load_model(run)
    assert type(loaded) is KnnHead and loaded.scaler_ is None and loaded.ks == (1, 5)
    assert np.array_equal(loaded.codes_, X) and loaded.k_ == record["chosen"]["k"]
    # the k grid's holdout scores, as run records keep a linear head's C grid
    assert record["validation_scores"] == [[1, loaded.scores_[1]], [5, loaded.scores_[5]]]
    assert record["validation_accuracy"] == loaded.scores_[loaded.k_]
    assert loaded.predict(X_test).tolist() == record["test_predictions"]
    assert record["test_accuracy"] > 0.8
    assert record["train_accuracy"] is None  # every training row would find itself: no number, no search


def test_predict_works_with_a_knn_run_and_export_model_refuses_it_in_one_line(knn_run, tmp_path):
    import cv2

    from cnncodes.features.store import FeatureStore

    store, run, record = knn_run
    image = FeatureStore.open(store).images(split="test")[3]
    cv2.imwrite(str(tmp_path / "digit.png"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    done = run_cli("predict", "--model", run, "--top", 1, "--quiet", tmp_path / "digit.png")
    assert done.returncode == 0, done.stderr
    expected = record["class_names"][record["test_predictions"][3]]  # what the fitted head said of test row 3
    assert done.stdout.splitlines()[1].startswith(f"{tmp_path / 'digit.png'}: {expected} ")
    refused = run_cli("export-model", "--model", run, "--out", tmp_path / "knn.keras")
    assert refused.returncode == 1 and refused.stderr.count("\n") == 1
    assert "knn head" in refused.stderr and "cnncodes predict --model" in refused.stderr
    assert not (tmp_path / "knn.keras").exists()
