"""Data sources and ingest: official CIFAR archives, class-folder trees, digits, the shared CIFAR-10 tar."""
import json
import tarfile
import zipfile

import h5py
import numpy as np
import pytest

from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.pipeline.sources import cifar
from cnncodes.pipeline.sources.folders import folder_source
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import SHARED_TAR, write_cifar_archive, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)


@pytest.fixture
def official_md5(monkeypatch):
    """Treat the test-made archive as the official one (its md5 is the archive's own)."""
    def use(kind, path):
        a = cifar.ARCHIVES[kind]
        monkeypatch.setitem(cifar.ARCHIVES, kind, a.__class__(**{**a.__dict__, "md5": file_digest(path)}))
    return use


@pytest.mark.parametrize("kind", ["cifar10", "cifar100"])
def test_official_archive_format_is_read_with_split_and_label_sets(tmp_path, kind, official_md5):
    archive = write_cifar_archive(tmp_path / cifar.ARCHIVES[kind].file, kind, per_batch=20)
    official_md5(kind, archive)
    source = cifar.cifar_source(kind, data_dir=tmp_path)
    assert list(source.labels) == (["label"] if kind == "cifar10" else ["fine", "coarse"])
    assert (source.split == 0).sum() == 100 and (source.split == 1).sum() == 20
    images, bad = source.read(np.arange(3))
    assert images.shape == (3, 32, 32, 3) and images.dtype == np.uint8 and bad == []
    # channel planes of the official row layout end up as HWC: pixel (0,0) red is byte 0, green byte 1024
    with tarfile.open(archive) as tar:
        import pickle
        first = pickle.load(tar.extractfile(tar.getmembers()[0]), encoding="bytes")[b"data"][0]
    assert images[0, 0, 0].tolist() == [first[0], first[1024], first[2048]]
    if kind == "cifar100":
        assert len(source.class_names["fine"]) == 100 and len(source.class_names["coarse"]) == 20


def test_archive_found_through_cnncodes_data(tmp_path, monkeypatch, official_md5):
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10", per_batch=4)
    official_md5("cifar10", archive)
    monkeypatch.setenv("CNNCODES_DATA", str(tmp_path))
    assert cifar.locate_archive(cifar.ARCHIVES["cifar10"]) == archive


def test_archive_with_wrong_md5_stops_with_the_fix(tmp_path):
    write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10", per_batch=4)
    with pytest.raises(UserError, match="not the official .*delete it to download it again"):
        cifar.cifar_source("cifar10", data_dir=tmp_path)
    assert cifar.cifar_source("cifar10", data_dir=tmp_path, verify=False).split.shape == (24,)


