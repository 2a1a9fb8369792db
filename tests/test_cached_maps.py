"""finetune --from-features: the layers above a cached cut train on its stored maps, and one epoch of it is one
epoch of the fine-tune that computes the bottom of the network again (same seed, within float16 rounding)."""
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.baselines.cached_maps import DrawnMaps
from cnncodes.classifiers.baselines.train import train_baseline
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.cli import cli
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

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
    extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, layer=CUT, spatial=True, views=2),
                     name="viewed", **quiet)
    extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, layer="block4c_add", spatial=True),
                     name="lower", **quiet)
    for name, options in [("crossed", dict(layer="block5b_project_bn")), ("top", dict(layer=None)),
                          ("flipped", dict(layer=CUT, flip_average=True))]:  # sets no fine-tune can start from
        extract_features(store, FeatureConfig("efficientnet_lite0", "none", 32, spatial=True, **options), name=name,
                         **quiet)
    return store


def trainable_arrays(monkeypatch) -> list:
    """Filled, at each train_phase call, with (name, before, after) for every array it trains: block6a on, then
    the head."""
    from cnncodes.classifiers.baselines import train

    kept, real = [], train.train_phase

    def spy(model, *args, **kwargs):
        before = [np.array(v) for v in model.trainable_variables]
        out = real(model, *args, **kwargs)
        kept[:] = [(v.name, b, np.array(v)) for v, b in zip(model.trainable_variables, before, strict=True)]
        return out

    monkeypatch.setattr(train, "train_phase", spy)
    return kept


@pytest.mark.slow
def test_one_epoch_from_cached_maps_equals_one_epoch_from_pixels(mirrored_store, monkeypatch):
    trained = trainable_arrays(monkeypatch)
    _, pixels = train_baseline(mirrored_store, BaselineConfig(**FINETUNE), **quiet)
    from_pixels = list(trained)
    _, maps = train_baseline(mirrored_store, BaselineConfig(**FINETUNE, from_features="maps"), **quiet)
    assert maps["features"] == "maps of maps" and pixels["features"].startswith("pixels")
    np.testing.assert_allclose(maps["history"]["loss"], pixels["history"]["loss"], rtol=2e-3)
    assert [n for n, _, _ in trained] == [n for n, _, _ in from_pixels] and len(trained) > 4  # block6a on, head
    for (name, start, end), (_, start_pixels, end_pixels) in zip(trained, from_pixels, strict=True):
        np.testing.assert_array_equal(start, start_pixels, err_msg=name)  # the same initial weights...
        # ... and the same steps: float16 maps move a ReLU unit sitting at 0 now and then, so each array's
        # update is compared as a whole, not element by element (about 1% apart here)
        update, update_pixels = end - start, end_pixels - start_pixels
        assert np.linalg.norm(update_pixels) > 0 and np.linalg.norm(update - update_pixels) <= \
            3e-2 * np.linalg.norm(update_pixels), name
    assert maps["test_predictions"] == pixels["test_predictions"]


def test_each_epoch_draws_the_plain_maps_or_one_view_per_image_from_its_seed():
    X = (np.arange(60)[:, None, None, None] * np.ones((60, 2, 2, 1))).astype(np.float16)
    draw = DrawnMaps(X, np.stack([X + 100, X + 200], axis=1))
    epoch = draw(np.random.default_rng([0, 1]))
    np.testing.assert_array_equal(epoch, draw(np.random.default_rng([0, 1])))  # a resumed epoch draws the same
    offsets = (epoch - X)[:, 0, 0, 0]
    assert (epoch == (X + offsets[:, None, None, None])).all()  # whole maps, never a mix of views
    assert set(offsets) == {0, 100, 200} and (X[:, 0, 0, 0] == np.arange(60)).all()  # X itself untouched
    assert not np.array_equal(epoch, draw(np.random.default_rng([0, 2])))


def test_a_fine_tune_from_maps_with_views_trains_on_them(mirrored_store, monkeypatch):
    drawn = []
    real = DrawnMaps.__call__
    monkeypatch.setattr(DrawnMaps, "__call__", lambda self, rng, epoch=None: drawn.append(real(self, rng)) or drawn[-1])
    _, viewed = train_baseline(mirrored_store, BaselineConfig(**FINETUNE, patience=1, from_features="viewed"), **quiet)
    assert viewed["features"] == "maps of viewed, each epoch drawing the plain maps or one of 2 views per image"
    store = FeatureStore.open(mirrored_store)
    plain, views = store.features("viewed", split="train", kind="spatial"), store.views("viewed", kind="spatial")
    (epoch,) = drawn  # one epoch's inputs: 33 of the 36 training rows (3 validate), each plain or one of its views
    assert len(epoch) == len(plain) - 3

    def found_in(maps):
        return sum(any(np.array_equal(m, other) for other in maps) for m in epoch)
    from_plain, from_views = found_in(plain), found_in(views.reshape(-1, *views.shape[2:]))
    assert from_plain > 0 and from_views > 0 and from_plain + from_views == len(epoch)


