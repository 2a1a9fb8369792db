"""The store never lies, part two (issue 19): feature sets bound to their data, every stored byte that
feeds a result checksummed and verified by `info --check`, a changed source said, a full disk one line."""
import os
import shutil
import subprocess
import sys
import tarfile

import h5py
import numpy as np
import pytest

from cnncodes.features import schema
from cnncodes.features.data_file import DataFileWriter
from cnncodes.features.errors import DamagedError, UserError
from cnncodes.features.sealed import write_sealed
from cnncodes.features.store import FeatureStore, resolve_name
from cnncodes.features.writers import FeatureSetWriter
from cnncodes.pipeline.extraction.extract import FeatureConfig, already_extracted, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import ROOT, write_image, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)


@pytest.fixture
def store_copy(digits_store, tmp_path):
    return shutil.copytree(digits_store, tmp_path / "store")


def check_cli(store, monkeypatch):
    """`cnncodes info --check STORE`, in this process (its stderr left to the test, as tests/hostile.py does)."""
    from click.testing import CliRunner

    from cnncodes.cli import cli
    from cnncodes.pipeline import console

    monkeypatch.setattr(console, "_installed", True)
    return CliRunner().invoke(cli, ["info", "--check", str(store)])


# -- 1. feature sets bound to the data they were made from --------------------------------------------

def test_codes_of_other_data_with_as_many_rows_are_rebuilt_not_served(tmp_path):
    """`rm data.h5` and another ingest of as many rows: the fast path must not call the old set done."""
    store, config = tmp_path / "s", FeatureConfig(backbone="mobilenet_v2", weights="none", size=32)  # quick to build
    ingest(store, IngestConfig("digits", limit=10), **quiet)
    old = extract_features(store, config, name="codes", **quiet)
    (store / "data.h5").unlink()
    ingest(store, IngestConfig("digits", limit=10, seed=1), **quiet)  # other digits, 20 rows again
    opened = FeatureStore.open(store)
    assert opened.n == old.rows
    with pytest.raises(UserError, match=r"feature set codes was made from other data .*ingested again"):
        opened.features("codes")
    assert "made from other data" in opened.check()["features/codes.h5"]
    assert already_extracted(opened, config, "codes") is None
    said = []
    result = extract_features(store, config, name="codes", progress=False, log=said.append)
    assert result.status == "extracted" and any("made from other data" in m and "rebuilding" in m for m in said)
    rebuilt = FeatureStore.open(store)
    assert rebuilt.feature_set("codes").data_sha256 == rebuilt.content and rebuilt.features("codes").shape[0] == 20
    assert not any(rebuilt.check().values())


def test_a_set_rewritten_with_a_row_fewer_is_refused_and_reported(store_copy, monkeypatch):
    path = schema.feature_path(store_copy, "r50")
    with h5py.File(path) as f, h5py.File(store_copy / "short.h5", "w") as g:
        g.create_dataset("pooled", data=f["pooled"][:-1])
        g.attrs.update(dict(f.attrs))
    shutil.move(store_copy / "short.h5", path)
    store = FeatureStore.open(store_copy)
    with pytest.raises(UserError, match="has 1796 rows but was made with 1797: its file was rewritten"):
        store.features()
    result = check_cli(store_copy, monkeypatch)
    assert result.exit_code == 1 and "features/r50.h5: DAMAGED (has 1796 rows" in result.output


def unbind(path):
    """As cnncodes before 0.3 wrote a set: no binding, no seal over the attributes."""
    with h5py.File(path, "r+") as f:
        for key in ("data_sha256", "data_rows", schema.ATTRS_SEAL):
            del f.attrs[key]


