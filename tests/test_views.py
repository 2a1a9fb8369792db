"""Cached augmented views: seeded crops and flips of the training images, their codes stored beside the plain ones."""
import shutil

import cv2
import numpy as np
import pytest

from attacks_store import flip_byte
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import fingerprint
from cnncodes.features.store import FeatureStore
from cnncodes.features.writers import FeatureSetWriter
from cnncodes.pipeline.extraction import extract
from cnncodes.pipeline.extraction.augment import Augmentation, draw_boxes, view_matrices
from cnncodes.pipeline.extraction.config import FORMAT, FeatureConfig, feature_fingerprint
from cnncodes.pipeline.extraction.extract import extract_features, extract_layers
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)
LITE = FeatureConfig("efficientnet_lite0", "none", 32, views=3, seed=2)
CUT = "block6a_expand_activation"


def test_crop_flip_and_resize_on_the_device_are_opencvs_on_the_cropped_image():
    import keras

    from cnncodes.pipeline.layers import make_crop_resize_layer

    images = np.random.default_rng(0).integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    boxes = draw_boxes(Augmentation(), 0, range(6), 1, (12, 12))
    boxes[0], boxes[1] = (0, 0, 12, 12, 0), (3, 2, 5, 9, 1)  # the whole image; a flipped crop
    ours = keras.ops.convert_to_numpy(make_crop_resize_layer(20)([images, *view_matrices(boxes, (12, 12), 20)]))
    for image, (top, left, h, w, flip), view in zip(images, boxes, ours):
        crop = cv2.resize(image[top:top + h, left:left + w], (20, 20), interpolation=cv2.INTER_CUBIC)
        assert np.abs(view - (crop[:, ::-1] if flip else crop)).max() <= 1  # OpenCV rounds in fixed point


def test_boxes_depend_on_seed_row_and_view_alone():
    aug = Augmentation()
    boxes = draw_boxes(aug, 7, range(40), 4, (32, 32))
    np.testing.assert_array_equal(boxes[4 * 30:4 * 31], draw_boxes(aug, 7, [30], 4, (32, 32)))
    assert not np.array_equal(boxes, draw_boxes(aug, 8, range(40), 4, (32, 32)))
    area = boxes[:, 2] * boxes[:, 3] / 32 ** 2
    assert area.min() >= 0.2 and area.max() <= 1 and 0.2 < boxes[:, 4].mean() < 0.8
    assert (boxes[:, :2] >= 0).all() and (boxes[:, :2] + boxes[:, 2:4] <= 32).all()  # inside the image


@pytest.fixture(scope="module")
def views_store(tmp_path_factory):
    """20 digits (10 train rows); two cuts with 3 views each from one pass, chunks of 5, batches of 4."""
    store = ingest(tmp_path_factory.mktemp("views") / "s", IngestConfig("digits", limit=10), **quiet).path
    extract_layers(store, LITE, [CUT, None], name="v", chunk_size=5, batch_size=4, **quiet)
    return store


def test_views_are_stored_per_training_row_beside_unchanged_codes(views_store):
    store = FeatureStore.open(views_store)
    info = store.feature_set("v-last")
    views, plain = store.views("v-last"), store.features("v-last", split="train")
    assert info.views == 3 and views.shape == (10, 3, plain.shape[1]) and views.dtype == np.float32
    assert store.features("v-last").shape == (20, plain.shape[1])  # every row keeps its plain codes
    for a in range(3):  # each view is its own crop: unlike the others and the plain codes
        assert not np.allclose(views[:, a], plain, rtol=1e-3)
        for b in range(a):
            assert not np.allclose(views[:, a], views[:, b], rtol=1e-3)
    np.testing.assert_array_equal(store.views("v-last", lazy=True).compute(), views)
    assert info.config["views"] == 3 and info.config["augmentation"]["scale"] == [0.25, 1.0]
    assert info.extra["views_seconds"] > 0 and info.name.startswith("v-")
    summary = {s["name"]: s["views"] for s in store.summary()["feature_sets"]}
    assert summary["v-last"] == summary[f"v-{CUT}"] == 3
    from cnncodes.commands.info import format_info

    assert "v-last: (20, 1280) float32 + 3 views, complete" in format_info(store.summary())


