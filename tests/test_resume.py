"""Crash anywhere, the same result: a killed baseline or k-fold run, resumed, ends exactly where an
uninterrupted run with the same seed ends."""
import json
import random
import shutil

import numpy as np
import pytest

from cnncodes.classifiers.baselines.train import build, train_baseline
from cnncodes.classifiers.evaluation.kfold import kfold_scores
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.classifiers.training.checkpoint import Checkpoint
from cnncodes.classifiers.training.seeding import seed_states
from cnncodes.features.errors import UserError
from cnncodes.features.sealed import write_sealed
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import kill_midway, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)
CNN = BaselineConfig("cnn", epochs=4, batch_size=16, learning_rate=1e-3)
DENSE = {"dense": {"epochs": 12, "patience": 12, "hidden": 32, "batch_size": 16}}  # about a second a fold


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory):
    """3 classes told apart by colour, 16x16 pixels, with random-weight EfficientNet-Lite0 codes."""
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    root = tmp_path_factory.mktemp("resume")
    tree = write_mixed_tree(root / "tree", per_class=20)
    store = ingest(root / "store", IngestConfig(f"folder:{tree}", image_size=16), **quiet).path
    extract_features(store, FeatureConfig("efficientnet_lite0", weights="none", size=32), name="codes", **quiet)
    return store


@pytest.fixture
def fresh_store(colour_store, tmp_path):
    """A copy without the runs other tests left."""
    def copy(name="store"):
        return shutil.copytree(colour_store, tmp_path / name, ignore=shutil.ignore_patterns("runs"))
    return copy


class Killed(Exception):
    pass


def kill_after_epoch(monkeypatch, epoch: int):
    """The run dies right after its checkpoint of `epoch` is in place, as a SIGKILL then would leave it."""
    save = Checkpoint.save

    def save_then_die(self, model, state, best_weights=None):
        save(self, model, state, best_weights)
        if state["epoch"] == epoch:
            raise Killed

    monkeypatch.setattr(Checkpoint, "save", save_then_die)


def assert_same_run(a, b):
    """Same history and test predictions, and the same final weights, optimizer and seed states."""
    (run_a, record_a), (run_b, record_b) = a, b
    assert record_a["history"] == record_b["history"] and record_a["test_predictions"] == record_b["test_predictions"]
    saved_a, saved_b = (np.load(r / json.loads((r / "state.json").read_text())["checkpoint"]) for r in (run_a, run_b))
    assert saved_a.files == saved_b.files and any(f.startswith("optimizer.") for f in saved_a.files)
    for key in saved_a.files:
        np.testing.assert_array_equal(saved_a[key], saved_b[key], err_msg=key)


# early stopping: a high rate makes the validation loss jump, so the run stops before its last epoch; where
# exactly depends on the CPU's float arithmetic, so the kill comes right after the best epoch, whichever it is
EARLY_STOPPING = BaselineConfig("cnn", epochs=10, batch_size=16, patience=2, seed=3, learning_rate=3e-3)


@pytest.mark.parametrize("config, kill_at", [(CNN, 2), (EARLY_STOPPING, "after the best")],
                         ids=["cnn", "cnn-early-stopping"])
def test_killed_baseline_resumes_to_the_uninterrupted_result(fresh_store, monkeypatch, recwarn, config, kill_at):
    """Before: the seed states of the augmentation and dropout layers started over, Keras reshuffled
    from its global state, the optimizer's variables were skipped with a warning, and early stopping
    forgot its best epoch."""
    uninterrupted = train_baseline(fresh_store("a"), config, **quiet)
    if config.patience:
        chosen = uninterrupted[1]["chosen"]
        assert chosen["epochs_trained"] < config.epochs, "the run no longer stops early: choose other settings"
        kill_at = chosen["best_epoch"] + 1  # between the best epoch and the stop, which must remember the best
        assert kill_at < chosen["epochs_trained"]
    store = fresh_store("b")
    kill_after_epoch(monkeypatch, kill_at)
    with pytest.raises(Killed):
        train_baseline(store, config, **quiet)
    monkeypatch.undo()
    said = []
    resumed = train_baseline(store, config, progress=False, log=said.append)
    (run,) = (store / "runs").glob(f"*-{config.run_name('class')}")
    assert said == [f"baseline: resuming {run.name} after epoch {kill_at}/{config.epochs}"]
    assert_same_run(uninterrupted, resumed)
    assert not [w for w in recwarn if "Skipping variable loading" in str(w.message)]


