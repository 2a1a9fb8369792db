"""finetune --from-features: the layers above a cached cut train on its stored maps, and one epoch of it is one
epoch of the fine-tune that computes the bottom of the network again (same seed, within float16 rounding)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.baseline_config import BaselineConfig
from cnncodes.classifiers.train import train_baseline
from cnncodes.cli import cli
from cnncodes.features.errors import UserError
from cnncodes.pipeline.extract import FeatureConfig, extract_features
from cnncodes.pipeline.ingest import IngestConfig, ingest

quiet = dict(progress=False, log=lambda m: None)
CUT = "block5c_add"  # the block output right below Lite0's default unfreeze point, block6a_expand_conv
FINETUNE = dict(kind="finetune", epochs=1, head_epochs=0, batch_size=8, backbone="efficientnet_lite0",
                weights="none", size=32, learning_rate=1e-3)


@pytest.fixture(scope="module")
def mirrored_store(tmp_path_factory):
    """3 classes of 16x16 images equal to their mirror images, so the fine-tune's random flip changes nothing
    and both runs see the same pixels; the maps at CUT (and pooled codes) of random-weight Lite0 at 32 px."""
    root = tmp_path_factory.mktemp("maps")
    rng = np.random.default_rng(0)
    for split, n in (("train", 12), ("test", 4)):
        for k, cls in enumerate(("ant", "bee", "cat")):
            (root / "tree" / split / cls).mkdir(parents=True)
            for i in range(n):
                half = rng.integers(0, 90, (16, 8, 3))
                half[..., k] += 140
                cv2.imwrite(str(root / "tree" / split / cls / f"{i}.png"),
                            np.concatenate([half, half[:, ::-1]], axis=1).astype(np.uint8))
    store = ingest(root / "store", IngestConfig(f"folder:{root / 'tree'}", image_size=16), **quiet).path
    extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, layer=CUT, spatial=True), name="maps",
                     **quiet)
    extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, layer=CUT), name="pooled", **quiet)
    return store


def head_weights(run):
    """The last four arrays of the run's checkpoint: the Dense(1024) and softmax kernels and biases."""
    saved = np.load(run / json.loads((run / "state.json").read_text())["checkpoint"])
    count = sum(k.startswith("weights.") for k in saved.files)
    return [saved[f"weights.{i}"] for i in range(count - 4, count)]


def test_one_epoch_from_cached_maps_equals_one_epoch_from_pixels(mirrored_store):
    pixels_run, pixels = train_baseline(mirrored_store, BaselineConfig(**FINETUNE), **quiet)
    maps_run, maps = train_baseline(mirrored_store, BaselineConfig(**FINETUNE, from_features="maps"), **quiet)
    assert maps["features"] == "maps of maps" and pixels["features"].startswith("pixels")
    np.testing.assert_allclose(maps["history"]["loss"], pixels["history"]["loss"], rtol=2e-3)
    for a, b in zip(head_weights(maps_run), head_weights(pixels_run), strict=True):
        # float16 maps move a ReLU unit sitting at 0 now and then: compared as a whole, not element by element;
        # the biases start at 0, so theirs is the comparison of what training changed (about 1% apart here)
        assert np.linalg.norm(a - b) <= 3e-2 * np.linalg.norm(b)
    assert not np.allclose(head_weights(maps_run)[0], head_weights(pixels_run)[0] * 0)  # trained, not zero
    assert maps["test_predictions"] == pixels["test_predictions"]


@pytest.mark.parametrize("options, problem", [
    (dict(from_features="pooled"), "holds pooled codes only: extract the maps with"),
    (dict(from_features="maps", size=48), "was extracted with size 32, but the fine-tune asks for 48"),
    (dict(from_features="maps", seed=1), "random weights drawn with seed 0: give --seed 0"),
    (dict(from_features="maps", unfreeze_from="all"), "--unfreeze-from all trains layers at or below block5c_add"),
    (dict(from_features="maps", unfreeze_from="block5c_project_conv"), "at or below block5c_add"),
    (dict(from_features="maps", crop_area=0.5), "--crop-area changes the pixels"),
    (dict(from_features="maps", kind="cnn"), "--from-features is finetune's: cnn trains on pixels"),
    (dict(from_features="nothing"), "nothing"),
])
def test_maps_a_fine_tune_cannot_start_from_are_one_line_before_training(mirrored_store, options, problem):
    runs = set((mirrored_store / "runs").glob("*"))
    with pytest.raises(UserError, match=problem.replace("-", r"\-")):
        train_baseline(mirrored_store, BaselineConfig(**{**FINETUNE, **options}), **quiet)
    assert set((mirrored_store / "runs").glob("*")) == runs  # no run folder left half-made


def test_from_features_on_the_command_line(mirrored_store):
    result = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(mirrored_store), "--backbone",
                                      "efficientnet_lite0", "--weights", "none", "--size", "32", "--epochs", "2",
                                      "--head-epochs", "1", "--batch-size", "8", "--from-features", "maps", "--quiet"])
    assert result.exit_code == 0, result.output
    bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(mirrored_store), "--backbone",
                                   "efficientnet_lite0", "--weights", "none", "--size", "32",
                                   "--from-features", "pooled"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "holds pooled codes only" in bad.output


def test_maps_beyond_half_the_memory_are_refused_before_reading(mirrored_store, monkeypatch):
    from cnncodes.classifiers import cached_maps

    monkeypatch.setattr(cached_maps, "available_memory", lambda: 1000)
    with pytest.raises(UserError, match="--from-features maps: its maps take .* GiB while read, more than half"):
        train_baseline(mirrored_store, BaselineConfig(**FINETUNE, from_features="maps"), **quiet)


def test_damaged_maps_are_one_line_naming_the_file(mirrored_store, tmp_path):
    import shutil

    store = shutil.copytree(mirrored_store, tmp_path / "store", ignore=shutil.ignore_patterns("runs"))
    maps = store / "features" / "maps.h5"
    maps.write_bytes(maps.read_bytes()[: maps.stat().st_size // 2])
    bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(store), "--backbone", "efficientnet_lite0",
                                   "--weights", "none", "--size", "32", "--from-features", "maps"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "maps" in bad.output, bad.output
    assert "Traceback" not in bad.output and not (store / "runs").exists()
