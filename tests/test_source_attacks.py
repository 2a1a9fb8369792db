"""Data sources under attack or damage (issue 12's fuzz list, items 2, 4, 6 and 10), every row's origin,
and the one-way dependency from the registry to the sources."""
import ast
import io
import os
import pickle
import struct
import tarfile
import zipfile
import zlib
from pathlib import Path

import h5py
import numpy as np
import pytest

from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.pipeline import images
from cnncodes.pipeline.image_headers import PNG_SIGNATURE, image_size
from cnncodes.pipeline.sources import cifar, file_trees
from cnncodes.pipeline.sources.digits import digits_source
from cnncodes.pipeline.sources.folders import folder_source
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import DEMO_PHOTOS, ROOT, write_cifar_archive, write_image, write_mixed_tree

quiet = dict(progress=False, log=lambda m: None)


def read_all(source):
    images_, bad = source.read(np.arange(len(next(iter(source.labels.values())))))
    return images_, bad


# Every row's origin

@pytest.mark.parametrize("packing", ["dir", "tar", "zip"])
def test_folder_origin_is_the_path_inside_the_tree_or_archive_as_stored(tmp_path, packing):
    tree = write_mixed_tree(tmp_path / "animals", per_class=2)
    path, prefix = tree, ""
    if packing == "tar":
        path, prefix = tmp_path / "animals.tar", "animals/"
        with tarfile.open(path, "w") as tar:
            tar.add(tree, arcname="animals")  # the wrapping folder stays in the origin
    elif packing == "zip":
        path = tmp_path / "animals.zip"
        with zipfile.ZipFile(path, "w") as z:
            for f in sorted(tree.rglob("*")):
                z.write(f, f.relative_to(tree).as_posix())
    source = folder_source(str(path), image_size=16)
    origins = [source.origin(i) for i in range(12)]
    assert origins[0] == f"{prefix}train/ant/000.jpg" and origins[-1] == f"{prefix}test/cat/001.png"
    for i, origin in enumerate(origins):  # each origin names its row's own file and class
        split, cls = origin.removeprefix(prefix).split("/")[:2]
        assert split == ("train", "test")[source.split[i]]
        assert cls == source.class_names["class"][source.labels["class"][i]]
        assert source.sample_names(i) == f"{path}/{origin}"
    source.close()


def test_demo_zip_origin_keeps_the_archive_member_path(tmp_path):
    source = folder_source(str(DEMO_PHOTOS), image_size=32)
    origins = {source.origin(i) for i in range(len(source.labels["class"]))}
    assert "cifar10-sample/test/cat/0000.jpg" in origins and len(origins) == 3000
    source.close()


@pytest.mark.parametrize("kind, expected", [
    ("cifar10", {0: "data_batch_1[0]", 4: "data_batch_1[4]", 5: "data_batch_2[0]", 17: "data_batch_4[2]",
                 25: "test_batch[0]", 29: "test_batch[4]"}),
    ("cifar100", {0: "train[0]", 24: "train[24]", 25: "test[0]", 29: "test[4]"}),
])
def test_cifar_origin_is_batch_member_and_index_in_it(tmp_path, kind, expected):
    write_cifar_archive(tmp_path / cifar.ARCHIVES[kind].file, kind, per_batch=5)
    source = cifar.cifar_source(kind, data_dir=tmp_path, verify=False)
    assert {i: source.origin(i) for i in expected} == expected


def test_digits_origin_is_the_load_digits_index():
    source = digits_source()
    assert source.origin(0) == "load_digits[0]" and source.origin(1796) == "load_digits[1796]"


def test_ingest_records_each_rows_origin_aligned_with_its_labels(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    store = ingest(tmp_path / "s", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    sources, labels = store.sources(split="test"), store.labels(split="test")
    assert len(sources) == len(labels) == 6
    assert [s.split("/")[1] for s in sources] == [store.class_names()[k] for k in labels]
    assert all(s.startswith("test/") for s in sources)


# The sources circle

def test_sources_import_only_downward_and_the_registry_reexports_the_contract():
    modules = [f"sources/{m}" for m in ("contract", "cifar", "folders", "digits", "file_trees", "safe_pickle")]
    for module in [*modules, "images", "image_headers"]:
        tree = ast.parse((ROOT / "pipeline" / f"{module}.py").read_text())
        registry = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)  # sources/__init__.py
                    and (node.module == "cnncodes.pipeline.sources" or (node.level == 1 and node.module is None))]
        assert registry == [], f"pipeline/{module}.py imports the registry"
    from cnncodes.pipeline.sources import Source, dataset_name, in_memory_source, open_source  # noqa: F401
    from cnncodes.pipeline.sources.contract import Source as contract
    assert Source is contract


