"""Pixel baselines: they learn, fine-tuning freezes what it claims, a killed run resumes at its epoch."""
import json

import numpy as np
import pytest

from cnncodes.classifiers.baselines.networks import finetune_model, set_phase
from cnncodes.classifiers.baselines.train import build, compile_phase, train_baseline
from cnncodes.classifiers.heads.registry import BASELINES
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.classifiers.training.checkpoint import Checkpoint
from cnncodes.classifiers.training.seeding import seed_states
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.backbones import get_backbone
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import kill_midway, run_cli, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory):
    """3 classes told apart by colour: trivially separable, 16x16 pixels."""
    root = tmp_path_factory.mktemp("colour")
    tree = write_mixed_tree(root / "tree", per_class=20)
    return ingest(root / "store", IngestConfig(f"folder:{tree}", image_size=16), **quiet).path


# Quick settings for each registered baseline (one added to the registry needs its entry: a KeyError says so)
LEARNS = {"cnn": BaselineConfig("cnn", epochs=6, batch_size=16, learning_rate=1e-3),
          "wrn": BaselineConfig("wrn", epochs=3, batch_size=16, depth=10, width=1),
          "finetune": BaselineConfig("finetune", epochs=2, head_epochs=1, batch_size=16, weights="none", size=32),
          "airbench": BaselineConfig("airbench", epochs=4, batch_size=16)}  # on 32x32 images: its minimum is 25


@pytest.mark.parametrize("kind", BASELINES)
def test_baseline_beats_chance_and_writes_a_fit_shaped_record(colour_store, kind, request):
    config = LEARNS[kind]
    store = request.getfixturevalue("colour_store_32") if kind == "airbench" else colour_store
    run, record = train_baseline(store, config, **quiet)
    assert record["test_accuracy"] > 0.6  # chance is 1/3
    assert record["epochs"] == config.epochs == len(record["history"]["loss"])
    assert record["kind"] == "baseline" and len(record["confusion"]) == 3 and record["seconds_per_epoch"] > 0
    assert (run / "record.json").exists() and (run / "model.weights.h5").exists()


def test_baseline_on_a_stored_fold(colour_store):
    _, record = train_baseline(colour_store, BaselineConfig("cnn", epochs=1, fold=2, batch_size=16), **quiet)
    folds = FeatureStore.open(colour_store).folds(6, on="train")
    assert np.array(record["confusion"]).sum() == (folds == 2).sum()


def test_finetune_phases_freeze_and_unfreeze_exactly_what_they_claim():
    import keras

    built = finetune_model((16, 16, 3), 3, "resnet50", "none", size=32)
    base = built.backbone
    assert set_phase(built, 1, None) == [] and base.trainable_weights == []
    head = [w.path for w in built.model.trainable_weights]
    assert head and all(w.startswith("dense") for w in head)  # phase 1 trains only the new head

    trained = set_phase(built, 2, None)
    names = [l.name for l in base.layers]
    expected = [l.name for l in base.layers[names.index(get_backbone("resnet50").last_stage):]
                if l.weights and not isinstance(l, keras.layers.BatchNormalization)]
    assert trained == expected and trained[0] == "conv5_block1_1_conv"
    frozen = {l.name for l in base.layers if l.weights} - set(trained)
    assert "conv4_block6_3_conv" in frozen and all(not base.get_layer(n).trainable for n in frozen)
    assert set_phase(built, 2, "conv4_block6_1_conv")[0] == "conv4_block6_1_conv"


def test_finetuning_efficientnet_lite_unfreezes_its_last_two_stages_and_top():
    import keras

    built = finetune_model((16, 16, 3), 3, "efficientnet_lite0", "none", size=32)
    trained = set_phase(built, 2, None, "efficientnet_lite0")
    assert trained[0] == "block6a_expand_conv" and trained[-1] == "top_conv"
    assert "block6d_dwconv" in trained and "block5c_project_conv" not in trained
    assert not any(isinstance(built.backbone.get_layer(n), keras.layers.BatchNormalization) for n in trained)
    assert "preprocess_lite" in [l.name for l in built.model.layers]