def test_a_longer_run_goes_on_where_a_shorter_one_ended(fresh_store):
    store = fresh_store()
    first = train_baseline(store, BaselineConfig("cnn", epochs=2, batch_size=16, learning_rate=1e-3), **quiet)
    assert first[1]["epochs"] == 2
    assert_same_run(train_baseline(fresh_store("other"), CNN, **quiet), train_baseline(store, CNN, **quiet))
    with pytest.raises(UserError, match="has trained 4 epochs already: give --epochs 4 or more"):
        train_baseline(store, BaselineConfig("cnn", epochs=3, batch_size=16, learning_rate=1e-3), **quiet)
    other, _ = train_baseline(store, BaselineConfig("cnn", epochs=1, batch_size=8, learning_rate=1e-3), **quiet)
    assert other != first[0] and len(list((store / "runs").iterdir())) == 2  # other settings: a run of their own


def test_a_schedule_spread_over_the_epochs_makes_a_longer_run_a_run_of_its_own():
    """A cosine (or wrn's step) schedule reaches its end at the last epoch: going on from a shorter run would
    start the rate again from where it had fallen to 0, so the number of epochs names the run."""
    def name(kind, epochs, **settings):
        return BaselineConfig(kind, epochs=epochs, **settings).run_name("class")

    assert name("finetune", 5) == name("finetune", 10) and name("wrn", 5, optimizer="adam") == name("wrn", 10,
                                                                                                     optimizer="adam")
    assert name("finetune", 5, cosine=True) != name("finetune", 10, cosine=True) and name("wrn", 5) != name("wrn", 10)
    assert name("finetune", None, cosine=True) == name("finetune", 20, cosine=True)  # None: the default, 20


@pytest.mark.parametrize("damaged, why", [("state.json", "cannot be read"),
                                           ("checkpoint-1.npz", "is damaged or missing"),
                                           ("unsealed", "has no checksum"), ("edited", "fails its checksum")])
def test_a_damaged_checkpoint_is_one_clear_line(fresh_store, damaged, why):
    from dataclasses import asdict

    run = fresh_store() / "runs" / f"20260101-000000-{CNN.run_name('class')}"
    run.mkdir(parents=True)
    state = {"epoch": 1, "config": asdict(CNN), "checkpoint": "checkpoint-1.npz"}
    write_sealed(run / "state.json", state)
    (run / "checkpoint-1.npz").write_bytes(b"PK\x03\x04 half a zip")
    if damaged == "unsealed":  # as cnncodes 0.2 wrote it
        (run / "state.json").write_text(json.dumps(state))
    elif damaged == "edited":
        (run / "state.json").write_text((run / "state.json").read_text().replace('"epoch": 1', '"epoch": 2'))
    else:
        (run / damaged).write_bytes((run / damaged).read_bytes()[:20])
    file = "checkpoint-1.npz" if damaged == "checkpoint-1.npz" else "state.json"
    with pytest.raises(UserError, match=f"{file} {why}.*: delete .* to train this run from the start"):
        train_baseline(run.parents[1], CNN, **quiet)


@pytest.mark.slow
def test_finetune_killed_at_the_phase_boundary_resumes_to_the_uninterrupted_result(fresh_store, monkeypatch):
    """Phase 2 starts from phase 1's weights and seed states with a fresh optimizer, resumed or not."""
    config = BaselineConfig("finetune", epochs=2, head_epochs=1, batch_size=16, backbone="efficientnet_lite0",
                            weights="none", size=32)
    uninterrupted = train_baseline(fresh_store("a"), config, **quiet)
    store = fresh_store("b")
    kill_after_epoch(monkeypatch, 1)
    with pytest.raises(Killed):
        train_baseline(store, config, **quiet)
    monkeypatch.undo()
    assert_same_run(uninterrupted, train_baseline(store, config, **quiet))


PROGRESSIVE = dict(kind="finetune", epochs=3, head_epochs=1, batch_size=16, backbone="efficientnet_lite0",
                   weights="none", size=32, progressive_size=24, learning_rate=1e-3, warmup_epochs=1, cosine=True)


def spy_on_segments(monkeypatch) -> list:
    """(input side, first epoch, last epoch, whether it may keep an epoch) of every train_phase call."""
    from cnncodes.classifiers.baselines import train

    calls, real = [], train.train_phase

    def spy(model, config, until, state, *args, **kwargs):
        side = model.get_layer("bicubic_resize").size
        start = state["epoch"]
        out = real(model, config, until, state, *args, **kwargs)
        calls.append((side, start, state["epoch"], kwargs.get("selects", True)))
        return out

    monkeypatch.setattr(train, "train_phase", spy)
    return calls