# Nothing from an archive runs code (fuzz item 2)

class Payload:
    """What a planted archive holds: unpickling it with pickle.load would call `call(*args)`."""
    def __init__(self, call, *args):
        self.call, self.args = call, args

    def __reduce__(self):
        return self.call, self.args


def rewrite_members(archive: Path, replace: dict) -> Path:
    """The archive with the named members' pickles replaced (name: object, pickled with protocol 2 as
    the official files are)."""
    members = {}
    with tarfile.open(archive) as tar:
        for m in tar.getmembers():
            members[m.name] = tar.extractfile(m).read()
    for name in members:
        if name.rsplit("/", 1)[-1] in replace:
            members[name] = pickle.dumps(replace[name.rsplit("/", 1)[-1]], protocol=2)
    with tarfile.open(archive, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive


def planted_archive(tmp_path, member: str, payload) -> Path:
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10", per_batch=4)
    with tarfile.open(archive) as tar:
        batch = pickle.load(tar.extractfile(f"cifar-10-batches-py/{member}"), encoding="bytes")
    batch[b"filenames"] = payload
    return rewrite_members(archive, {member: batch})


@pytest.mark.parametrize("member", ["batches.meta", "data_batch_3"])
@pytest.mark.parametrize("call", [os.system, open])
def test_planted_archive_runs_nothing_even_with_no_verify(tmp_path, member, call):
    marker = tmp_path / "ran"
    args = (f"touch {marker}",) if call is os.system else (str(marker), "w")
    planted_archive(tmp_path, member, Payload(call, *args))
    with pytest.raises(UserError, match=rf"cifar-10-python\.tar\.gz holds code or objects a CIFAR archive never "
                                        rf"holds \(.*(system|open) in {member}\)"):
        ingest(tmp_path / "s", IngestConfig("cifar10"), data_dir=tmp_path, verify=False, **quiet)
    assert not marker.exists() and not (tmp_path / "s" / "data.h5").exists()


def test_planted_archive_with_the_official_md5_is_refused_too(tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    archive = planted_archive(tmp_path, "test_batch", Payload(open, str(marker), "w"))
    a = cifar.ARCHIVES["cifar10"]
    monkeypatch.setitem(cifar.ARCHIVES, "cifar10", a.__class__(**{**a.__dict__, "md5": file_digest(archive)}))
    with pytest.raises(UserError, match="holds code or objects a CIFAR archive never holds"):
        cifar.cifar_source("cifar10", data_dir=tmp_path)
    assert not marker.exists()


@pytest.mark.parametrize("numpy_module", ["numpy._core.multiarray", "numpy.core.multiarray"])
def test_batches_holding_numpy_arrays_load_as_the_official_ones_do(tmp_path, numpy_module):
    """The official batches hold `data` as a numpy uint8 array, pickled by numpy 1 (numpy.core)."""
    rng = np.random.default_rng(1)
    data = {m: rng.integers(0, 256, (4, 3072), dtype=np.uint8)
            for m in cifar.ARCHIVES["cifar10"].train + ("test_batch",)}
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10", per_batch=4)
    batches = {m: {b"data": d, b"labels": [1, 2, 3, 4], b"batch_label": b"x", b"filenames": [b"a.png"] * 4}
               for m, d in data.items()}
    rewrite_members(archive, batches)
    if numpy_module == "numpy.core.multiarray":  # as written before numpy 2: same opcodes, older module name
        with tarfile.open(archive) as tar:
            members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
        with tarfile.open(archive, "w:gz") as tar:
            for name, blob in members.items():
                blob = blob.replace(b"cnumpy._core.multiarray\n", b"cnumpy.core.multiarray\n")
                info = tarfile.TarInfo(name)
                info.size = len(blob)
                tar.addfile(info, io.BytesIO(blob))
    source = cifar.cifar_source("cifar10", data_dir=tmp_path, verify=False)
    got, bad = source.read(np.arange(24))
    assert bad == [] and source.labels["label"][:4].tolist() == [1, 2, 3, 4]
    first = data["data_batch_1"][0]
    assert got[0, 0, 0].tolist() == [first[0], first[1024], first[2048]]
    np.testing.assert_array_equal(got[20].transpose(2, 0, 1).reshape(-1), data["test_batch"][0])


def test_batch_whose_labels_do_not_match_its_images_is_a_clear_error(tmp_path):
    archive = write_cifar_archive(tmp_path / "cifar-10-python.tar.gz", "cifar10", per_batch=4)
    rewrite_members(archive, {"data_batch_2": {b"data": np.zeros((4, 3072), np.uint8), b"labels": [0, 1, 99, 2]}})
    with pytest.raises(UserError, match="not a readable CIFAR archive .*labels outside the 10 classes"):
        cifar.cifar_source("cifar10", data_dir=tmp_path, verify=False)


# Hostile or broken images (fuzz item 4)

def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header claiming width x height, over a few bytes of pixel data."""
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return PNG_SIGNATURE + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_headers_give_the_size_before_decoding():
    assert image_size(png_claiming(100_000, 100_000)) == (100_000, 100_000)
    jpeg = (b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\0" + bytes(9)  # APP0 is skipped whole
            + b"\xff\xc2" + struct.pack(">HBHH", 17, 8, 60_000, 65_000) + bytes(12))
    assert image_size(jpeg) == (65_000, 60_000)
    bmp = b"BM" + bytes(12) + struct.pack("<Iii", 40, 90_000, -80_000) + bytes(30)
    assert image_size(bmp) == (90_000, 80_000)
    for claimed in (png_claiming(30_000, 30_000), jpeg, bmp):
        with pytest.raises(images.BadImage, match="larger than the 50-megapixel limit"):
            images.decode_image(claimed)
    assert image_size(b"GIF89a....") is None and image_size(b"") is None


def test_huge_claimed_image_is_refused_without_decoding(tmp_path, monkeypatch):
    def no_decoding(*a, **k):
        raise AssertionError("an image over the pixel limit was handed to the decoder")

    monkeypatch.setattr(images.cv2, "imdecode", no_decoding)
    assert images.decode_rgb(png_claiming(30_000, 30_000)) is None


@pytest.mark.parametrize("content, reason", [
    (b"", "an empty file"),
    (png_claiming(100_000, 100_000), "larger than the 50-megapixel limit: 100000x100000"),
    (png_claiming(30_000, 30_000), "larger than the 50-megapixel limit: 30000x30000"),
    (png_claiming(40, 40), "its pixel data is damaged or incomplete"),
])
def test_empty_or_huge_image_is_a_bad_image_not_a_cv2_traceback(tmp_path, content, reason):
    tree = write_mixed_tree(tmp_path / "t", per_class=3)
    (tree / "train" / "bee" / "hostile.png").write_bytes(content)
    source = folder_source(str(tree), image_size=16)
    _, bad = read_all(source)
    assert [source.origin(i) for i in bad] == ["train/bee/hostile.png"]
    assert source.bad_reason(bad[0]) == f"not a readable image ({reason})"
    source.close()
    with pytest.raises(UserError, match=r"train/bee/hostile\.png is not a readable image.*--skip-bad"):
        ingest(tmp_path / "a", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    store = ingest(tmp_path / "b", IngestConfig(f"folder:{tree}", image_size=16, skip_bad=True), **quiet)
    assert store.n == 18 and "train/bee/hostile.png" not in set(store.sources())


def test_default_size_comes_from_the_first_image_that_decodes(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    (tree / "train" / "ant" / "000.jpg").write_bytes(b"")
    source = folder_source(str(tree))
    assert 20 <= read_all(source)[0].shape[1] < 48
    for cls in ("ant", "bee"):
        (tmp_path / "empty" / cls).mkdir(parents=True)
        (tmp_path / "empty" / cls / "a.png").write_bytes(b"")
    with pytest.raises(UserError, match=r"ant/a\.png is not a readable image \(an empty file\): .*--image-size"):
        folder_source(str(tmp_path / "empty"))


def test_file_too_big_for_any_image_is_not_read_into_memory(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    with open(tree / "train" / "bee" / "huge.png", "wb") as f:
        f.truncate(file_trees.MAX_FILE_BYTES + 1)  # sparse: no disk used
    source = folder_source(str(tree), image_size=16)
    _, bad = read_all(source)
    assert [source.origin(i) for i in bad] == ["train/bee/huge.png"]
    assert "more than any image under the pixel limit needs" in source.bad_reason(bad[0])


# Damaged archives and odd names (fuzz item 6)

def non_utf8_tree(tmp_path) -> Path:
    """A tree whose third class folder is named by the bytes b'caf\\xe9' (Latin-1 'café', not UTF-8)."""
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    for split in ("train", "test"):
        os.rename(os.fsencode(tree / split / "cat"), os.fsencode(tree / split) + b"/caf\xe9")
    return tree


def test_non_utf8_class_folder_names_are_escaped_and_ingest_completes(tmp_path):
    tree = non_utf8_tree(tmp_path)
    store = ingest(tmp_path / "s", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    assert store.class_names() == ["ant", "bee", "caf\\xe9"]
    assert "train/caf\\xe9/000.jpg" in set(store.sources(split="train"))


def test_non_utf8_tar_member_names_are_escaped(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)

    def latin1_cat(info):
        info.name = info.name.replace("/cat", "/caf\udce9")  # the byte 0xe9, as Python holds it
        return info

    path = tmp_path / "animals.tar"
    with tarfile.open(path, "w", format=tarfile.GNU_FORMAT) as tar:
        tar.add(tree, arcname="animals", filter=latin1_cat)
    with tarfile.open(path) as tar:
        assert any(b"caf\xe9" in os.fsencode(m.name) for m in tar.getmembers())
    source = folder_source(str(path), image_size=16)
    assert source.class_names["class"] == ["ant", "bee", "caf\\xe9"]
    assert source.origin(4) == "animals/train/caf\\xe9/000.jpg"
    assert read_all(source)[1] == []
    for text in (source.origin(4), source.sample_names(4), *source.class_names["class"]):
        text.encode("utf-8")  # what the store writes
    source.close()


def corrupt_zip_member(path: Path, name: str):
    """Flips one byte in the middle of a stored member's data, after its CRC was written."""
    with zipfile.ZipFile(path) as z:
        info = z.getinfo(name)
    blob = bytearray(path.read_bytes())
    name_len, extra_len = struct.unpack("<HH", blob[info.header_offset + 26:info.header_offset + 30])
    at = info.header_offset + 30 + name_len + extra_len + info.compress_size // 2
    blob[at] ^= 0xFF
    path.write_bytes(bytes(blob))


def test_zip_member_failing_its_crc_is_a_bad_image(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=3)
    path = tmp_path / "animals.zip"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as z:
        for f in sorted(tree.rglob("*")):
            z.write(f, f.relative_to(tree).as_posix())
    corrupt_zip_member(path, "train/bee/001.png")
    source = folder_source(str(path), image_size=16)
    _, bad = read_all(source)
    assert [source.origin(i) for i in bad] == ["train/bee/001.png"]
    assert "a damaged zip member (BadZipFile: Bad CRC-32" in source.bad_reason(bad[0])
    source.close()
    with pytest.raises(UserError, match=r"animals\.zip/train/bee/001\.png is not a readable image.*--skip-bad"):
        ingest(tmp_path / "a", IngestConfig(f"folder:{path}", image_size=16), **quiet)
    store = ingest(tmp_path / "b", IngestConfig(f"folder:{path}", image_size=16, skip_bad=True), **quiet)
    assert store.n == 17


def test_truncated_or_damaged_tar_is_one_clear_line(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    path = tmp_path / "animals.tar"
    with tarfile.open(path, "w") as tar:
        tar.add(tree, arcname="animals")
    with tarfile.open(path) as tar:
        last = [m for m in tar.getmembers() if m.isfile()][-1]
    with open(path, "r+b") as f:
        f.truncate(last.offset_data + last.size // 2)
    with pytest.raises(UserError, match=r"animals\.tar is not a readable .tar or .zip archive \(ReadError: unexpected "
                                        r"end of data\): .*pack or download the archive again"):
        folder_source(str(path), image_size=16)


def test_tar_member_that_fails_to_read_is_a_bad_image(tmp_path, monkeypatch):
    """An archive that changes under a running ingest: the member read fails after the listing."""
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    path = tmp_path / "animals.tar.gz"
    with tarfile.open(path, "w:gz") as tar:
        tar.add(tree, arcname="animals")
    source = folder_source(str(path), image_size=16)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    _, bad = read_all(source)
    assert bad and all("a damaged tar member" in source.bad_reason(i) for i in bad)
    source.close()


# Small ones (fuzz item 10): symlinked class folders, members outside the root

def test_symlinked_class_folder_is_followed_and_link_loops_are_not(tmp_path):
    tree = write_mixed_tree(tmp_path / "t", classes=("ant", "bee"), per_class=2)
    elsewhere = write_mixed_tree(tmp_path / "elsewhere", classes=("cat",), per_class=3)
    for split in ("train", "test"):
        (tree / split / "cat").symlink_to(elsewhere / split / "cat", target_is_directory=True)
    (tree / "train" / "ant" / "up").symlink_to(tree / "train", target_is_directory=True)  # a loop
    (tree / "test" / "bee" / "root").symlink_to(tree, target_is_directory=True)  # another
    source = folder_source(str(tree), image_size=16)
    assert source.class_names["class"] == ["ant", "bee", "cat"]
    assert np.bincount(source.labels["class"]).tolist() == [4, 4, 6]
    assert source.origin(4) == "train/cat/000.jpg"
    assert read_all(source)[1] == []


def write_with_outside_members(tmp_path, packing: str, split_folders: bool) -> tuple[Path, list[str]]:
    tree = write_mixed_tree(tmp_path / "t", per_class=2, split_folders=split_folders)
    photo = next(tree.rglob("000.jpg")).read_bytes()
    outside = ["/abs/cat/x.jpg", "/x.jpg", "../escape/cat/x.jpg", "ant/../../up/x.jpg", "ant\\..\\..\\win\\x.jpg"]
    path = tmp_path / "in" / f"animals.{packing}"
    path.parent.mkdir()
    if packing == "tar":
        with tarfile.open(path, "w") as tar:
            tar.add(tree, arcname=".")
            for name in outside:
                info = tarfile.TarInfo(name)
                info.size = len(photo)
                tar.addfile(info, io.BytesIO(photo))
    else:
        with zipfile.ZipFile(path, "w") as z:
            for f in sorted(tree.rglob("*")):
                z.write(f, f.relative_to(tree).as_posix())
            for name in outside:
                z.writestr(zipfile.ZipInfo(name), photo)
    return path, outside


@pytest.mark.parametrize("split_folders", [True, False])
@pytest.mark.parametrize("packing", ["tar", "zip"])
def test_members_outside_the_root_are_skipped_unread_and_named(tmp_path, packing, split_folders, monkeypatch):
    path, outside = write_with_outside_members(tmp_path, packing, split_folders)
    reader = file_trees.TarFiles if packing == "tar" else file_trees.ZipFiles
    read_names = []
    original = reader.read
    monkeypatch.setattr(reader, "read", lambda self, name: read_names.append(name) or original(self, name))
    source = folder_source(str(path), image_size=16)
    assert source.class_names["class"] == ["ant", "bee", "cat"]  # not a class named "/"
    assert sorted(source.skipped_members) == sorted(outside)
    n = 12 if split_folders else 6
    assert read_all(source)[1] == [] and len(read_names) == n
    assert not set(read_names) & set(outside)
    source.close()
    store = ingest(tmp_path / "s", IngestConfig(f"folder:{path}", image_size=16), **quiet)
    assert store.n == n
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in", "s", "t"]  # nothing written beside them
    assert not Path("/abs").exists() and not Path("/x.jpg").exists()


def test_archive_of_only_outside_members_says_they_were_skipped(tmp_path):
    path = tmp_path / "evil.zip"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("../cat/x.jpg", b"x")
    with pytest.raises(UserError, match=r"no images in class folders under .*evil\.zip \(1 members outside the "
                                        r"archive's root were skipped\)"):
        folder_source(str(path))


def test_header_sizes_agree_with_what_opencv_writes(tmp_path):
    """For every format and channel count the test trees use."""
    for ext, shape in ((".jpg", (7, 11, 3)), (".png", (5, 9, 4)), (".bmp", (6, 13, 3)), (".png", (8, 3))):
        write_image(tmp_path / f"x{ext}", np.zeros(shape, np.uint8))
        assert image_size((tmp_path / f"x{ext}").read_bytes()) == (shape[1], shape[0])


# Silent input loss (issue 19, item 6): archives cut short, names that several members share

def packed_tar(tmp_path, mode: str = "w") -> Path:
    tree = write_mixed_tree(tmp_path / "t", per_class=2)
    path = tmp_path / ("animals.tar" + ("" if mode == "w" else "." + mode[2:]))
    with tarfile.open(path, mode) as tar:
        tar.add(tree, arcname="animals")
    return path


def cut_at_header(path: Path, member: int = -4) -> Path:
    """Cuts a plain tar where a member's header starts (a 512-byte boundary, as a cut download at a 10 KiB
    record boundary is): tarfile then sees a clean end and lists what is left."""
    with tarfile.open(path) as tar:
        offset = tar.getmembers()[member].offset
    with open(path, "r+b") as f:
        f.truncate(offset)
    with tarfile.open(path) as tar:  # what it did before: no error, members gone
        assert len(tar.getmembers()) > 0
    return path


def flip_header_byte(path: Path, member: int = -4) -> Path:
    with tarfile.open(path) as tar:
        offset = tar.getmembers()[member].offset
    blob = bytearray(path.read_bytes())
    blob[offset + 10] ^= 0xFF  # inside the name: its checksum no longer matches
    path.write_bytes(bytes(blob))
    return path


@pytest.mark.parametrize("damage", [cut_at_header, flip_header_byte])
def test_a_tar_that_ends_before_its_end_marker_is_refused(tmp_path, damage):
    path = damage(packed_tar(tmp_path))
    with pytest.raises(UserError, match=r"animals\.tar ends before its end-of-archive marker, after \d+ members: it "
                                        r"was cut short .*pack or download the archive again"):
        folder_source(str(path), image_size=16)
    assert not (tmp_path / "s").exists()
    with pytest.raises(UserError, match="cut short"):
        ingest(tmp_path / "s", IngestConfig(f"folder:{path}", image_size=16), **quiet)
    assert not (tmp_path / "s").exists()


def test_a_compressed_tar_cut_anywhere_is_refused(tmp_path):
    path = packed_tar(tmp_path, "w:gz")
    for cut in (len(path.read_bytes()) // 2, len(path.read_bytes()) - 30):
        blob = path.read_bytes()
        damaged = tmp_path / f"cut{cut}.tar.gz"
        damaged.write_bytes(blob[:cut])
        with pytest.raises(UserError, match=r"cut.*\.tar\.gz (ends before its end-of-archive marker|is not a "
                                            r"readable .tar or .zip archive \(EOFError)"):
            folder_source(str(damaged), image_size=16)


def test_a_whole_tar_and_one_ending_between_its_two_zero_blocks_are_read(tmp_path):
    path = packed_tar(tmp_path)
    source = folder_source(str(path), image_size=16)
    assert len(source.labels["class"]) == 12
    source.close()
    with tarfile.open(path) as tar:
        tar.getmembers()
        end = tar.offset  # where the end-of-archive marker starts, after the last member
    with open(path, "r+b") as f:
        f.truncate(end + 512)  # one zero block: every member is there
    assert len(folder_source(str(path), image_size=16).labels["class"]) == 12


def with_shared_name(tmp_path, packing: str) -> Path:
    """An archive holding train/cat/000.png twice: a cat, then a dog stored under the same name."""
    tree = write_mixed_tree(tmp_path / "t", classes=("cat", "dog"), per_class=3)
    dog = (tree / "train" / "dog" / "001.png").read_bytes()
    path = tmp_path / f"pets.{packing}"
    if packing == "tar":
        with tarfile.open(path, "w") as tar:
            tar.add(tree, arcname=".")
            info = tarfile.TarInfo("./train/cat/001.png")  # "./" or not, the same name once extracted
            info.size = len(dog)
            tar.addfile(info, io.BytesIO(dog))
    else:
        with zipfile.ZipFile(path, "w") as z, __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore")  # zipfile warns of the duplicate it writes
            for f in sorted(tree.rglob("*")):
                z.write(f, f.relative_to(tree).as_posix())
            z.writestr("train/cat/001.png", dog)
    return path


@pytest.mark.parametrize("packing", ["tar", "zip"])
def test_a_name_several_members_share_is_an_error_or_skipped_and_recorded(tmp_path, packing):
    path = with_shared_name(tmp_path, packing)
    with pytest.raises(UserError, match=rf"pets\.{packing}/train/cat/001\.png is a name 2 members of the archive "
                                        r"share \(which one is meant cannot be told\): .*--skip-bad"):
        ingest(tmp_path / "a", IngestConfig(f"folder:{path}", image_size=16), **quiet)
    assert not (tmp_path / "a").exists()
    said = []
    store = ingest(tmp_path / "b", IngestConfig(f"folder:{path}", image_size=16, skip_bad=True), progress=False,
                   log=said.append)
    assert store.n == 11 and "train/cat/001.png" not in store.sources().tolist()
    assert any("skipped 1 " in line for line in said)
    with h5py.File(store.data_file) as f:
        assert [s.decode() for s in f["skipped"][:]] == [f"{path}/train/cat/001.png"]
