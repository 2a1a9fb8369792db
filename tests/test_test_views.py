"""Test-time views (--test-sides, --test-flip): chosen on the validation slice, the test split scored once with
the chosen one, and a finished run asked for other views scored again without training again."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.baselines.train import build, train_baseline, train_rows, validation_slice
from cnncodes.classifiers.baselines.view_choice import candidates, choose_view, probabilities
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.cli import cli
from cnncodes.features.errors import UserError
from cnncodes.features.sealed import read_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)
FINETUNE = ["--backbone", "efficientnet_lite0", "--weights", "none", "--size", "32", "--epochs", "2", "--head-epochs",
            "0", "--unfreeze-from", "all", "--batch-size", "16", "--learning-rate", "1e-3", "--crop-area", "0.5",
            "--patience", "2", "--quiet"]


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("views")
    tree = write_mixed_tree(root / "tree", per_class=20)
    return ingest(root / "store", IngestConfig(f"folder:{tree}", image_size=16), **quiet).path


def finetune(store, *options):
    result = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(store), *FINETUNE, *options])
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]  # "saved to RUN" or "already done: RUN"
    return result.output, Path(last.split("saved to ", 1)[-1].split("already done: ", 1)[-1])


class Fixed:
    """A stand-in model whose probabilities are given, and differ for mirrored images (column 0 is marked)."""

    def __init__(self, plain, mirrored):
        self.plain, self.mirrored = np.asarray(plain, float), np.asarray(mirrored, float)

    def predict(self, images, batch_size=None, verbose=0):
        return np.where(images[:, 0, 0, :1] == 1, self.plain, self.mirrored)


def test_flip_averaging_is_the_mean_of_the_image_and_its_mirror():
    images = np.zeros((2, 4, 4, 3), np.uint8)
    images[:, :, 0] = 1  # the first column marks the plain image; mirrored, it is the last one
    model = Fixed([[0.9, 0.1], [0.2, 0.8]], [[0.1, 0.9], [0.6, 0.4]])
    np.testing.assert_allclose(probabilities(model, images), [[0.9, 0.1], [0.2, 0.8]])
    np.testing.assert_allclose(probabilities(model, images, flip=True), [[0.5, 0.5], [0.4, 0.6]])


def test_the_view_that_validates_best_is_chosen_and_on_a_tie_the_cheapest():
    config = BaselineConfig("finetune", size=128, test_sides=[160, 144, 144], test_flip=True, patience=1)
    assert config.test_sides == (144, 160)
    assert candidates(config) == [(128, False), (144, False), (160, False), (128, True), (144, True), (160, True)]
    assert candidates(BaselineConfig("cnn", test_flip=True, patience=1)) == [(None, False), (None, True)]
    images, y = np.ones((4, 4, 4, 3), np.uint8), np.array([0, 0, 1, 1])  # all plain: flips score the mirror's rows
    right, wrong = [[1, 0], [1, 0], [0, 1], [0, 1]], [[0, 1], [0, 1], [1, 0], [1, 0]]
    half = [[1, 0], [1, 0], [1, 0], [1, 0]]
    models = {128: Fixed(half, half), 144: Fixed(half, wrong), 160: Fixed(right, right)}
    best, rows = choose_view(models.get, config, images, y)
    assert best == {"size": 160, "flip": False, "validation_accuracy": 1.0}  # 160 flipped ties it: the plain one
    assert [(r["size"], r["flip"], r["validation_accuracy"]) for r in rows] == \
        [(128, False, .5), (144, False, .5), (160, False, 1.), (128, True, .5), (144, True, .5), (160, True, 1.)]
    models[160] = Fixed(half, half)
    assert choose_view(models.get, config, images, y)[0]["size"] == 128  # all tie: the training side, plain


@pytest.mark.slow
def test_the_test_split_is_scored_once_with_the_view_chosen_on_validation(store):
    output, run = finetune(store, "--test-sides", "48,40", "--test-flip")
    record = read_sealed(run / "record.json")
    rows = record["test_views"]
    assert [(r["size"], r["flip"]) for r in rows] == [(32, False), (40, False), (48, False), (32, True), (40, True),
                                                      (48, True)]
    best = max(rows, key=lambda r: r["validation_accuracy"])  # the first of the best: max keeps it
    assert (record["chosen"]["test_size"], record["chosen"]["test_flip"]) == (best["size"], best["flip"])
    assert f"test_size {best['size']}" in output
    # the plain view at --size is the validation score that chose the epoch
    assert rows[0]["validation_accuracy"] == pytest.approx(record["validation_accuracy"])
    # the record's test accuracy is the kept weights' at the chosen view, recomputed here from the saved model
    config = BaselineConfig(**record["params"])
    opened = FeatureStore.open(store)
    labels = opened.labels(record["label"])
    _, test = train_rows(opened, config, labels)
    model = build(config, opened.image_shape, 3, best["size"]).model
    model.load_weights(run / "model.weights.h5")
    predicted = probabilities(model, opened.images()[test], best["flip"]).argmax(1)
    assert record["test_accuracy"] == pytest.approx(float((predicted == labels[test]).mean()))
    # and every view's validation row, from the saved weights loaded into a model built at its side (the run
    # scored them with its trained model's weights set into one)
    train_idx, _ = train_rows(opened, config, labels)
    val = validation_slice(labels[train_idx], config.seed)
    X_val, y_val = opened.images()[train_idx][val], labels[train_idx][val]
    for row in rows:
        model = build(config, opened.image_shape, 3, row["size"]).model
        model.load_weights(run / "model.weights.h5")
        scored = probabilities(model, X_val, row["flip"]).argmax(1) == y_val
        assert row["validation_accuracy"] == pytest.approx(float(scored.mean())), row


@pytest.mark.slow
def test_a_finished_run_asked_for_other_views_is_scored_again_not_trained_again(store):
    _, run = finetune(store, "--seed", "1")  # not the run above (test views do not name a run): one of its own
    first = read_sealed(run / "record.json")
    checkpoint = read_sealed(run / "state.json")["checkpoint"]
    stamp = (run / checkpoint).stat().st_mtime_ns
    output, again = finetune(store, "--seed", "1", "--test-flip")
    assert again == run and "saved to" in output  # the same run, its record rewritten
    record = read_sealed(run / "record.json")
    assert (run / checkpoint).stat().st_mtime_ns == stamp  # no epoch trained
    assert record["history"] == first["history"] and record["fit_seconds"] == first["fit_seconds"]
    assert [(r["size"], r["flip"]) for r in record["test_views"]] == [(32, False), (32, True)]
    assert record["params"] == {**first["params"], "test_flip": True} and "test_views" not in first
    assert record["earlier_scores"] == [{"test_sides": [], "test_flip": False, "test_accuracy": first["test_accuracy"]}]
    output, _ = finetune(store, "--seed", "1", "--test-flip")  # asked again for the same: read back
    assert f"already done: {run}" in output


@pytest.mark.parametrize("options, problem", [
    (["--test-flip"], "--test-flip is chosen on the validation slice, never on the test split: give --patience too"),
    (["--test-sides", "40", "--patience", "1", "--from-features", "maps"],
     "--test-sides changes the pixels, and --from-features scores maps already computed"),
    (["--backbone", "resnet50", "--test-sides", "16,64", "--patience", "1"],
     "--test-sides 16 is too small for resnet50, which takes at least 32x32 px: give a side of 32 or more"),
])
def test_test_views_that_cannot_be_are_one_line_before_any_training(store, options, problem):
    runs = Path(store) / "runs"
    before = sorted(runs.glob("*"))
    bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(store), "--weights", "none", "--size", "32",
                                   *options])
    assert bad.exit_code == 1 and problem in bad.output and "Traceback" not in bad.output, bad.output
    assert sorted(runs.glob("*")) == before


def test_test_views_bad_values_are_refused(store):
    for sides in ("144;160", "144,²"):  # "²" is a digit to str.isdigit, and no number to int
        bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(store), "--test-sides", sides])
        assert bad.exit_code == 2 and f"give input sides separated by commas, e.g. 144,160, not '{sides}'" in bad.output
    with pytest.raises(UserError, match="--test-sides is finetune's: wrn takes its images at their own size"):
        train_baseline(store, BaselineConfig("wrn", test_sides=(64,), patience=1), **quiet)