@pytest.mark.slow
@pytest.mark.parametrize("switch, kill_at, segments", [
    (2, 2, [(24, 0, 1, False), (24, 1, 2, False), (32, 2, 3, True)]),  # phase 1 at 24, phase 2 switches inside
    (2, 1, [(24, 0, 1, False), (24, 1, 2, False), (32, 2, 3, True)]),
    (1, 1, [(24, 0, 1, False), (32, 1, 3, True)]),  # the switch on phase 2's first epoch: its optimizer is fresh
], ids=["killed-at-the-switch", "killed-before-it", "switch-at-the-phase-boundary"])
def test_progressive_resizing_switches_size_going_on_as_it_was_resumed_or_not(fresh_store, monkeypatch, switch,
                                                                             kill_at, segments):
    """--progressive 24:N: the first N epochs at 24 px, the rest at 32 px, with the same weights, optimizer state
    (so the schedule's step) and seed states; a run killed on either side of the switch ends where the
    uninterrupted one does."""
    config = BaselineConfig(**PROGRESSIVE, progressive_epochs=switch)
    calls = spy_on_segments(monkeypatch)
    uninterrupted = train_baseline(fresh_store("a"), config, **quiet)
    assert calls == segments and uninterrupted[1]["epochs"] == 3
    monkeypatch.undo()
    store = fresh_store("b")
    kill_after_epoch(monkeypatch, kill_at)
    with pytest.raises(Killed):
        train_baseline(store, config, **quiet)
    monkeypatch.undo()
    assert_same_run(uninterrupted, train_baseline(store, config, **quiet))


@pytest.mark.slow
def test_under_patience_only_epochs_at_full_size_can_be_kept(fresh_store, monkeypatch):
    config = BaselineConfig(**{**PROGRESSIVE, "epochs": 4, "head_epochs": 0}, progressive_epochs=2, patience=5)
    calls = spy_on_segments(monkeypatch)
    run, record = train_baseline(fresh_store(), config, **quiet)
    assert calls == [(24, 0, 2, False), (32, 2, 4, True)]
    assert record["chosen"]["best_epoch"] in (3, 4) and record["epochs"] == 4
    assert record["validation_accuracy"] == record["history"]["val_accuracy"][record["chosen"]["best_epoch"] - 1]


def test_a_baseline_starts_from_its_seed_alone(colour_store, monkeypatch):
    """Keras seeds unseeded layers from Python's global `random`, which a Dask worker's heartbeat draws
    from on another thread: here every layer made draws from it first, as that thread might."""
    import keras

    def start(seed):
        built = build(BaselineConfig("cnn", seed=seed), (16, 16, 3), 3)
        return [np.asarray(v) for v in built.model.weights + seed_states(built.model)]

    clean = start(0)
    make = keras.layers.Layer.__init__

    def draw_first(self, *args, **kwargs):
        random.random()
        make(self, *args, **kwargs)

    monkeypatch.setattr(keras.layers.Layer, "__init__", draw_first)
    for a, b in zip(clean, start(0), strict=True):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(clean[0], start(1)[0])


def scores(table):
    return [(r["head"], r["folds"], r["mean"], r["std"]) for r in table["rows"]]


@pytest.fixture(scope="module")
def uninterrupted_kfold(colour_store, tmp_path_factory):
    """(store with its finished folds, table) of an uninterrupted dense k-fold run."""
    store = shutil.copytree(colour_store, tmp_path_factory.mktemp("kfold") / "store",
                            ignore=shutil.ignore_patterns("runs"))
    return store, kfold_scores(store, ["dense"], k=4, params=DENSE, progress=False)


def test_kfold_resumed_after_lost_and_damaged_folds_gives_the_same_table(uninterrupted_kfold, tmp_path):
    """Before: a dense fold computed in another process, or after other folds, came out different;
    and a damaged fold file stopped every later run."""
    store = shutil.copytree(uninterrupted_kfold[0], tmp_path / "store")
    folds = sorted((store / "runs").glob("kfold-*/folds/*.json"))
    folds[0].unlink()
    folds[2].write_text('{"accuracy": 0.5, "sec')  # half a file
    resumed = kfold_scores(store, ["dense"], k=4, params=DENSE, progress=False)
    assert resumed["tasks_run"] == 2 and scores(resumed) == scores(uninterrupted_kfold[1])


@pytest.mark.slow
def test_kfold_killed_from_the_command_line_resumes_to_the_same_table(fresh_store, uninterrupted_kfold):
    store = fresh_store()
    folds = store / "runs" / "kfold-codes-k4-train" / "folds"
    params = [f"--param=dense.{k}={v}" for k, v in DENSE["dense"].items()]
    kill_midway(["kfold", "--store", store, "--head", "dense", "-k", 4, *params, "--quiet"],
                lambda: folds.exists() and any(folds.glob("*.json")))
    done = len(list(folds.glob("*.json")))
    assert 1 <= done < 4, "kfold was not killed midway"
    resumed = kfold_scores(store, ["dense"], k=4, params=DENSE, progress=False)
    assert resumed["tasks_run"] == 4 - done and scores(resumed) == scores(uninterrupted_kfold[1])


@pytest.mark.parametrize("k", [1, 0, -3])
def test_kfold_needs_at_least_two_folds(colour_store, k):
    with pytest.raises(UserError, match="-k must be at least 2"):
        kfold_scores(colour_store, ["logreg"], k=k, progress=False)