def test_a_set_made_before_binding_is_used_reported_and_bound_without_recomputing(store_copy, resnet_weights):
    path = schema.feature_path(store_copy, "r50")
    unbind(path)
    store = FeatureStore.open(store_copy)
    assert store.features("r50").shape == (1797, 2048)  # rows match: accepted, as before
    assert store.check()["features/r50.h5"].startswith("not verifiable: made before cnncodes bound")
    codes = store.features("r50")
    said = []
    result = extract_features(store_copy, FeatureConfig(weights=str(resnet_weights), size=32), name="r50",
                              progress=False, log=said.append)
    assert result.status == "cached" and any("now bound to this data.h5" in m for m in said)
    store = FeatureStore.open(store_copy)
    assert store.feature_set("r50").data_sha256 == store.content and not any(store.check().values())
    np.testing.assert_array_equal(store.features("r50"), codes)
    assert sorted(p.name for p in path.parent.iterdir() if not p.name.startswith(".")) == ["r50.h5"]


def test_an_unbound_set_of_another_row_count_is_refused(store_copy):
    unbind(schema.feature_path(store_copy, "r50"))
    (store_copy / "data.h5").unlink()
    ingest(store_copy, IngestConfig("digits", limit=3), **quiet)
    with pytest.raises(UserError, match="has 1797 rows, but data.h5 has 6: it was made from other data"):
        FeatureStore.open(store_copy).features("r50")


def started_set(store, limit: int) -> FeatureSetWriter:
    """A store of `limit` digits a split and set `x` in progress on it: its first chunk of 10 rows committed."""
    ingest(store, IngestConfig("digits", limit=limit), **quiet)
    writer = FeatureSetWriter(store, "x", "fp", {}, 2 * limit, 4, None, chunk_size=10,
                              data_sha256=FeatureStore.open(store).content)
    writer.commit(0, np.ones((10, 4)), None)
    return writer


def test_a_set_in_progress_of_replaced_data_is_started_again(tmp_path):
    store = tmp_path / "s"
    writer = started_set(store, limit=10)
    (store / "data.h5").unlink()
    ingest(store, IngestConfig("digits", limit=10, seed=1), **quiet)
    opened = FeatureStore.open(store)
    assert "made from other data" in opened.check()["features/x.parts"]
    from cnncodes.features.writers import discard_unusable

    said = []
    assert discard_unusable(opened, "x", log=said.append) and not writer.parts.exists()
    assert "starting it again" in said[0]


def test_assembly_refuses_chunks_of_data_replaced_meanwhile(tmp_path):
    store = tmp_path / "s"
    writer = started_set(store, limit=5)
    ingest(store, IngestConfig("digits", limit=5, seed=2), reingest=True, **quiet)
    with pytest.raises(UserError, match="ingested again while feature set x was being extracted"):
        writer.assemble({})
    assert not schema.feature_path(store, "x").exists()


# -- 7e. --check reads sets in progress, folds and run files -----------------------------------------

def test_check_reads_every_chunk_of_a_set_in_progress(tmp_path, monkeypatch):
    store = tmp_path / "s"
    ingest(store, IngestConfig("digits", limit=10), **quiet)
    content = FeatureStore.open(store).content
    writer = FeatureSetWriter(store, "x", "fp", {}, 20, 4, (2, 2, 4), chunk_size=10, data_sha256=content)
    writer.commit(0, np.ones((10, 4)), np.ones((10, 2, 2, 4)))
    writer.commit(10, np.ones((10, 4)), np.ones((10, 2, 2, 4)))
    assert FeatureStore.open(store).check() == {"data.h5": None, "features/x.parts": None}
    chunk = schema.chunk_files(writer.parts, "spatial")[10][1]
    data = bytearray(chunk.read_bytes())
    data[-3] ^= 0x01
    chunk.write_bytes(bytes(data))
    assert FeatureStore.open(store).check()["features/x.parts"] == "CRC mismatch"
    (writer.parts / "manifest.json").write_text(
        (writer.parts / "manifest.json").read_text().replace('"n": 20', '"n": 21'))
    assert "fails its checksum" in FeatureStore.open(store).check()["features/x.parts"]
    assert check_cli(store, monkeypatch).exit_code == 1


