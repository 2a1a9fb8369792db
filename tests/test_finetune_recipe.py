"""Fine-tuning's recipe, each piece an option: every layer trained, BatchNorm frozen or trained, random-resized
crops, label smoothing, decoupled weight decay that spares BatchNorm and biases, warm-up then cosine decay."""
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.baselines.networks import finetune_model, set_phase
from cnncodes.classifiers.baselines.train import compile_phase, train_baseline
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.cli import cli
from cnncodes.features.errors import BadParameter, UserError
from cnncodes.features.sealed import read_sealed
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)
LITE = dict(backbone="efficientnet_lite0", weights="none", size=32)


def test_unfreezing_all_trains_every_layer_and_batchnorm_only_on_request():
    import keras

    built = finetune_model((16, 16, 3), 3, **LITE)
    weighted = [l for l in built.backbone.layers if l.weights]
    norms = {l.name for l in weighted if isinstance(l, keras.layers.BatchNormalization)}
    assert set(set_phase(built, 2, "all", "efficientnet_lite0")) == {l.name for l in weighted} - norms
    assert set(set_phase(built, 2, "all", "efficientnet_lite0", train_batchnorm=True)) == {l.name for l in weighted}
    assert set_phase(built, 1, "all", "efficientnet_lite0") == [] and built.backbone.trainable_weights == []


def test_trained_batchnorm_normalises_by_the_batch_while_training_and_frozen_by_its_moving_statistics():
    import keras

    half = np.random.default_rng(0).integers(0, 256, (8, 16, 8, 3), dtype=np.uint8)
    images = np.concatenate([half, half[:, :, ::-1]], axis=2)  # mirror images: the random flip changes nothing
    for train_batchnorm in (False, True):
        built = finetune_model((16, 16, 3), 3, **LITE, train_batchnorm=train_batchnorm)
        set_phase(built, 2, "all", "efficientnet_lite0", train_batchnorm=train_batchnorm)
        training = keras.ops.convert_to_numpy(built.model(images, training=True))
        inference = keras.ops.convert_to_numpy(built.model(images, training=False))
        assert np.allclose(training, inference, atol=1e-6) != train_batchnorm


def test_random_resized_crops_while_training_only_half_of_them_flipped():
    import keras

    from cnncodes.pipeline.layers import RandomResizedCrop

    ramp = np.broadcast_to(np.arange(32, dtype=np.float32)[None, None, :, None], (200, 32, 32, 3))  # value = column
    layer = RandomResizedCrop(0.25, seed=3)
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(layer(ramp, training=False)), ramp)
    out = keras.ops.convert_to_numpy(layer(ramp, training=True))
    middle = out[:, 16, 2:-2, 0]  # a row, away from the border's reflection
    flipped = (np.diff(middle, axis=1) < 0).all(axis=1)
    assert ((np.diff(middle, axis=1) > 0).all(axis=1) | flipped).all()  # each row is the ramp, or mirrored
    assert 0.35 < flipped.mean() < 0.65
    width = (middle.max(1) - middle.min(1)) * 32 / 27  # the crop's share of the width, from 28 of 32 columns
    assert width.min() > np.sqrt(0.25 * 3 / 4) * 31 - 1.5 and np.median(width) < 0.9 * 31  # crops of every size


def test_the_schedule_warms_up_then_decays_along_a_half_cosine():
    import keras

    from cnncodes.classifiers.training.keras_training import WarmupCosine

    cosine = WarmupCosine(0.1, warmup=10, total=110, cosine=True)
    rates = np.array([float(keras.ops.convert_to_numpy(cosine(s))) for s in range(0, 121)])
    np.testing.assert_allclose(rates[:10], 0.1 * np.arange(1, 11) / 10, rtol=1e-5)
    np.testing.assert_allclose(rates[60], 0.05, rtol=1e-4)  # half way down the cosine
    assert rates[110] < 1e-7 and (np.diff(rates[9:]) <= 1e-9).all()
    flat = WarmupCosine(0.1, warmup=4, total=100, cosine=False)
    assert [round(float(keras.ops.convert_to_numpy(flat(s))), 6) for s in (0, 3, 50)] == [0.025, 0.1, 0.1]


def test_weight_decay_spares_batchnorm_and_biases():
    config = BaselineConfig("finetune", **LITE, unfreeze_from="all", weight_decay=0.05, optimizer="adamw")
    built = finetune_model((16, 16, 3), 3, **LITE)
    compile_phase(built, config, 2, steps_per_epoch=4)
    optimizer = built.model.optimizer
    decayed = {v.name for v in built.model.trainable_variables if optimizer._use_weight_decay(v)}
    assert "kernel" in decayed or "depthwise_kernel" in decayed
    assert not decayed & {"gamma", "beta", "bias"}
    assert type(optimizer).__name__ == "AdamW" and float(optimizer.weight_decay) == pytest.approx(0.05)