def test_checkpoint_restores_weights_optimizer_state_and_seed_states(colour_store, tmp_path):
    """Keras's save_weights keeps no seed states, and loading an optimizer that is not built yet skipped
    its variables ("Skipping variable loading for optimizer")."""
    import warnings

    store = FeatureStore.open(colour_store)
    config = BaselineConfig("cnn", batch_size=16)
    a = build(config, store.image_shape, 3)
    compile_phase(a, config, 1)
    a.model.fit(store.images(), store.labels(), epochs=1, batch_size=16, verbose=0)
    Checkpoint(tmp_path).save(a.model, {"epoch": 1})
    b = build(BaselineConfig("cnn", batch_size=16, seed=9), store.image_shape, 3)
    compile_phase(b, config, 1)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Checkpoint(tmp_path).restore(b.model)
        Checkpoint(tmp_path).restore_optimizer(b.model)
    assert int(b.model.optimizer.iterations.numpy()) == 8  # 120 images in batches of 16
    mine, restored = [a.model.weights, a.model.optimizer.variables, seed_states(a.model)], \
        [b.model.weights, b.model.optimizer.variables, seed_states(b.model)]
    assert len(seed_states(a.model)) == 5  # translation, flip, 3 dropouts
    for x, y in zip(sum(mine, []), sum(restored, [])):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


@pytest.mark.slow
def test_killed_baseline_resumes_from_its_last_checkpoint_to_the_uninterrupted_result(colour_store, tmp_path):
    """Killed in its own process, resumed in this one: the same test predictions as a run never killed."""
    import shutil

    store, clean = tmp_path / "store", tmp_path / "clean"
    for copy in (store, clean):
        shutil.copytree(colour_store, copy, ignore=shutil.ignore_patterns("runs"))
    config = BaselineConfig("cnn", epochs=20, batch_size=8)

    def state():
        found = list((store / "runs").glob(f"*-{config.run_name('class')}/state.json"))
        return found[0] if found else None

    kill_midway(["baseline", "cnn", "--store", store, "--epochs", 20, "--batch-size", 8, "--quiet"],
                lambda: state() is not None and json.loads(state().read_text()).get("epoch", 0) >= 2)
    killed_at = json.loads(state().read_text())["epoch"]
    assert 2 <= killed_at < 20, "the run was not killed midway"
    said = []
    _, record = train_baseline(store, config, progress=False, log=said.append)
    assert said == [f"baseline: resuming {state().parent.name} after epoch {killed_at}/20"]
    assert record["epochs"] == 20 and len(record["history"]["loss"]) == 20
    _, uninterrupted = train_baseline(clean, config, **quiet)
    assert record["history"] == uninterrupted["history"]
    assert record["test_predictions"] == uninterrupted["test_predictions"]
    again = run_cli("baseline", "cnn", "--store", store, "--epochs", 20, "--batch-size", 8, "--quiet")
    assert again.returncode == 0 and again.stdout.splitlines()[-1] == f"already done: {state().parent}"  # not "saved"