def test_views_do_not_depend_on_chunks_batches_or_cuts(views_store):
    again = extract_features(views_store, LITE, name="one-cut", chunk_size=64, batch_size=64, **quiet)
    store = FeatureStore.open(views_store)
    np.testing.assert_allclose(store.views(again.name), store.views("v-last"), rtol=1e-5, atol=1e-6)
    assert store.feature_set("one-cut").fingerprint == store.feature_set("v-last").fingerprint
    assert extract_features(views_store, LITE, name="one-cut", **quiet).status == "cached"


def test_views_of_one_pass_join_like_their_codes(views_store):
    store = FeatureStore.open(views_store)
    joined = store.views(f"v-last+v-{CUT}")
    np.testing.assert_array_equal(joined, np.concatenate([store.views("v-last"), store.views(f"v-{CUT}")], axis=2))
    assert store.feature_set(f"v-last+v-{CUT}").views == 3
    assert store.views(f"v-last+v-{CUT}", lazy=True).compute().shape == joined.shape


def test_a_view_of_the_whole_image_unflipped_is_the_plain_codes(views_store):
    whole = FeatureConfig("efficientnet_lite0", "none", 32, views=2, seed=2,
                          augmentation=Augmentation(scale=(1, 1), ratio=(1, 1), flip=0))
    name = extract_features(views_store, whole, name="whole", **quiet).name
    store = FeatureStore.open(views_store)
    plain = store.features(name, split="train")
    for v in range(2):
        assert np.linalg.norm(store.views(name)[:, v] - plain) <= 1e-5 * np.linalg.norm(plain)
    np.testing.assert_allclose(store.features(name), store.features("v-last"), rtol=1e-5, atol=1e-6)  # plain: as before
    with pytest.raises(UserError, match="views are of different crops"):  # their codes join; their views do not
        store.views("v-last+whole")
    assert store.feature_set("v-last+whole").views == 0


class Bar:
    """A progress bar that keeps its counts."""

    def __init__(self, total, initial, **_):
        self.total, self.initial, self.done = total, initial, 0

    def update(self, n):
        self.done += n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_a_killed_run_resumes_to_the_same_views_on_dask_workers(views_store, tmp_path, monkeypatch):
    from distributed import LocalCluster

    store = shutil.copytree(views_store, tmp_path / "s")

    def killed(self, extra):
        raise KeyboardInterrupt  # as if killed once every chunk was committed

    monkeypatch.setattr(FeatureSetWriter, "assemble", killed)
    with pytest.raises(KeyboardInterrupt):
        extract_features(store, LITE, name="r", chunk_size=8, **quiet)
    monkeypatch.undo()
    parts = schema.parts_dir(store, "r")
    next(parts.glob("views-000000000_8-*.npy")).unlink()  # its pooled file is in: the chunk is not
    next(parts.glob("pooled-000000008_*.npy")).unlink()
    said, bars = [], []
    monkeypatch.setattr(extract, "progress_bar", lambda **options: bars.append(Bar(**options)) or bars[-1])
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, protocol="tcp", host="127.0.0.1",
                      dashboard_address=":0") as cluster:
        result = extract_features(store, LITE, name="r", scheduler=cluster.scheduler_address, progress=False,
                                  log=said.append)
    assert result.status == "resumed" and "resuming r at 4/20" in " ".join(said)
    # the bar counts the pass's images: 20 rows and 3 views of each of 10 training rows; 4 test rows were kept
    assert (bars[0].total, bars[0].initial, bars[0].done) == (50, 4, 46)
    resumed = FeatureStore.open(store)
    np.testing.assert_allclose(resumed.views("r"), resumed.views("v-last"), rtol=1e-5, atol=1e-6)
    assert resumed.feature_set("r").extra["views_seconds"] > 0 and not parts.exists()