def test_check_verifies_every_json_file_under_runs(store_copy, monkeypatch):
    runs = store_copy / schema.RUNS_DIR
    for folder in ("fit-a", "kfold-b/folds", "fit-old"):
        (runs / folder).mkdir(parents=True)
    write_sealed(runs / "fit-a" / "record.json", {"accuracy": 0.57})
    write_sealed(runs / "kfold-b" / "folds" / "logreg-0.json", {"accuracy": 0.57})
    (runs / "fit-old" / "record.json").write_text('{"accuracy": 0.57}')
    assert check_cli(store_copy, monkeypatch).exit_code == 1
    edited = runs / "kfold-b" / "folds" / "logreg-0.json"
    edited.write_text(edited.read_text().replace("0.57", "0.97"))
    found = FeatureStore.open(store_copy).check()
    assert found["runs/fit-a/record.json"] is None
    assert "fails its checksum" in found["runs/kfold-b/folds/logreg-0.json"]
    assert "has no checksum" in found["runs/fit-old/record.json"]
    shutil.rmtree(runs / "fit-old")
    write_sealed(edited, {"accuracy": 0.57})
    assert check_cli(store_copy, monkeypatch).exit_code == 0


# -- 3. strings and attributes checksummed; schema 2 still opens ---------------------------------------

def test_class_names_sources_skipped_and_attributes_carry_checksums(digits_store):
    with h5py.File(schema.data_path(digits_store)) as f:
        for key in ("label_names/digit", "sources", "skipped"):
            assert f[key].fletcher32 and f[key].dtype.kind == "S", key
        assert schema.ATTRS_SEAL in f.attrs and f.id.get_create_plist().get_version()[0] >= 2
    with h5py.File(schema.feature_path(digits_store, "r50")) as f:
        assert schema.ATTRS_SEAL in f.attrs and f.attrs["data_rows"] == 1797


def test_a_flipped_class_name_stops_every_command_before_its_work(store_copy, monkeypatch):
    from attacks_store import flip_byte

    flip_byte(store_copy / "data.h5", "label_names/digit", 3)  # "3" would have become "2"
    with pytest.raises(DamagedError, match=r"data.h5 is damaged \(.*filter returned failure"):
        FeatureStore.open(store_copy)
    result = check_cli(store_copy, monkeypatch)
    assert result.exit_code == 1 and "data.h5 is damaged" in result.stderr


def test_labels_rewritten_through_hdf5_fail_check_though_their_chunk_checksums_pass(store_copy, monkeypatch):
    """h5py rewrites Fletcher-32 with the values: only the recomputed content digest tells."""
    from attacks_store import rewrite

    assert check_cli(store_copy, monkeypatch).exit_code == 0
    rewrite(store_copy, "labels/digit", lambda labels: 9 - labels)
    found = FeatureStore.open(store_copy).check()
    assert "differ from what was ingested" in found["data.h5"]
    assert check_cli(store_copy, monkeypatch).exit_code == 1


def test_check_covers_the_files_a_run_file_vouches_for(store_copy, monkeypatch):
    """A head's model.npz is listed with its sha256 in model.json: `--check` verifies it as predict does."""
    from cnncodes.classifiers.evaluation.fit import fit_head

    run, _ = fit_head(store_copy, "logreg", params={"Cs": [1.0]})
    assert check_cli(store_copy, monkeypatch).exit_code == 0
    npz = run / "model.npz"
    npz.write_bytes(npz.read_bytes()[:-1] + bytes([npz.read_bytes()[-1] ^ 1]))
    found = FeatureStore.open(store_copy).check()
    assert "model.npz fails its checksum" in found[str((run / "model.json").relative_to(store_copy))]


def test_data_replaced_under_an_open_store_is_never_mixed_with_what_was_read(store_copy, tmp_path):
    store = FeatureStore.open(store_copy)
    store.labels(split="train")
    ingest(tmp_path / "other", IngestConfig("digits", seed=1), **quiet)  # as many rows, other split
    os.replace(tmp_path / "other" / "data.h5", store_copy / "data.h5")  # what --reingest does
    with pytest.raises(UserError, match="was replaced while this command ran"):
        store.labels(split="train")