def test_limit_and_validation_slice_are_stratified_though_rows_are_grouped_by_class(colour_store, monkeypatch):
    """Stored training rows are sorted by class: 'the first N rows' would hold one class only."""
    import keras

    from cnncodes.classifiers.training import keras_training

    seen = {}
    fit, batches = keras.Model.fit, keras_training.seeded_batches

    def spy_fit(self, x, **kw):
        seen["val"] = np.bincount(kw["validation_data"][1], minlength=3)
        return fit(self, x, **kw)

    def spy_batches(X, y, *args, **kwargs):
        seen["train"] = np.bincount(y, minlength=3)
        return batches(X, y, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", spy_fit)
    monkeypatch.setattr(keras_training, "seeded_batches", spy_batches)
    train_baseline(colour_store, BaselineConfig("cnn", epochs=1, batch_size=16, limit=30, patience=2, seed=1), **quiet)
    assert seen["train"].tolist() == [9, 9, 9] and seen["val"].tolist() == [1, 1, 1]


@pytest.mark.slow
def test_kfold_runs_a_pixel_baseline_on_the_stored_folds(colour_store):
    from cnncodes.classifiers.evaluation.kfold import kfold_scores

    table = kfold_scores(colour_store, ["cnn"], k=5, params={"cnn": {"epochs": 1, "batch_size": 16}}, progress=False)
    (row,) = table["rows"]
    assert row["head"] == "cnn" and len(row["folds"]) == 5
    fold2 = BaselineConfig("cnn", label="class", epochs=1, batch_size=16, fold=2, k=5).run_name("class")
    (run,) = (colour_store / "runs").glob(f"*-{fold2}")
    record = json.loads((run / "record.json").read_text())
    assert row["folds"][2] == round(record["test_accuracy"], 4)
    assert np.array(record["confusion"]).sum() == (FeatureStore.open(colour_store).folds(5) == 2).sum()


@pytest.fixture(scope="module")
def digits_store(tmp_path_factory):
    """scikit-learn's 8x8 digits, 3 of each digit per split: smaller than the basic CNN's 10x10 minimum."""
    return ingest(tmp_path_factory.mktemp("digits") / "store", IngestConfig("digits", limit=30), **quiet).path


def fresh_copy(store, tmp_path):
    """The store without the runs other tests left."""
    import shutil

    return shutil.copytree(store, tmp_path / "store", ignore=shutil.ignore_patterns("runs"))


ON_8PX = {"cnn": BaselineConfig("cnn", epochs=1, batch_size=16),
          "wrn": BaselineConfig("wrn", epochs=1, batch_size=16, depth=10, width=1),
          "finetune": BaselineConfig("finetune", epochs=2, head_epochs=1, batch_size=16, backbone="efficientnet_lite0",
                                     weights="none", size=8),  # lite0 at 8 px
          "airbench": BaselineConfig("airbench", epochs=1, batch_size=16)}  # refused: its network needs 25x25


@pytest.mark.slow
@pytest.mark.parametrize("kind", BASELINES)
def test_every_baseline_trains_on_8x8_images(digits_store, kind):
    """The basic CNN's unpadded convolutions and pools shrank 8x8 to nothing: a 40-line Keras traceback.
    airbench's network is too small for them to pool: one line, and no run folder."""
    config = ON_8PX[kind]
    if kind == "airbench":
        with pytest.raises(UserError, match=r"^airbench takes images of 25x25 pixels or more \(its whitening conv "
                                            r"and four poolings\), and the store's are 8x8: use the cnn baseline, or "
                                            r"ingest them larger \(--image-size 32\)$"):
            train_baseline(digits_store, config, **quiet)
        assert not list((digits_store / "runs").glob(f"*-{config.run_name('class')}"))
        return
    said = []
    run, record = train_baseline(digits_store, config, progress=False, log=said.append)
    assert (run / "record.json").exists() and len(record["test_predictions"]) == 30
    if config.kind == "cnn":
        assert said == ["baseline: the store's 8x8 images are smaller than the basic CNN's 10x10 minimum: "
                        "upsampled to 10x10 (bicubic, on the device)"]
        assert record["features"] == "pixels 8px, upsampled to 10px"
    else:
        assert said == [] and record["features"] == "pixels 8px"


def test_finetune_under_its_backbones_minimum_size_is_one_line_before_anything_is_written(digits_store):
    config = BaselineConfig("finetune", weights="none", size=8, epochs=1)
    with pytest.raises(UserError, match=r"^--size 8 is too small for resnet50, which takes at least 32x32 px: "
                                        r"give --size 32 or more"):
        train_baseline(digits_store, config, **quiet)
    assert not list((digits_store / "runs").glob(f"*-{config.run_name('digit')}"))


class Crash(Exception):
    pass


def test_a_failed_baseline_leaves_no_empty_run_folder_but_keeps_one_it_can_resume(colour_store, tmp_path,
                                                                                  monkeypatch):
    store = fresh_copy(colour_store, tmp_path)

    def runs():
        return sorted((store / "runs").glob("*")) if (store / "runs").exists() else []

    missing = BaselineConfig("finetune", backbone="efficientnet_lite0", weights=str(tmp_path / "missing.pth"), size=32,
                             epochs=1)
    with pytest.raises(UserError, match="missing.pth"):  # fails while building the model
        train_baseline(store, missing, **quiet)
    assert runs() == []

    config = BaselineConfig("cnn", epochs=3, batch_size=16)
    save = Checkpoint.save

    def crash_at_first_checkpoint(self, model, state, best_weights=None):
        raise Crash

    monkeypatch.setattr(Checkpoint, "save", crash_at_first_checkpoint)
    with pytest.raises(Crash):  # dies within its first epoch
        train_baseline(store, config, **quiet)
    assert runs() == []

    def crash_after_first_checkpoint(self, model, state, best_weights=None):
        save(self, model, state, best_weights)
        raise Crash

    monkeypatch.setattr(Checkpoint, "save", crash_after_first_checkpoint)
    with pytest.raises(Crash):
        train_baseline(store, config, **quiet)
    (run,) = runs()
    assert (run / "state.json").exists()
    monkeypatch.undo()
    said = []
    assert train_baseline(store, config, progress=False, log=said.append)[0] == run
    assert said == [f"baseline: resuming {run.name} after epoch 1/3"]


def test_a_baseline_records_the_epoch_it_kept_and_scores_that_model_on_its_training_rows(digits_store):
    """Before: chosen.epochs was the epochs trained, though early stopping kept an earlier epoch, and the
    train accuracy was Keras's running average over the last epoch, with augmentation and dropout on."""
    config = BaselineConfig("cnn", epochs=6, patience=1, batch_size=8, learning_rate=0.01)
    run, record = train_baseline(digits_store, config, **quiet)
    history, chosen = record["history"], record["chosen"]
    assert chosen["epochs_trained"] == record["epochs"] == len(history["loss"])
    # the one early-stopping policy (early_stopping.BestEpoch): the highest validation accuracy, then the lowest loss
    ranked = sorted(range(len(history["loss"])), key=lambda e: (-history["val_accuracy"][e], history["val_loss"][e]))
    assert chosen["best_epoch"] == ranked[0] + 1 < chosen["epochs_trained"], \
        "the run no longer stops early: choose other settings"
    assert record["validation_accuracy"] == history["val_accuracy"][chosen["best_epoch"] - 1]

    from cnncodes.classifiers.baselines.train import train_rows, validation_slice

    store = FeatureStore.open(digits_store)  # the kept model, in inference mode, on the rows it trained on
    labels = store.labels()
    rows, _ = train_rows(store, config, labels)
    X, y = store.images()[rows], labels[rows]
    fitted = ~validation_slice(y, config.seed)
    built = build(config, store.image_shape, 10)
    built.model.load_weights(run / "model.weights.h5")
    kept = built.model.predict(X[fitted], verbose=0).argmax(1)
    assert record["train_accuracy"] == (kept == y[fitted]).mean()


def test_wrn_steps_never_fall_on_the_first_epoch_and_the_record_says_where_they_fall(digits_store):
    """Before: with 1 epoch all three x0.2 steps fell at epoch 0, so it trained at 8e-4 and said 0.1."""
    for epochs, schedule in [(1, "constant"), (2, "x0.2 after epoch 1")]:
        config = BaselineConfig("wrn", epochs=epochs, batch_size=16, depth=10, width=1, limit=20)
        _, record = train_baseline(digits_store, config, **quiet)
        assert record["history"]["learning_rate"] == pytest.approx([0.1, 0.02][:epochs])  # what Keras trained at
        assert record["chosen"]["learning_rate"] == 0.1 and record["chosen"]["schedule"] == schedule

    from cnncodes.classifiers.training.schedules import wrn_steps

    assert [wrn_steps(n) for n in (1, 2, 3, 4, 10, 200)] == [[], [1], [1, 2], [1, 2, 3], [3, 6, 8], [60, 120, 160]]


def test_a_finished_baseline_is_read_back_not_saved_again(colour_store, tmp_path, monkeypatch):
    """`baseline` printed "saved to RUN" for a run it had only read back (the CLI asks finished_run)."""
    store = fresh_copy(colour_store, tmp_path)
    config = BaselineConfig("cnn", epochs=1, batch_size=16)
    run, record = train_baseline(store, config, **quiet)
    written = (run / "record.json").stat().st_mtime_ns
    said = []
    again, read_back = train_baseline(store, config, progress=False, log=said.append)
    assert again == run and said == [f"baseline: {run.name} was finished before: nothing to train, its record follows"]
    assert (run / "record.json").stat().st_mtime_ns == written and read_back["history"] == record["history"]

    from cnncodes.classifiers.baselines.baseline_runs import finished_run

    assert finished_run(store, config) == run
    assert finished_run(store, BaselineConfig("cnn", epochs=2, batch_size=16)) is None  # more epochs: more to train
    assert finished_run(store, BaselineConfig("cnn", epochs=1, batch_size=8)) is None  # other settings: not trained
    named, record = train_baseline(store, BaselineConfig("cnn", epochs=1, batch_size=16, label="CLASS"), **quiet)
    assert record["label"] == "class"  # label sets ignore case, as elsewhere, and keep their stored name
    assert finished_run(store, BaselineConfig("cnn", epochs=1, batch_size=16, label="class")) == named

    from cnncodes.classifiers.training import baseline_config

    assert run.name.endswith(config.run_name("class"))
    monkeypatch.setattr(baseline_config, "code_version", lambda: {"source_sha256": "0" * 64})  # other code
    assert finished_run(store, config) is None  # its run is not this code's: trained anew, never read back


# -- issue 19: settings checked before any work, for Python callers too; never a record of NaN ---------------------
@pytest.mark.parametrize("config, message", [
    (BaselineConfig("cnn", learning_rate=float("inf")), "head cnn: learning_rate takes a positive number up to 10"),
    (BaselineConfig("wrn", depth=10_000), "head wrn: depth takes a whole number 6n\\+4 from 10 to 1000"),
    (BaselineConfig("finetune", backbone="bogus"), "head finetune: backbone takes one of resnet50, "),
    (BaselineConfig("finetune", size=32, unfreeze_from="conv9_block1_out"), "resnet50 has no layer 'conv9_block1_out'"),
])
def test_a_baseline_setting_it_cannot_take_is_refused_before_the_store_is_opened(tmp_path, config, message):
    """The layer to unfreeze from was looked for only after phase 1 had trained; inf was a run of NaN."""
    with pytest.raises(UserError, match=message):
        train_baseline(tmp_path / "no-store", config, **quiet)
    assert not (tmp_path / "no-store").exists()


def test_a_diverged_baseline_is_an_error_never_a_record(colour_store, tmp_path, monkeypatch):
    from cnncodes.classifiers.baselines import train

    store = fresh_copy(colour_store, tmp_path)
    phase = train.train_phase

    def diverging(model, config, until, state, *args, **kwargs):
        best = phase(model, config, until, state, *args, **kwargs)
        state["history"]["loss"][-1] = float("nan")  # what a too-high rate gives
        return best

    monkeypatch.setattr(train, "train_phase", diverging)
    with pytest.raises(UserError,
                       match="baseline cnn diverged .* at learning rate 0.0001: give a lower --learning-rate"):
        train_baseline(store, BaselineConfig("cnn", epochs=1, batch_size=16), **quiet)
    assert not list((store / "runs").glob("*/record.json"))
