"""Hostile-input rows: store. Each row is an Attack (tests/hostile.py); test_hostile.py runs them."""
import shutil

import h5py
import numpy as np

from hostile import Attack

quiet = dict(progress=False, log=lambda m: None)


def ingest_other_data(store, tmp):
    """`rm STORE/data.h5`, then another ingest (3 digits a split) into the same store."""
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    (store / "data.h5").unlink()
    ingest(store, IngestConfig("digits", limit=3), **quiet)


def drop_last_row(store, tmp):
    """r50.h5 rewritten with one row fewer, its attributes (and their seal) copied as they were."""
    path = store / "features" / "r50.h5"
    with h5py.File(path) as f, h5py.File(tmp / "short.h5", "w") as g:
        g.create_dataset("pooled", data=f["pooled"][:-1])
        g.attrs.update(dict(f.attrs))
    shutil.move(tmp / "short.h5", path)


def flip_byte(path, key, at):
    """Flips one byte inside the first stored chunk of `key`, as a disk fault would."""
    with h5py.File(path, "r") as f:
        offset = f[key].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + at)
        byte = f.read(1)
        f.seek(offset + at)
        f.write(bytes([byte[0] ^ 0x01]))


def edit_seed(store, tmp):
    """A hand edit of an attribute that feeds the folds: HDF5's own header checksum is rewritten with it."""
    with h5py.File(store / "data.h5", "r+") as f:
        f.attrs["seed"] = 1


def rewrite(store, key, change):
    """Values rewritten through HDF5, whose chunk checksums are rewritten with them: only the store's
    own digests can tell."""
    with h5py.File(store / "data.h5", "r+") as f:
        f[key][:] = change(f[key][:])


def changed_folder_source(store, tmp):
    """A folder store whose source has since gained one image and lost another."""
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
    from conftest import write_image, write_mixed_tree

    tree = write_mixed_tree(tmp / "tree", per_class=3)
    ingest(tmp / "fs", IngestConfig(f"folder:{tree}", image_size=16), **quiet)
    write_image(tree / "train" / "ant" / "new.png", np.full((20, 20, 3), 99, np.uint8))
    (tree / "test" / "bee" / "000.jpg").unlink()


STORE_ATTACKS = [
    Attack("unknown feature set", ("fit", "--store", "{store}", "--head", "logreg", "--features", "nosuch"),
           "no feature set 'nosuch'"),
    Attack("codes of other data after data.h5 was replaced",
           ("fit", "--store", "{store}", "--head", "logreg", "--features", "r50"),
           r"feature set r50 was made from other data .*re-run `cnncodes features`", prepare=ingest_other_data),
    Attack("codes of other data exported beside new labels",
           ("export", "--store", "{store}", "--out", "{tmp}/codes.npz"),
           r"feature set r50 was made from other data", prepare=ingest_other_data),
    Attack("feature set rewritten one row short", ("fit", "--store", "{store}", "--head", "logreg"),
           r"feature set r50 has 1796 rows but was made with 1797", prepare=drop_last_row),
    Attack("flipped byte in a class name", ("fit", "--store", "{store}", "--head", "logreg"),
           r"data.h5 is damaged .*--reingest",
           prepare=lambda store, tmp: flip_byte(store / "data.h5", "label_names/digit", 3)),
    Attack("flipped byte in the sources", ("export", "--store", "{store}", "--out", "{tmp}/codes.npz"),
           r"data.h5 is damaged", prepare=lambda store, tmp: flip_byte(store / "data.h5", "sources", 5)),
    Attack("class names swapped through HDF5", ("fit", "--store", "{store}", "--head", "logreg"),
           r"data.h5 is damaged \(its class names fail their checksum\)",
           prepare=lambda store, tmp: rewrite(store, "label_names/digit", lambda names: names[::-1])),
    Attack("sources swapped through HDF5", ("export", "--store", "{store}", "--out", "{tmp}/codes.npz"),
           r"data.h5 is damaged \(its sources fail their checksum\)",
           prepare=lambda store, tmp: rewrite(store, "sources", lambda sources: sources[::-1])),
    Attack("hand-edited seed attribute", ("kfold", "--store", "{store}", "--head", "logreg", "-k", "3"),
           r"data.h5 is damaged \(its attributes fail their checksum\)", prepare=edit_seed),
    Attack("changed folder source reused",
           ("features", "--dataset", "folder:{tmp}/tree", "--store", "{tmp}/fs", "--image-size", "16",
            "--weights", "none", "--size", "32"),
           r"source of .*fs changed since it was ingested: 1 image added \(e\.g\. train/ant/new\.png\), "
           r"1 removed \(e\.g\. test/bee/000\.jpg\); .*--reingest", prepare=changed_folder_source),
]
