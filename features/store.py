"""Read access to a store directory: `FeatureStore.open(DIR)` hands out numpy or dask arrays."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import UserError
from .lazy import dask_array


@dataclass
class FeatureSetInfo:
    name: str
    complete: bool
    fingerprint: str
    config: dict
    n: int                          # rows the finished set has (one per stored image)
    done: int                       # rows committed so far
    pooled_shape: tuple
    pooled_dtype: str = "float32"
    spatial_shape: tuple | None = None
    seconds: float = 0.0
    extra: dict = field(default_factory=dict)


def read_feature_set_info(path: Path) -> FeatureSetInfo:
    """Info of a complete `<name>.h5`, or of a `<name>.parts/` folder still being written."""
    path = Path(path)
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            a = dict(f.attrs)
            spatial = f["spatial"].shape if "spatial" in f else None
            return FeatureSetInfo(
                name=a["name"], complete=bool(a.get("complete", False)), fingerprint=a["fingerprint"],
                config=json.loads(a["config"]), n=f["pooled"].shape[0], done=f["pooled"].shape[0],
                pooled_shape=f["pooled"].shape, pooled_dtype=str(f["pooled"].dtype),
                spatial_shape=spatial, seconds=float(a.get("seconds", 0.0)),
                extra=json.loads(a.get("extra", "{}")))
    manifest = json.loads((path / "manifest.json").read_text())
    done = sum(schema.committed_chunks(path).values())
    return FeatureSetInfo(
        name=manifest["name"], complete=False, fingerprint=manifest["fingerprint"],
        config=manifest["config"], n=manifest["n"], done=done,
        pooled_shape=(manifest["n"], manifest["pooled_dim"]),
        spatial_shape=tuple(manifest["spatial_shape"]) if manifest.get("spatial_shape") else None,
        seconds=float(manifest.get("seconds", 0.0)))


class FeatureStore:
    """One data set's images, labels, split, folds and feature sets. Opens files per call, read only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data_file = schema.data_path(self.path)
        with h5py.File(self.data_file, "r") as f:
            self.attrs = dict(f.attrs)
            self.split = f["split"][:]
            self.label_sets = list(json.loads(self.attrs["label_sets"]))
            self.fold_keys = sorted((on, int(k)) for on in f["folds"] for k in f["folds"][on])
            self.image_shape = f["images"].shape[1:]
        self.dataset = str(self.attrs["dataset"])
        self.n = len(self.split)

    @classmethod
    def open(cls, path) -> "FeatureStore":
        path = Path(path)
        if not schema.data_path(path).exists():
            raise UserError(f"no store at {path}: create it with `cnncodes features --dataset ... --store {path}`")
        return cls(path)

    # -- rows ---------------------------------------------------------------------------------------
    def rows(self, split: str | None) -> slice:
        """Rows of one split. Ingest writes train rows first, so a split is a contiguous slice."""
        if split is None or split == "all":
            return slice(0, self.n)
        if split not in schema.SPLITS:
            raise UserError(f"unknown split {split!r}: use one of {', '.join(schema.SPLITS)}")
        idx = np.flatnonzero(self.split == schema.SPLITS.index(split))
        return slice(int(idx[0]), int(idx[-1]) + 1) if len(idx) else slice(0, 0)

    def counts(self) -> dict:
        return {s: int((self.split == i).sum()) for i, s in enumerate(schema.SPLITS)}

    # -- labels and folds -----------------------------------------------------------------------------
    @property
    def primary_label(self) -> str:
        return self.label_sets[0]

    def _label_set(self, label_set):
        label_set = label_set or self.primary_label
        if label_set not in self.label_sets:
            raise UserError(f"unknown label set {label_set!r} in {self.path}: it has {', '.join(self.label_sets)}")
        return label_set

    def labels(self, label_set: str | None = None, split: str | None = None, lazy: bool = False):
        key = f"labels/{self._label_set(label_set)}"
        return self._read(self.data_file, key, split, lazy)

    def class_names(self, label_set: str | None = None) -> list[str]:
        with h5py.File(self.data_file, "r") as f:
            return [s.decode() for s in f[f"label_names/{self._label_set(label_set)}"][:]]

    def folds(self, k: int, on: str = "train", split: str | None = None) -> np.ndarray:
        """Fold index per row (-1 for rows outside `on`), as stored at ingest."""
        if (on, k) not in self.fold_keys:
            stored = ", ".join(f"{o}:{kk}" for o, kk in self.fold_keys)
            raise UserError(f"no {k}-fold assignment over {on!r} in {self.path} (stored: {stored}); "
                            f"re-ingest into a new store with --folds including {k}")
        return self._read(self.data_file, f"folds/{on}/{k}", split, lazy=False)

    def images(self, split: str | None = None, lazy: bool = False):
        return self._read(self.data_file, "images", split, lazy)

    def image_rows(self, start: int, stop: int) -> np.ndarray:
        """Images of rows start..stop-1 in store order: what the extractor streams, chunk by chunk."""
        with h5py.File(self.data_file, "r") as f:
            return f["images"][start:stop]

    # -- feature sets -----------------------------------------------------------------------------------
    def feature_sets(self) -> list[FeatureSetInfo]:
        folder = schema.features_dir(self.path)
        paths = sorted(folder.glob("*.h5")) + sorted(folder.glob(f"*{schema.PARTS_SUFFIX}"))
        return [read_feature_set_info(p) for p in paths if p.suffix == ".h5" or (p / "manifest.json").exists()]

    def feature_set(self, name: str | None = None) -> FeatureSetInfo:
        """The named complete feature set; without a name, the only complete one."""
        complete = [s for s in self.feature_sets() if s.complete]
        names = ", ".join(s.name for s in complete) or "none"
        if name is None:
            if len(complete) == 1:
                return complete[0]
            raise UserError(f"{self.path} has {len(complete)} complete feature sets ({names}): choose one with --features NAME")
        for s in self.feature_sets():
            if s.name == name:
                if not s.complete:
                    raise UserError(f"feature set {name} is incomplete ({s.done}/{s.n} rows): re-run `cnncodes features` to finish it")
                return s
        raise UserError(f"no feature set {name!r} in {self.path} (complete: {names})")

    def features(self, name: str | None = None, split: str | None = None, kind: str = "pooled", lazy: bool = False):
        info = self.feature_set(name)
        if kind == "spatial" and info.spatial_shape is None:
            raise UserError(f"feature set {info.name} has no spatial maps: extract with --spatial to store them")
        return self._read(schema.feature_path(self.path, info.name), kind, split, lazy)

    def _read(self, path, key, split, lazy):
        rows = self.rows(split)
        if lazy:
            return dask_array(path, key)[rows]
        with h5py.File(path, "r") as f:
            return f[key][rows]

    def summary(self) -> dict:
        return {
            "store": str(self.path), "dataset": self.dataset, "source": str(self.attrs.get("source", "")),
            "images": {"count": self.n, "shape": list(self.image_shape), "dtype": "uint8"},
            "splits": self.counts(),
            "label_sets": {ls: len(self.class_names(ls)) for ls in self.label_sets},
            "folds": [f"{on}:{k}" for on, k in self.fold_keys],
            "skipped": int(self.attrs.get("skipped", 0)),
            "content_sha256": str(self.attrs["content_sha256"]),
            "feature_sets": [
                {"name": s.name, "complete": s.complete, "rows": f"{s.done}/{s.n}",
                 "shape": list(s.pooled_shape), "dtype": s.pooled_dtype,
                 "spatial_shape": list(s.spatial_shape) if s.spatial_shape else None,
                 "fingerprint": s.fingerprint, "seconds": round(s.seconds, 2), "config": s.config}
                for s in self.feature_sets()],
        }
