"""The store as a system of record: folds for any k, every row's source, export, corruption caught."""
import re
import shutil

import h5py
import numpy as np
import pytest

from cnncodes.features import schema
from cnncodes.features.data_file import DataFileWriter, store_lock
from cnncodes.features.errors import DamagedError, UserError
from cnncodes.features.export import export_feature_set
from cnncodes.features.outputs import atomic_write
from cnncodes.features.store import FeatureStore
from cnncodes.features.writers import FeatureSetWriter
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, check_writable, human_bytes, ingest
from conftest import run_cli, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)


@pytest.fixture
def digits(tmp_path):
    return ingest(tmp_path / "d", IngestConfig("digits", limit=60), **quiet)


def flip_byte_in_chunk(path, key, chunk=0, at=100):
    """Flips one byte inside a stored chunk of `key`, as a disk fault would."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_chunk_info(chunk).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + at)
        byte = f.read(1)
        f.seek(offset + at)
        f.write(bytes([byte[0] ^ 0xFF]))


# -- folds on demand ---------------------------------------------------------------------------------

def test_any_k_is_computed_once_kept_and_lines_up_with_the_train_rows(digits):
    folds = digits.folds(3)
    labels = digits.labels(split="train")
    assert folds.shape == labels.shape == (60,) and set(folds) == {0, 1, 2}
    assert np.bincount(folds).tolist() == [20, 20, 20]
    for f in range(3):  # stratified: each class spread over every fold
        assert len(set(labels[folds == f])) == 10
    assert len(schema.fold_files(digits.path)[("train", 3)]) == 1
    again = FeatureStore.open(digits.path)
    assert ("train", 3) in again.fold_keys
    np.testing.assert_array_equal(again.folds(3), folds)
    everything = again.folds(3, split="all")  # every stored row: -1 outside the training split
    assert everything.shape == (digits.n,) and (everything[digits.rows("test")] == -1).all()
    assert again.folds(4, on="all").shape == (digits.n,) and (again.folds(4, on="all") >= 0).all()


def test_folds_on_demand_equal_those_computed_at_ingest(tmp_path, digits):
    precomputed = ingest(tmp_path / "p", IngestConfig("digits", limit=60, folds=(5,)), **quiet)
    assert ("train", 5) in precomputed.stored_folds and ("train", 5) not in digits.fold_keys
    np.testing.assert_array_equal(precomputed.folds(5), digits.folds(5))


def test_a_k_that_cannot_be_stratified_names_the_smallest_class(digits):
    with pytest.raises(UserError, match=r"cannot make 7 stratified folds over train: its smallest class, '\d', has 6"):
        digits.folds(7)
    with pytest.raises(UserError, match="at least 2 folds"):
        digits.folds(1)


def test_a_damaged_saved_assignment_is_recomputed_not_trusted(digits):
    folds = digits.folds(4)
    (kept,) = schema.fold_files(digits.path)[("train", 4)]
    kept.write_bytes(b"garbage")
    np.testing.assert_array_equal(FeatureStore.open(digits.path).folds(4), folds)


def test_a_flipped_value_in_a_kept_assignment_is_caught_and_recomputed(digits):
    """Still in range, so only the seal can tell: the file is reported by --check and never used."""
    folds = digits.folds(4)
    (kept,) = schema.fold_files(digits.path)[("train", 4)]
    data = bytearray(kept.read_bytes())
    data[-1] = (data[-1] + 1) % 4  # the last row's fold, another valid fold
    kept.write_bytes(bytes(data))
    assert "fails its checksum" in digits.check()[f"folds/{kept.name}"]
    np.testing.assert_array_equal(FeatureStore.open(digits.path).folds(4), folds)
    assert [p.read_bytes() for p in schema.fold_files(digits.path)[("train", 4)]] != [bytes(data)]
    assert digits.check()[f"folds/{schema.fold_files(digits.path)[('train', 4)][0].name}"] is None


def test_folds_kept_before_seals_are_recomputed(digits):
    folds = digits.folds(3)
    (kept,) = schema.fold_files(digits.path)[("train", 3)]
    old = kept.with_name("train-k3.npy")  # schema 2's name: no seal
    kept.rename(old)
    np.save(old, np.zeros_like(folds))
    assert "no checksum" in digits.check()["folds/train-k3.npy"]
    np.testing.assert_array_equal(FeatureStore.open(digits.path).folds(3), folds)
    assert not old.exists()


def test_kfold_with_a_k_chosen_after_ingest(digits_store):
    from cnncodes.classifiers.evaluation.kfold import kfold_scores

    store = digits_store.parent / "copy"
    shutil.copytree(digits_store, store)
    table = kfold_scores(store, ["logreg"], k=3, params={"logreg": {"Cs": [1.0]}}, progress=False)
    assert len(table["rows"][0]["folds"]) == 3 and table["rows"][0]["mean"] > 0.5


# -- sources ------------------------------------------------------------------------------------------

def test_every_row_records_its_file_and_lines_up_with_labels(tmp_path):
    tree = write_mixed_tree(tmp_path / "tree")
    store = ingest(tmp_path / "s", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    for split in ("train", "test"):
        sources, labels = store.sources(split=split), store.labels(split=split)
        assert len(sources) == len(labels) == store.counts()[split]
        names = store.class_names()
        for source, label in zip(sources, labels):
            assert source.split("/")[0] == split and source.split("/")[1] == names[label]
            assert (tree / source).is_file()
    assert len(set(store.sources())) == store.n


def test_a_store_made_before_sources_still_opens_and_says_so(digits):
    with h5py.File(digits.data_file, "r+") as f:
        del f["sources"]
    store = FeatureStore.open(digits.path)
    assert store.sources() is None and store.summary()["sources"] is False
    result = run_cli("info", digits.path)
    assert result.returncode == 0 and "not recorded" in result.stdout


# -- corruption caught ------------------------------------------------------------------------------

def test_a_flipped_byte_in_codes_stops_fit_and_features_rebuilds_the_set(digits_store):
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    store = digits_store.parent / "flipped"
    shutil.copytree(digits_store, store)
    path = schema.feature_path(store, "r50")
    clean = FeatureStore.open(store).features("r50")
    flip_byte_in_chunk(path, "pooled")
    with pytest.raises(DamagedError, match=r"r50.h5 is damaged .*re-run `cnncodes features`"):
        fit_head(store, "logreg", features="r50", params={"Cs": [1.0]})
    check = run_cli("info", store, "--check")
    assert check.returncode == 1 and "features/r50.h5: DAMAGED" in check.stdout and "data.h5: sound" in check.stdout

    weights = FeatureStore.open(digits_store).feature_set("r50").config["weights"]
    result = extract_features(store, FeatureConfig(weights=weights, size=32), name="r50", **quiet)
    assert result.status == "extracted"
    np.testing.assert_array_equal(FeatureStore.open(store).features("r50"), clean)
    assert run_cli("info", store, "--check").returncode == 0


def test_damaged_images_fail_the_read_with_the_fix(digits):
    flip_byte_in_chunk(digits.data_file, "images")
    with pytest.raises(DamagedError, match="data.h5 is damaged .*ingest into a new --store"):
        digits.images()
    assert digits.labels().shape == (digits.n,)  # the undamaged datasets still read


def test_a_damaged_set_never_hides_the_others(digits_store):
    store = digits_store.parent / "truncated"
    shutil.copytree(digits_store, store)
    features = schema.features_dir(store)
    data = (features / "r50.h5").read_bytes()
    (features / "broken.h5").write_bytes(data[: len(data) // 3])
    (features / "nomanifest.parts").mkdir()
    (features / "garbled.parts").mkdir()
    (features / "garbled.parts" / "manifest.json").write_text("{not json")
    opened = FeatureStore.open(store)
    damaged = {s.name: s.damaged for s in opened.feature_sets() if s.damaged}
    assert set(damaged) == {"broken", "nomanifest", "garbled"} and "manifest.json is missing" in damaged["nomanifest"]
    assert opened.features("r50").shape[0] == opened.n  # the sound set still works
    with pytest.raises(DamagedError, match="feature set broken is damaged"):
        opened.features("broken")
    result = run_cli("info", store)
    assert result.returncode == 0 and result.stdout.count("DAMAGED") == 3


def test_a_damaged_chunk_is_recomputed_on_resume(tmp_path, digits_store):
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    store = tmp_path / "s"
    ingest(store, IngestConfig("digits", limit=60), **quiet)
    weights = FeatureStore.open(digits_store).feature_set("r50").config["weights"]
    config = FeatureConfig(weights=weights, size=32)
    extract_features(store, config, name="whole", **quiet)
    clean = FeatureStore.open(store).features("whole")

    # a run of the same configuration killed after committing every chunk, one chunk damaged since
    writer = FeatureSetWriter(store, "part", FeatureStore.open(store).feature_set("whole").fingerprint, {}, 120,
                              clean.shape[1], None, chunk_size=40)
    for lo in range(0, 120, 40):
        writer.commit(lo, clean[lo:lo + 40], None)
    chunk = schema.chunk_files(writer.parts)[40][1]
    data = bytearray(chunk.read_bytes())
    data[-5] ^= 0xFF
    chunk.write_bytes(bytes(data))
    logs = []
    result = extract_features(store, config, name="part", chunk_size=40, progress=False, log=logs.append)
    assert result.status == "resumed" and any("is damaged" in m and "recomputing" in m for m in logs)
    # the recomputed chunk ran in other batches than the whole set did: CPU kernels may round differently
    np.testing.assert_allclose(FeatureStore.open(store).features("part"), clean, rtol=1e-5, atol=1e-5)


def test_a_zero_chunk_size_is_refused_and_an_old_manifest_with_one_is_restarted(tmp_path):
    with pytest.raises(UserError, match="chunk-size 0"):
        FeatureSetWriter(tmp_path, "x", "fp", {}, 10, 4, None, chunk_size=0)
    result = run_cli("features", "--dataset", "digits", "--store", tmp_path / "s", "--chunk-size", "0")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "--chunk-size" in result.stderr


# -- ingest: one writer, verified before it is published ----------------------------------------------

def test_a_second_first_time_ingest_stops_before_touching_the_first(tmp_path):
    store = tmp_path / "s"
    with store_lock(store):
        staged = atomic_write(store / "data.h5")  # the first process's data.h5, staged
        staged.paths[0].write_bytes(b"the first process's work")
        with pytest.raises(UserError, match="being written by another cnncodes process"):
            ingest(store, IngestConfig("digits", limit=30), **quiet)
        assert staged.paths[0].read_bytes() == b"the first process's work"
        staged.discard()
    assert ingest(store, IngestConfig("digits", limit=30), **quiet).n == 60


def test_a_refused_first_ingest_never_removes_the_store_another_process_is_writing(tmp_path, monkeypatch):
    """Both saw no store; the other took the lock first. The refused one created nothing it may remove."""
    import fcntl

    from cnncodes.pipeline.sources import ingest as ingest_module

    store, held = tmp_path / "s", []

    def the_other_process_wins(path, *args):
        check_writable(path, *args)
        held.append(open(path / ".ingest.lock", "w"))
        fcntl.flock(held[0], fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.append(atomic_write(path / "data.h5"))
        held[1].paths[0].write_bytes(b"the first process's work")

    monkeypatch.setattr(ingest_module, "check_writable", the_other_process_wins)
    with pytest.raises(UserError, match="being written by another cnncodes process"):
        ingest(store, IngestConfig("digits", limit=30), **quiet)
    assert held[1].paths[0].read_bytes() == b"the first process's work"
    held[0].close()


def test_a_data_file_that_does_not_hold_what_was_written_is_not_published(tmp_path):
    import hashlib

    tmp_path.mkdir(exist_ok=True)
    writer = DataFileWriter(tmp_path, (4, 4, 3))
    writer.append(np.zeros((5, 4, 4, 3), np.uint8))
    writer.content = hashlib.sha256(b"what another process wrote")
    with pytest.raises(RuntimeError, match="does not hold what was written"):
        writer.finish(labels={"label": np.zeros(5, int)}, class_names={"label": ["a"]}, split=np.zeros(5),
                      folds={}, attrs={}, skipped=[], sources=[str(i) for i in range(5)])
    assert not schema.data_path(tmp_path).exists()


def test_every_numeric_dataset_carries_checksums(digits_store):
    with h5py.File(schema.data_path(digits_store)) as f:
        for key in ("images", "labels/digit", "split", "sources"):
            assert f[key].fletcher32, key
    with h5py.File(schema.feature_path(digits_store, "r50")) as f:
        assert f["pooled"].fletcher32


def test_sizes_in_messages_keep_their_unit():
    assert human_bytes(5e6) == "5.00 MB" and human_bytes(2.5e9) == "2.50 GB" and human_bytes(12) == "12 bytes"


# -- hostile and meaningless input: one line, nothing created -----------------------------------------

@pytest.mark.parametrize("args", [
    ["features", "--dataset", "digits", "--name", "/../../../../elsewhere/x"],
    ["features", "--dataset", "digits", "--name", "a/b"],
    ["features", "--dataset", "digits", "--size", "0"],
    ["features", "--dataset", "digits", "--size", "-32"],
    ["features", "--dataset", "digits", "--size", "5000"],
    ["features", "--dataset", "digits", "--image-size", "0"],
    ["features", "--dataset", "digits", "--limit", "-1"],
    ["features", "--dataset", "digits", "--holdout", "-0.5"],
    ["features", "--dataset", "digits", "--holdout", "1"],
    ["features", "--dataset", "digits", "--holdout", "1.5"],
    ["fit", "--head", "dense", "--epochs", "0"],
    ["kfold", "--head", "svm", "-k", "0"],
    ["baseline", "wrn", "--depth", "27"],
])
def test_bad_values_are_one_line_and_create_nothing(tmp_path, args):
    store = tmp_path / "store"
    result = run_cli(*args, "--store", store, cwd=tmp_path)
    assert result.returncode != 0 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert not store.exists() and sorted(p.name for p in tmp_path.iterdir()) == []
    assert not (tmp_path.parent / "elsewhere").exists()


def test_folds_that_cannot_be_made_are_refused_at_ingest(tmp_path):
    with pytest.raises(UserError, match="k-fold needs at least 2"):
        ingest(tmp_path / "a", IngestConfig("digits", limit=30, folds=(0, 1)), **quiet)
    with pytest.raises(UserError, match="--folds 1000: the smallest class"):
        ingest(tmp_path / "b", IngestConfig("digits", limit=30, folds=(1000,)), **quiet)
    assert not schema.data_path(tmp_path / "b").exists()


def test_fit_on_a_store_without_feature_sets_says_to_run_features(digits):
    from cnncodes.classifiers.evaluation.fit import fit_head

    with pytest.raises(UserError, match="no feature sets yet: run `cnncodes features"):
        fit_head(digits.path, "logreg")


# -- export --------------------------------------------------------------------------------------------

def test_export_round_trips_without_pickles_in_bounded_slices(digits_store, tmp_path, monkeypatch):
    import cnncodes.features.export as export

    monkeypatch.setattr(export, "ROWS_PER_SLICE", 100)  # many slices: the streaming path, not one write
    store = FeatureStore.open(digits_store)
    store.folds(3)
    out = export_feature_set(digits_store, tmp_path / "out" / "codes.npz", "r50")
    with np.load(out, allow_pickle=False) as z:
        np.testing.assert_array_equal(z["codes"], store.features("r50"))
        np.testing.assert_array_equal(z["labels_digit"], store.labels())
        np.testing.assert_array_equal(z["split"], store.split)
        assert z["sources"].tolist() == store.sources().tolist() and str(z["sources"][0]).startswith("load_digits[")
        np.testing.assert_array_equal(z["folds_train_k3"], store.folds(3, split="all"))
        assert z["class_names_digit"].tolist() == store.class_names() and z["feature_set"][0] == "r50"
    assert [p.name for p in out.parent.iterdir()] == ["codes.npz"]  # no temporary file left
    result = run_cli("export", "--store", digits_store, "--out", tmp_path / "cli.npz")
    assert result.returncode == 0 and "exported to" in result.stdout and (tmp_path / "cli.npz").exists()


def test_a_full_disk_during_ingest_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import errno

    def full(self, images):
        raise OSError(errno.ENOSPC, "No space left on device", str(self.tmp))

    monkeypatch.setattr(DataFileWriter, "append", full)
    with pytest.raises(UserError, match="too full for this ingest .*nothing was kept"):
        ingest(tmp_path / "s", IngestConfig("digits", limit=30), **quiet)
    assert not list((tmp_path / "s").glob("data.h5*"))


def test_a_complete_set_in_a_store_that_cannot_be_written_is_still_answered(digits_store, monkeypatch):
    import errno

    import cnncodes.pipeline.extraction.extract as extract

    def read_only(store, name):
        raise OSError(errno.EROFS, "Read-only file system", str(store))

    monkeypatch.setattr(extract, "writer_lock", read_only)
    weights = FeatureStore.open(digits_store).feature_set("r50").config["weights"]
    result = extract.extract_features(digits_store, extract.FeatureConfig(weights=weights, size=32), name="r50",
                                      **quiet)
    assert result.status == "cached"
    with pytest.raises(UserError, match="cannot write to store .*Read-only"):
        extract.extract_features(digits_store, extract.FeatureConfig(weights=weights, size=32), name="other", **quiet)


def test_the_python_api_checks_names_too(digits):
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    with pytest.raises(UserError, match="not a usable name"):
        extract_features(digits.path, FeatureConfig(weights="none", size=32), name="../../elsewhere", **quiet)
    assert not (digits.path.parent / "elsewhere.h5").exists()


def test_a_truncated_chunk_without_a_crc_in_its_name_is_recomputed(tmp_path):
    writer = FeatureSetWriter(tmp_path, "x", "fp", {}, 4, 3, None, chunk_size=2)
    np.save(writer.parts / schema.chunk_file("pooled", 0, 2), np.ones((2, 3), np.float32))  # the old naming
    writer.commit(2, np.ones((2, 3)), None)
    old = writer.parts / schema.chunk_file("pooled", 0, 2)
    old.write_bytes(old.read_bytes()[:-7])
    assert writer.drop_damaged_chunks(log=lambda m: None) == [0] and sorted(writer.committed()) == [2]


@pytest.mark.parametrize("call, says", [
    (lambda tmp: FeatureStore.open(""), "the store path is empty"),
    (lambda tmp: ingest("", IngestConfig("digits")), "the store path is empty"),
    (lambda tmp: ingest(tmp / "s", IngestConfig("digits", seed=2**40)), "--seed 1099511627776: give a whole number"),
    (lambda tmp: extract_features(tmp / "s", FeatureConfig(), batch_size=10**9), "--batch-size 1000000000"),
    (lambda tmp: extract_features(tmp / "s", FeatureConfig(), chunk_size=0), "--chunk-size 0"),
    (lambda tmp: extract_features(tmp / "s", FeatureConfig(), workers=0), "--workers 0"),
], ids=["open-empty", "ingest-empty", "seed", "batch", "chunk", "workers"])
def test_python_callers_meet_the_command_lines_limits_before_any_work(tmp_path, call, says):
    """An empty path was the current folder; a huge batch or seed failed deep inside, after ingest."""
    with pytest.raises(UserError, match=re.escape(says)):
        call(tmp_path)
    assert not (tmp_path / "s").exists()