def test_bf16_fine_tunes_the_backbone_in_bfloat16_with_float32_master_weights():
    import keras

    from cnncodes.classifiers.baselines.train import build

    config = BaselineConfig("finetune", **LITE, unfreeze_from="all", precision="bf16", crop_area=0.6)
    built = build(config, (16, 16, 3), 3)
    compile_phase(built, config, 2, steps_per_epoch=2)
    convs = [l for l in built.backbone.layers if isinstance(l, (keras.layers.Conv2D, keras.layers.DepthwiseConv2D))]
    assert convs and {l.compute_dtype for l in convs} == {"bfloat16"}  # the backbone too, not only the head
    assert {v.dtype for v in built.model.trainable_variables} == {"float32"}
    before = [keras.ops.convert_to_numpy(v) for v in built.backbone.trainable_variables]
    images = np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8)
    loss = built.model.train_on_batch(images, np.array([0, 1, 2, 0]))
    assert np.isfinite(loss[0] if isinstance(loss, list) else loss)
    after = [keras.ops.convert_to_numpy(v) for v in built.backbone.trainable_variables]
    assert any(not np.array_equal(a, b) for a, b in zip(before, after))  # the step reached the backbone
    assert built.model(images, training=False).dtype == "float32"  # probabilities in float32


def test_label_smoothing_is_categorical_crossentropy_on_smoothed_one_hot_targets():
    import keras

    from cnncodes.classifiers.training.keras_training import SmoothedSparseCrossentropy

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    labels = np.array([0, 1])
    ours = float(SmoothedSparseCrossentropy(0.1)(labels, probs))
    smoothed = 0.9 * np.eye(3)[labels] + 0.1 / 3
    assert ours == pytest.approx(float(np.mean(-(smoothed * np.log(probs)).sum(1))), rel=1e-5)
    assert ours != pytest.approx(float(keras.losses.SparseCategoricalCrossentropy()(labels, probs)))


@pytest.fixture(scope="module")
def colour_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipe")
    tree = write_mixed_tree(root / "tree", per_class=20)
    return ingest(root / "store", IngestConfig(f"folder:{tree}", image_size=16), **quiet).path


@pytest.mark.slow
def test_a_full_fine_tune_with_the_whole_recipe_from_the_command_line(colour_store):
    result = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(colour_store), "--backbone",
                                      "efficientnet_lite0", "--weights", "none", "--size", "32", "--epochs", "3",
                                      "--head-epochs", "1", "--batch-size", "16", "--unfreeze-from", "all",
                                      "--label-smoothing", "0.1", "--weight-decay", "0.01", "--warmup-epochs", "1",
                                      "--cosine", "--optimizer", "adamw", "--train-batchnorm", "--patience", "2",
                                      "--learning-rate", "1e-3", "--crop-area", "0.5", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "schedule warm-up 1 epoch then cosine" in result.output
    run = Path(result.output.split("saved to ")[1].strip())
    record = read_sealed(run / "record.json")
    assert record["epochs"] == 3 and np.isfinite(record["history"]["loss"]).all()
    keys = ("unfreeze_from", "train_batchnorm", "optimizer", "label_smoothing", "crop_area")
    assert {k: record["params"][k] for k in keys} == \
        {"unfreeze_from": "all", "train_batchnorm": True, "optimizer": "adamw", "label_smoothing": 0.1,
         "crop_area": 0.5}


def test_bad_recipe_values_are_one_line_before_any_training(colour_store):
    for option, value in [("--label-smoothing", "1"), ("--weight-decay", "-0.1"), ("--optimizer", "rmsprop"),
                          ("--crop-area", "0")]:
        bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(colour_store), option, value])
        assert bad.exit_code == 2 and option in bad.output
    for value, problem in [("224:1", "the early side must be smaller than --size 32"),
                           ("16:3", "give from 1 to 2 epochs at 16 .of --epochs 3."),
                           ("16:0", "give from 1 to 2 epochs")]:
        bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(colour_store), "--backbone",
                                       "efficientnet_lite0", "--weights", "none", "--size", "32", "--epochs", "3",
                                       "--progressive", value])
        assert bad.exit_code == 1 and problem in bad.output.replace("(", ".").replace(")", "."), bad.output
        assert "Traceback" not in bad.output
    with pytest.raises(UserError, match=r"^--progressive 16:1 is too small for resnet50, which takes at least 32x32 "
                                        r"px: give a side of 32 or more"):
        train_baseline(colour_store, BaselineConfig("finetune", weights="none", size=64, epochs=2,
                                                    progressive_size=16, progressive_epochs=1), **quiet)
    bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(colour_store), "--progressive", "128"])
    assert bad.exit_code == 2 and "give SIZE:EPOCHS, e.g. 128:3, not '128'" in bad.output
    with pytest.raises(BadParameter, match="head finetune: weight_decay takes a number from 0 to below 1"):
        train_baseline(colour_store, BaselineConfig("finetune", **LITE, weight_decay=2.0), **quiet)
