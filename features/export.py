"""`cnncodes export`: a feature set's codes with labels, split, sources and folds as one `.npz`.

Members are plain arrays (`np.load(path, allow_pickle=False)` reads them all). The codes are streamed
into the zip member in slices of rows, so a set larger than memory exports in bounded memory; the
file is staged and published only where nothing is yet (outputs.atomic_write: what a killed export left is
removed by the next, never a running one's).
"""
import zipfile
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import UserError
from .outputs import atomic_write, check_new_output
from .reading import reading
from .store import FeatureStore

ROWS_PER_SLICE = 8192


def write_member(archive: zipfile.ZipFile, name: str, array: np.ndarray):
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array(f, np.ascontiguousarray(array), allow_pickle=False)


def stream_member(archive: zipfile.ZipFile, name: str, dataset, rows_per_slice: int = ROWS_PER_SLICE):
    """An .npy member written slice by slice from an HDF5 (or dask) array: header first, then the rows."""
    header = {"descr": np.lib.format.dtype_to_descr(dataset.dtype), "fortran_order": False, "shape": dataset.shape}
    with archive.open(f"{name}.npy", "w", force_zip64=True) as f:
        np.lib.format.write_array_header_2_0(f, header)
        for lo in range(0, dataset.shape[0], rows_per_slice):
            f.write(np.ascontiguousarray(dataset[lo:lo + rows_per_slice]).tobytes())


class JoinedRows:
    """The codes of an `A+B` join, read a slice of rows at a time, each part's read under its own message
    should its file be damaged."""

    def __init__(self, store: FeatureStore, parts: list[str], kind: str):
        self.store, self.parts, self.kind = store, parts, kind
        widths = []
        for part in parts:
            with reading(self.path(part), store.rebuild(part)), h5py.File(self.path(part), "r") as f:
                widths.append(f[kind].shape[1])
        self.shape, self.dtype = (store.n, sum(widths)), np.dtype(np.float32)

    def path(self, part: str) -> Path:
        return schema.feature_path(self.store.path, part)

    def __getitem__(self, rows) -> np.ndarray:
        out = []
        for part in self.parts:
            with reading(self.path(part), self.store.rebuild(part)), h5py.File(self.path(part), "r") as f:
                out.append(f[self.kind][rows])
        return np.concatenate(out, axis=1)


def export_feature_set(store_dir, out, features: str | None = None, kind: str = "pooled") -> Path:
    """Writes `out` (.npz): codes (every row, store order), split (0 train, 1 test), labels_<set> and
    class_names_<set> for every label set, sources, folds_<on>_k<K> for every kept assignment."""
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features)
    if kind == "spatial" and info.spatial_shape is None:
        raise UserError(f"feature set {info.name} has no spatial maps: export the pooled codes, "
                        "or extract with --spatial")
    out = Path(out)
    if out.suffix != ".npz":
        raise UserError(f"--out {out}: the export is a .npz file; give a name ending in .npz")
    out.parent.mkdir(parents=True, exist_ok=True)
    check_new_output(out)
    path = schema.feature_path(store.path, info.name)
    with atomic_write(out, exclusive=True) as (tmp,):
        with zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED, allowZip64=True) as archive:
            if info.parts:  # A+B: its sets joined slice by slice as they are read
                stream_member(archive, "codes", JoinedRows(store, info.parts, kind))
            else:
                with reading(path, store.rebuild(info.name)), h5py.File(path, "r") as f:
                    stream_member(archive, "codes", f[kind])
            write_member(archive, "split", store.split)
            write_member(archive, "split_names", np.array(schema.SPLITS))
            for label_set in store.label_sets:
                write_member(archive, f"labels_{label_set}", store.labels(label_set))
                write_member(archive, f"class_names_{label_set}", np.array(store.class_names(label_set)))
            sources = store.sources()
            if sources is not None:
                write_member(archive, "sources", sources)
            for on, k in store.fold_keys:
                write_member(archive, f"folds_{on}_k{k}", store.folds(k, on=on, split="all"))
            write_member(archive, "feature_set", np.array([info.name, info.fingerprint, kind]))
    return out