def test_a_chunk_counts_as_committed_only_with_its_views(tmp_path):
    w = FeatureSetWriter(tmp_path, "s", "f" * 64, {}, 6, 2, None, chunk_size=3, views=2, train_rows=4)
    w.commit(0, np.ones((3, 2)), None, np.ones((3, 2, 2)))
    w.commit(3, np.ones((3, 2)), None, np.ones((1, 2, 2)))  # one training row, then test rows
    parts = schema.parts_dir(tmp_path, "s")
    next(parts.glob("views-000000000_3-*.npy")).unlink()
    next(parts.glob("pooled-000000003_3-*.npy")).unlink()  # killed after its views, before its commit mark
    assert w.drop_damaged_chunks() == [0] and w.committed() == {}
    assert not list(parts.glob("views-*"))  # recomputed views may differ in their last bits, and so in name


def test_with_spatial_the_views_maps_are_kept_and_pool_to_the_views_codes(views_store, tmp_path):
    config = FeatureConfig("efficientnet_lite0", "none", 32, layer=CUT, spatial=True, views=3, seed=2)
    extract_features(views_store, config, name="vm", chunk_size=8, batch_size=4, **quiet)
    store = FeatureStore.open(views_store)
    info, codes, maps = store.feature_set("vm"), store.views("vm"), store.views("vm", kind="spatial")
    assert maps.shape == (10, 3, *info.spatial_shape[1:]) and maps.dtype == np.float16
    pooled = maps.astype(np.float32).mean(axis=(2, 3))  # each view's maps average to its stored codes
    assert np.abs(pooled - codes).max() <= 1e-2 * np.abs(codes).max()
    # the same crops as the pooled-only set's views at this cut, and its plain rows as they were
    np.testing.assert_allclose(codes, store.views(f"v-{CUT}"), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(store.features("vm"), store.features(f"v-{CUT}"), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(store.views("vm", lazy=True, kind="spatial").compute(), maps)
    for other in (f"v-{CUT}", f"vm+v-{CUT}"):
        with pytest.raises(UserError, match="has no views' maps: .*--spatial --views K"):
            store.views(other, kind="spatial")
    copy = shutil.copytree(views_store, tmp_path / "s")
    flip_byte(schema.feature_path(copy, "vm"), schema.VIEW_MAPS, 100)
    assert FeatureStore.open(copy).check()["features/vm.h5"]  # a flipped byte in the views' maps is caught


def test_a_chunk_with_maps_counts_as_committed_only_with_its_views_maps(tmp_path):
    import h5py

    w = FeatureSetWriter(tmp_path, "s", "f" * 64, {}, 6, 2, (1, 1, 2), chunk_size=3, views=2, train_rows=4)
    chunk = [(0, 3), (3, 1)]  # (start, training rows): one training row in the second chunk, then test rows
    for start, rows in chunk:
        w.commit(start, np.ones((3, 2)), np.ones((3, 1, 1, 2)), np.ones((rows, 2, 2)),
                 np.full((rows, 2, 1, 1, 2), start))
    parts = schema.parts_dir(tmp_path, "s")
    next(parts.glob("view_maps-000000000_3-*.npy")).unlink()  # killed before its views' maps were in
    assert w.drop_damaged_chunks() == [0] and set(w.committed()) == {3}
    assert not list(parts.glob("*-000000000_*"))  # the chunk's other parts go too: it is computed again
    w.commit(0, np.ones((3, 2)), np.ones((3, 1, 1, 2)), np.ones((3, 2, 2)), np.zeros((3, 2, 1, 1, 2)))
    with h5py.File(w.assemble({}), "r") as f:
        assert f[schema.VIEW_MAPS].shape == (4, 2, 1, 1, 2) and f[schema.VIEW_MAPS].dtype == np.float16
        assert f[schema.VIEW_MAPS][:, 0, 0, 0, 0].tolist() == [0, 0, 0, 3]


def test_check_catches_a_flipped_byte_in_views(views_store, tmp_path):
    store = shutil.copytree(views_store, tmp_path / "s")
    flip_byte(schema.feature_path(store, "v-last"), "views", 100)
    problems = FeatureStore.open(store).check()
    assert problems["features/v-last.h5"] and not problems[f"features/v-{CUT}.h5"]


def test_fingerprint_and_name_follow_views_augmentation_and_seed(views_store):
    store = FeatureStore.open(views_store)
    prints = {feature_fingerprint(store, c, "w" * 64, "last") for c in (
        LITE, FeatureConfig("efficientnet_lite0", "none", 32, views=4, seed=2),
        FeatureConfig("efficientnet_lite0", "none", 32, views=3, seed=3),
        FeatureConfig("efficientnet_lite0", "none", 32, views=3, seed=2, augmentation=Augmentation(flip=0.0)),
        FeatureConfig("efficientnet_lite0", "none", 32, seed=2))}
    assert len(prints) == 5
    assert LITE.default_name() == "efficientnet_lite0-pool-32-none2-fp32-views3"


def test_sets_without_views_keep_their_fingerprint_and_config(digits_store):
    """The fingerprint as cnncodes computed it before views existed, from a set made without them."""
    import keras

    from cnncodes.pipeline.backbones import get_backbone

    store = FeatureStore.open(digits_store)
    info = store.feature_set("r50")
    before = fingerprint({
        "data": store.attrs["content_sha256"], "image_shape": list(store.image_shape), "backbone": "resnet50",
        "weights": info.config["weights_sha256"], "layer": "last", "size": 32,
        "interpolation": "opencv-bicubic-a-0.75-rounded", "precision": "fp32",
        "preprocessing": get_backbone("resnet50").preprocessing,
        "spatial": False,
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(), "format": FORMAT}})
    assert info.fingerprint == before
    assert "views" not in info.config and "augmentation" not in info.config and info.views == 0
    with pytest.raises(UserError, match="feature set r50 has no views: extract it with --views K"):
        store.views("r50")


def test_views_on_images_too_small_to_crop_are_refused_before_work(tmp_path):
    tiny = ingest(tmp_path / "tiny", IngestConfig(f"folder:{write_mixed_tree(tmp_path / 'tree', per_class=2)}",
                                                  image_size=7), **quiet).path
    with pytest.raises(UserError, match="stored images are 7 px a side, too small to crop; views need at least 8 px"):
        extract_features(tiny, LITE, **quiet)
    with pytest.raises(UserError, match="stored images are 7 px a side, too small to crop"):
        extract_features(tiny, FeatureConfig("efficientnet_lite0", "none", 32, spatial=True, views=3), **quiet)
    for views in (-1, 65, 2.5):
        with pytest.raises(UserError, match=f"--views {views}: give a whole number of views from 1 to 64"):
            extract_features(tiny, FeatureConfig("efficientnet_lite0", "none", 32, views=views), **quiet)
    assert FeatureStore.open(tiny).feature_sets() == []


def test_view_area_sets_how_much_of_the_image_a_view_crops(views_store, monkeypatch):
    from click.testing import CliRunner

    from cnncodes.cli import cli

    asked = []
    monkeypatch.setattr(extract, "extract_layers", lambda store, config, cuts, **kw: asked.append(config) or [])
    args = ["features", "--dataset", "digits", "--limit", "10", "--store", str(views_store), "--backbone",
            "efficientnet_lite0", "--weights", "none", "--size", "32", "--views", "2", "--quiet"]
    for extra, scale in (([], (0.25, 1.0)), (["--view-area", "0.6"], (0.6, 1.0))):
        done = CliRunner().invoke(cli, args + extra)
        assert done.exit_code == 0, done.output
        assert asked[-1].augmentation.scale == scale
    boxes = draw_boxes(asked[-1].augmentation, 0, range(200), 1, (32, 32))
    assert (boxes[:, 2] * boxes[:, 3] >= 0.6 * 32 * 32 - 2 * 32).all()  # rounding a side moves the area a little