def test_a_stale_set_is_not_offered_as_a_choice(tmp_path):
    store = tmp_path / "s"
    ingest(store, IngestConfig("digits", limit=5), **quiet)
    config = FeatureConfig(backbone="mobilenet_v2", weights="none", size=32)
    extract_features(store, config, name="old", **quiet)
    ingest(store, IngestConfig("digits", limit=5, seed=1), reingest=True, **quiet)
    with pytest.raises(UserError, match="feature set old was made from other data"):
        FeatureStore.open(store).feature_set()  # the one set there is: why it cannot be used
    extract_features(store, config, name="new", **quiet)
    assert FeatureStore.open(store).feature_set().name == "new"  # the stale one is no choice


def test_a_schema_2_store_opens_and_check_says_what_it_cannot_verify(store_copy):
    with h5py.File(store_copy / "data.h5", "r+") as f:
        names = [s.decode() for s in f["label_names/digit"][:]]
        del f["label_names/digit"]
        f.create_dataset("label_names/digit", data=np.array(names, dtype=object), dtype=h5py.string_dtype())
        for seal in (schema.ATTRS_SEAL, "names_sha256", "sources_sha256"):  # what schema 2 did not have
            del f.attrs[seal]
        f.attrs["schema_version"] = 2
    store = FeatureStore.open(store_copy)
    assert store.class_names() == [str(i) for i in range(10)] and store.features("r50").shape[0] == 1797
    found = store.check()
    assert found["data.h5"] is None and found["data.h5 (class names, attributes)"].startswith("not verifiable")


# -- 10b. names ignore case ------------------------------------------------------------------------------

def test_label_sets_and_feature_sets_are_found_in_any_case(digits_store):
    store = FeatureStore.open(digits_store)
    assert store.canonical_label_set(None) == store.canonical_label_set("DIGIT") == "digit"
    np.testing.assert_array_equal(store.labels("Digit"), store.labels())
    assert store.class_names("DIGIT") == store.class_names()
    assert store.feature_set("R50").name == "r50" and store.features("R50", split="test").shape == (359, 2048)
    with pytest.raises(UserError, match="unknown label set 'fine'"):
        store.canonical_label_set("fine")
    assert resolve_name("x", ["X", "x"], "label set") == "x"  # the exact name first
    assert resolve_name("x", ["X", "y"], "label set") == "X" and resolve_name("z", ["X"], "label set") is None
    with pytest.raises(UserError, match=r"feature set 'Ab' matches 'AB', 'ab', which differ only in case"):
        resolve_name("Ab", ["ab", "AB"], "feature set")


# -- 9. a changed source is said, and ingested again only when asked --------------------------------------

def test_a_changed_folder_is_said_and_reingest_replaces_the_data(tmp_path, monkeypatch):
    import cnncodes.pipeline.sources.ingest as ingest_module

    tree = write_mixed_tree(tmp_path / "tree", per_class=3)
    config = IngestConfig(f"folder:{tree}", image_size=16)
    store = ingest(tmp_path / "s", config, **quiet)
    store.folds(2)
    before = store.data_file.read_bytes()
    with monkeypatch.context() as m:  # an unchanged source is reused from its listing, nothing decoded
        m.setattr(ingest_module, "open_source", lambda *a, **k: pytest.fail("the source was read again"))
        assert ingest(store.path, config, **quiet).content == store.content
    write_image(tree / "train" / "ant" / "new.png", np.full((20, 20, 3), 99, np.uint8))
    (tree / "test" / "bee" / "000.jpg").unlink()
    write_image(tree / "train" / "cat" / "001.png", np.zeros((30, 30, 3), np.uint8))
    with pytest.raises(UserError, match=r"changed since it was ingested: 1 image added \(e\.g\. train/ant/new\.png\), "
                                        r"1 removed \(e\.g\. test/bee/000\.jpg\), "
                                        r"1 changed \(e\.g\. train/cat/001\.png\); "
                                        r"ingest it into a new --store, or again into this one with `cnncodes "
                                        r"features --reingest`"):
        ingest(store.path, config, **quiet)
    assert store.data_file.read_bytes() == before
    again = ingest(store.path, config, reingest=True, **quiet)
    assert again.n == store.n and again.content != store.content
    assert schema.fold_files(store.path) == {}  # kept for the data replaced
    assert ingest(store.path, config, **quiet).content == again.content  # what is recorded now