def test_truncated_archive_is_a_clear_error(tmp_path):
    good = write_cifar_archive(tmp_path / "good.tar.gz", "cifar100", per_batch=4).read_bytes()
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(good[: len(good) // 2])
    with pytest.raises(UserError, match="not a readable CIFAR archive"):
        cifar.cifar_source("cifar100", data_dir=tmp_path, verify=False)


def test_missing_archive_without_network_names_where_to_put_it(tmp_path, monkeypatch):
    import keras

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(keras.utils, "get_file", offline)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    with pytest.raises(UserError, match="cifar-100-python.tar.gz not found in .*download failed"):
        cifar.cifar_source("cifar100", data_dir=tmp_path)


@pytest.mark.parametrize("packing", ["dir", "tar", "zip"])
def test_folder_tree_with_mixed_formats_and_sizes(tmp_path, packing):
    tree = write_mixed_tree(tmp_path / "animals")
    path = tree
    if packing == "tar":
        path = tmp_path / "animals.tar"
        with tarfile.open(path, "w") as tar:
            tar.add(tree, arcname="animals")  # a wrapping folder, as archives usually have
    elif packing == "zip":
        path = tmp_path / "animals.zip"
        with zipfile.ZipFile(path, "w") as z:
            for f in sorted(tree.rglob("*")):
                z.write(f, f.relative_to(tree).as_posix())
    source = folder_source(str(path), image_size=24)
    assert source.class_names == {"class": ["ant", "bee", "cat"]}
    assert source.split.tolist() == [0] * 18 + [1] * 18
    images, bad = source.read(np.arange(36))
    assert images.shape == (36, 24, 24, 3) and images.dtype == np.uint8 and bad == []
    # grey, RGBA and 16-bit files all became RGB 8-bit; class k is bright in channel k
    labels = source.labels["class"]
    for k in range(3):
        means = images[labels == k].reshape(-1, 3).mean(0)
        assert means[min(k, 2)] == means.max()
    source.close()


def test_single_tree_is_split_by_seeded_stratified_holdout(tmp_path):
    tree = write_mixed_tree(tmp_path / "flat", per_class=10, split_folders=False)
    store = ingest(tmp_path / "s", IngestConfig(f"folder:{tree}", holdout=0.3, seed=3, image_size=16), **quiet)
    assert store.counts() == {"train": 21, "test": 9}
    assert np.bincount(store.labels(split="test")).tolist() == [3, 3, 3]
    again = ingest(tmp_path / "s2", IngestConfig(f"folder:{tree}", holdout=0.3, seed=3, image_size=16), **quiet)
    np.testing.assert_array_equal(store.images(), again.images())


def test_ingest_size_defaults_to_first_image_shorter_side_centre_square(tmp_path):
    from cnncodes.pipeline.images import fit_square

    wide = np.zeros((10, 30, 3), np.uint8)
    wide[:, 10:20] = 255
    assert fit_square(wide, 10).min() == 255  # the centre square of a wide image is kept
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    source = folder_source(str(tree))
    first = source.read(np.arange(1))[0]
    assert first.shape[1] == first.shape[2] and 20 <= first.shape[1] < 48


def test_empty_class_folder_is_named(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    (tree / "train" / "dog").mkdir()
    with pytest.raises(UserError, match="class folder 'train/dog' .* has no images"):
        folder_source(str(tree))


@pytest.mark.parametrize("layout", ["cat", "wrapper/cat", "split"])
def test_one_class_folder_is_named_and_two_are_asked_for(tmp_path, layout):
    """One class folder was taken for a wrapping folder and answered "no images in class folders"."""
    if layout == "split":
        tree = write_mixed_tree(tmp_path / "t", classes=("cat",), per_class=2)
    else:
        tree = tmp_path / "t"
        write_mixed_tree(tmp_path / "flat", classes=("cat",), per_class=2, split_folders=False)
        (tree / layout).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "flat" / "cat").rename(tree / layout)
    with pytest.raises(UserError, match=r"t has one class folder, 'cat': a classifier needs at least two classes"):
        folder_source(str(tree))


def test_unreadable_image_stops_or_is_skipped_and_recorded(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=3)
    (tree / "train" / "bee" / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    with pytest.raises(UserError, match=r"train/bee/broken\.jpg is not a readable image.*--skip-bad"):
        ingest(tmp_path / "a", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    assert not (tmp_path / "a" / "data.h5").exists()  # nothing half-written left behind
    store = ingest(tmp_path / "b", IngestConfig(f"folder:{tree}", image_size=16, skip_bad=True), **quiet)
    assert store.n == 18
    with h5py.File(store.data_file) as f:
        assert [s.decode() for s in f["skipped"][:]] == [f"{tree}/train/bee/broken.jpg"]


def test_limit_takes_a_stratified_subset_per_split_and_folds_are_stratified(tmp_path):
    store = ingest(tmp_path / "d", IngestConfig("digits", limit=100, folds=(5,)), **quiet)
    assert store.counts() == {"train": 100, "test": 100}
    assert np.bincount(store.labels(split="train"), minlength=10).min() >= 9
    folds = store.folds(5, on="train", split="all")
    assert (folds[store.rows("test")] == -1).all()
    train_folds = store.folds(5)  # lines up with the training rows
    np.testing.assert_array_equal(train_folds, folds[store.rows("train")])
    assert np.bincount(train_folds).tolist() == [20] * 5
    for f in range(5):  # every class appears in every fold
        assert len(set(store.labels(split="train")[train_folds == f])) == 10
    assert len(set(store.folds(7))) == 7  # any k, computed the first time it is asked for
    with pytest.raises(UserError, match="cannot make 11 stratified folds over train: its smallest class"):
        store.folds(11)


def test_store_is_plain_h5py_readable_as_the_readme_says(tmp_path):
    store = ingest(tmp_path / "d", IngestConfig("digits", limit=30, folds=(3,)), **quiet)
    with h5py.File(tmp_path / "d" / "data.h5") as f:
        assert f["images"].dtype == np.uint8 and f["images"].shape == (60, 8, 8, 3)
        assert f["split"][:].tolist() == [0] * 30 + [1] * 30
        assert json.loads(f.attrs["label_sets"]) == ["digit"]
        assert [s.decode() for s in f["label_names/digit"][:]] == [str(i) for i in range(10)]
        assert f["folds/train/3"].shape == (60,)
        assert all(s.decode().startswith("load_digits[") for s in f["sources"][:])
    lazy = store.images(split="test", lazy=True)
    np.testing.assert_array_equal(lazy.compute(), store.images(split="test"))


def test_reingest_with_other_settings_is_refused(tmp_path):
    ingest(tmp_path / "d", IngestConfig("digits", limit=30), **quiet)
    with pytest.raises(UserError, match="ingested with other settings"):
        ingest(tmp_path / "d", IngestConfig("digits", limit=40), **quiet)


@pytest.mark.skipif(not SHARED_TAR.exists(), reason="../shared/data/cifar10-jpg.tar is not here (a user's fresh clone)")
def test_shared_cifar10_jpg_tar_as_it_is(tmp_path):
    store = ingest(tmp_path / "c", IngestConfig(f"folder:{SHARED_TAR}", limit=50), **quiet)
    assert store.counts() == {"train": 50, "test": 50}
    assert store.class_names() == ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship",
                                   "truck"]
    assert store.image_shape == (32, 32, 3)
    assert np.bincount(store.labels(split="test")).tolist() == [5] * 10