def test_maps_cut_lower_train_every_layer_above_the_cut(mirrored_store, monkeypatch):
    """Not only the backbone's last stage (the default from pixels): from the layer right after the cut on."""
    from cnncodes.classifiers.baselines import networks

    trained, real = [], networks.set_phase
    monkeypatch.setattr(networks, "set_phase", lambda *a, **k: trained.append(real(*a, **k)) or trained[-1])
    run, _ = train_baseline(mirrored_store, BaselineConfig(**FINETUNE, from_features="lower"), **quiet)
    (layers,) = trained
    assert layers[0] == "block5a_expand_conv" and "block5c_project_conv" in layers and "block6a_expand_conv" in layers
    assert "block4c_project_conv" not in layers
    assert json.loads((run / "state.json").read_text())["config"]["unfreeze_from"] == "block5a_expand_conv"


@pytest.mark.parametrize("options, problem", [
    (dict(from_features="pooled"), "holds pooled codes only: extract the maps with"),
    (dict(from_features="maps", size=48), "was extracted with size 32, but the fine-tune asks for 48"),
    (dict(from_features="maps", seed=1), "random weights drawn with seed 0: give --seed 0"),
    (dict(from_features="maps", unfreeze_from="all"), "--unfreeze-from all trains layers at or below block5c_add"),
    (dict(from_features="maps", unfreeze_from="block5c_project_conv"), "at or below block5c_add"),
    (dict(from_features="maps", crop_area=0.5), "--crop-area changes the pixels"),
    (dict(from_features="maps", kind="cnn"), "--from-features is finetune's: cnn trains on pixels"),
    (dict(from_features="nothing"), "nothing"),
    (dict(from_features="maps", backbone="efficientnet_lite1"), "was extracted with backbone efficientnet_lite0, but"),
    (dict(from_features="maps+pooled"), "joins several sets: name one set extracted with --spatial"),
    (dict(from_features="crossed"), "block5b_project_bn is not a cut point of efficientnet_lite0 .a skip connection"),
    (dict(from_features="top"), "is cut at efficientnet_lite0's last layer, which leaves nothing of it to train"),
    (dict(from_features="flipped"), "holds flip-averaged maps, which no image has"),
    (dict(progressive_size=24, progressive_epochs=1, kind="cnn"), "--progressive is finetune's"),
    (dict(progressive_epochs=1), "progressive_epochs 1 without progressive_size"),
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
    from cnncodes.classifiers.baselines import cached_maps
    from cnncodes.features.store import FeatureStore

    monkeypatch.setattr(cached_maps, "available_memory", lambda: 1000)
    monkeypatch.setattr(FeatureStore, "features", lambda *a, **k: pytest.fail("the maps were read"))
    with pytest.raises(UserError, match="--from-features maps: its maps take .* GiB while read, more than half"):
        train_baseline(mirrored_store, BaselineConfig(**{**FINETUNE, "batch_size": 4}, from_features="maps"), **quiet)


def test_damaged_maps_are_one_line_naming_the_file(mirrored_store, tmp_path):
    import shutil

    store = shutil.copytree(mirrored_store, tmp_path / "store", ignore=shutil.ignore_patterns("runs"))
    maps = store / "features" / "maps.h5"
    maps.write_bytes(maps.read_bytes()[: maps.stat().st_size // 2])
    bad = CliRunner().invoke(cli, ["baseline", "finetune", "--store", str(store), "--backbone", "efficientnet_lite0",
                                   "--weights", "none", "--size", "32", "--from-features", "maps"])
    assert bad.exit_code == 1 and bad.output.count("\n") == 1 and "maps" in bad.output, bad.output
    assert "Traceback" not in bad.output and not (store / "runs").exists()


def test_kfold_says_that_its_folds_fine_tune_from_pixels(mirrored_store):
    from cnncodes.classifiers.evaluation.kfold import kfold_scores

    with pytest.raises(UserError, match="kfold fine-tunes each fold from pixels: .*--fold I -k K"):
        kfold_scores(mirrored_store, ["finetune"], k=2, params={"finetune.from_features": "maps"}, progress=False)
    assert not list((mirrored_store / "runs").glob("kfold-*"))