def test_a_changed_archive_is_said_and_a_touched_one_is_not(tmp_path):
    tree = write_mixed_tree(tmp_path / "tree", per_class=3)
    archive = tmp_path / "tree.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="tree")
    config = IngestConfig(f"folder:{archive}", image_size=16)
    ingest(tmp_path / "s", config, **quiet)
    os.utime(archive, ns=(10**18, 10**18))  # the same bytes, another time
    ingest(tmp_path / "s", config, **quiet)
    write_image(tree / "train" / "ant" / "new.png", np.full((20, 20, 3), 99, np.uint8))
    with tarfile.open(archive, "w") as tar:
        tar.add(tree, arcname="tree")
    with pytest.raises(UserError, match=r"tree\.tar holds other bytes \(\d+ when ingested, \d+ now\)"):
        ingest(tmp_path / "s", config, **quiet)


def test_a_failed_reingest_keeps_the_data_it_would_have_replaced(tmp_path, monkeypatch):
    store = ingest(tmp_path / "s", IngestConfig("digits", limit=5), **quiet)
    before = store.data_file.read_bytes()

    def killed(self, images):
        raise KeyboardInterrupt

    monkeypatch.setattr(DataFileWriter, "append", killed)
    with pytest.raises(KeyboardInterrupt):
        ingest(store.path, IngestConfig("digits", limit=5, seed=3), reingest=True, **quiet)
    assert store.data_file.read_bytes() == before and not list(store.path.glob(".data.h5.*"))


# -- 2. a full disk is one line, and nothing is left half-written ----------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    """A real 1 MiB file system (tmpfs): the tests run as root where they may mount one."""
    disk = tmp_path / "small"
    disk.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", disk],
                                           capture_output=True).returncode:
        pytest.skip("filling a real disk needs root and a tmpfs mount")
    yield disk
    subprocess.run(["umount", disk], check=True)


def test_a_disk_that_fills_during_ingest_is_one_line_and_leaves_nothing(tmp_path, small_disk):
    """The space the first check saw free is gone when the data is written (another process took it):
    before, HDF5 met the full disk, printed two tracebacks and ended in a segmentation fault."""
    tree = write_mixed_tree(tmp_path / "tree", per_class=20)
    other_process_took_it = ("import sys, cnncodes.pipeline.sources.ingest as i; "
                             "i.check_writable = lambda *a, **k: None; "
                             "from cnncodes.cli import cli; cli(sys.argv[1:], prog_name='cnncodes')")
    result = subprocess.run([sys.executable, "-c", other_process_took_it, "features", "--dataset", f"folder:{tree}",
                             "--store", small_disk / "s", "--image-size", "52", "--weights", "none", "--quiet"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 1, result.stderr
    assert result.stderr.startswith(f"error: the disk holding {small_disk / 's'} is too full for this ingest")
    assert result.stderr.count("\n") == 1 and list(small_disk.iterdir()) == []


def test_assembling_a_set_on_a_full_disk_keeps_its_chunks(small_disk):
    writer = FeatureSetWriter(small_disk, "x", "fp", {}, 96, 2048, None, chunk_size=32)
    for lo in range(0, 96, 32):
        writer.commit(lo, np.ones((32, 2048)), None)
    with pytest.raises(UserError, match="too full to assemble feature set x: .*committed chunks are kept"):
        writer.assemble({})
    assert sorted(writer.committed()) == [0, 32, 64]
    assert not list(schema.features_dir(small_disk).glob("x.h5*"))


def test_extracting_under_a_name_in_another_case_finds_the_set(store_copy, resnet_weights):
    result = extract_features(store_copy, FeatureConfig(weights=str(resnet_weights), size=32), name="R50", **quiet)
    assert result.status == "cached" and result.name == "r50"
    assert [s.name for s in FeatureStore.open(store_copy).feature_sets()] == ["r50"]
