"""Read access to a store directory: `FeatureStore.open(DIR)` hands out numpy or dask arrays."""
import fcntl
import json
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import DamagedError, UserError
from .folds import stratified_folds
from .lazy import dask_array

# What h5py, json and numpy raise on a file that is truncated, garbled or fails its checksums.
DAMAGE = (OSError, EOFError, KeyError, ValueError, TypeError)


def reason(error: Exception) -> str:
    """The useful first part of a low-level error, for a one-line message."""
    text = str(error).split("\n")[0]
    return (text[:150] + "...") if len(text) > 150 else text or type(error).__name__


@contextmanager
def reading(path, fix: str):
    """Turns a failed read of a stored file (checksum mismatch, truncation) into one line naming the file."""
    try:
        yield
    except DamagedError:
        raise
    except DAMAGE as e:
        if isinstance(e, OSError) and not Path(path).exists():
            raise UserError(f"{path} is missing: {fix}") from None
        raise DamagedError(f"{path} is damaged ({reason(e)}): {fix}") from None


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
    damaged: str | None = None      # why the set's files cannot be read; None when they can

    @classmethod
    def of_damaged(cls, path: Path, why: str) -> "FeatureSetInfo":
        name = path.name.removesuffix(".h5").removesuffix(schema.PARTS_SUFFIX)
        return cls(name=name, complete=False, fingerprint="", config={}, n=0, done=0, pooled_shape=(0, 0),
                   damaged=why)


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
    if not (path / "manifest.json").exists():
        raise ValueError("its manifest.json is missing")
    manifest = json.loads((path / "manifest.json").read_text())
    if int(manifest.get("chunk_size", 1)) < 1:
        raise ValueError(f"its manifest has chunk size {manifest['chunk_size']}")
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
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            self.attrs = dict(f.attrs)
            self.split = f["split"][:]
            self.label_sets = list(json.loads(self.attrs["label_sets"]))
            self.stored_folds = sorted((on, int(k)) for on in f["folds"] for k in f["folds"][on])
            self.image_shape = f["images"].shape[1:]
            self.has_sources = "sources" in f
        version = int(self.attrs.get("schema_version", 1))
        if version > schema.SCHEMA_VERSION:
            raise UserError(f"{self.path} was written by a newer cnncodes (store schema {version}, this one reads "
                            f"up to {schema.SCHEMA_VERSION}): upgrade cnncodes")
        self.dataset = str(self.attrs["dataset"])
        self.n = len(self.split)

    @property
    def reingest(self) -> str:
        return f"the store's images and labels cannot be trusted; ingest into a new --store (or delete {self.path})"

    @classmethod
    def open(cls, path) -> "FeatureStore":
        path = Path(path)
        if not schema.data_path(path).exists():
            raise UserError(f"no store at {path}: create it with `cnncodes features --dataset ... --store {path}`")
        return cls(path)

    @property
    def fold_keys(self) -> list[tuple[str, int]]:
        """(on, k) of every fold assignment kept: computed at ingest, or since, on demand."""
        folder = self.path / schema.FOLDS_DIR
        computed = [(p.stem.split("-k")[0], int(p.stem.split("-k")[1])) for p in folder.glob("*-k*.npy")] \
            if folder.exists() else []
        return sorted(set(self.stored_folds) | set(computed))

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
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            return [s.decode() for s in f[f"label_names/{self._label_set(label_set)}"][:]]

    def folds(self, k: int, on: str = "train", split: str | None = None) -> np.ndarray:
        """Seeded stratified k-fold assignment (on the primary label set) over the rows of `on`:
        "train" (the training split) or "all" (every row). Returns a fold index 0..k-1 per row of
        `split`, -1 for rows outside `on`; `split` defaults to `on`, so `folds(k)` lines up row for
        row with `features(split="train")` and `labels(split="train")`, and `folds(k, on="all")`
        with `features()`. Any k from 2 to the smallest class count: an assignment not made at ingest
        is computed the first time it is asked for, saved in the store and reused after."""
        if on not in ("train", "all"):
            raise UserError(f"folds over {on!r}: use on='train' or on='all'")
        return self._fold_assignment(on, int(k))[self.rows(split or on)]

    def _fold_assignment(self, on: str, k: int) -> np.ndarray:
        if (on, k) in self.stored_folds:
            return self._read(self.data_file, f"folds/{on}/{k}", None, lazy=False)
        path = schema.folds_path(self.path, on, k)
        if path.exists():
            try:
                saved = np.load(path, allow_pickle=False)
                if saved.shape == (self.n,) and saved.min() >= -1 and saved.max() < k:
                    return saved
            except DAMAGE:
                pass  # recomputed below: the assignment is a pure function of the stored labels and seed
        member = self.split == 0 if on == "train" else np.ones(self.n, bool)
        primary = self.labels()
        self._check_stratifiable(k, on, primary[member])
        folds = stratified_folds(primary, k, int(self.attrs.get("seed", 0)), member)
        self._save_folds(path, folds)
        return folds

    def _check_stratifiable(self, k: int, on: str, labels: np.ndarray):
        if k < 2:
            raise UserError(f"-k {k}: k-fold needs at least 2 folds")
        classes, counts = np.unique(labels, return_counts=True)
        if len(counts) and counts.min() < k:
            smallest = classes[counts.argmin()]
            raise UserError(f"cannot make {k} stratified folds over {on}: its smallest class, "
                            f"{self.class_names()[smallest]!r}, has {counts.min()} rows; use -k {max(counts.min(), 2)} "
                            f"or fewer" if counts.min() >= 2 else
                            f"cannot make {k} stratified folds over {on}: class {self.class_names()[smallest]!r} "
                            f"has {counts.min()} row")

    def _save_folds(self, path: Path, folds: np.ndarray):
        """Atomically, under the store's lock; a read-only store just recomputes them next time."""
        try:
            path.parent.mkdir(exist_ok=True)
            with open(path.parent / ".lock", "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                with open(tmp, "wb") as f:
                    np.save(f, folds)
                os.replace(tmp, path)
        except OSError:
            pass

    def sources(self, split: str | None = None) -> np.ndarray | None:
        """Where each row came from (a file's path in its folder or archive, `data_batch_3[17]`, ...),
        aligned with the other accessors; None for stores made before cnncodes recorded sources."""
        if not self.has_sources:
            return None
        return np.array([s.decode("utf-8", "replace") for s in self._read(self.data_file, "sources", split, False)])

    def images(self, split: str | None = None, lazy: bool = False):
        return self._read(self.data_file, "images", split, lazy)

    def image_rows(self, start: int, stop: int) -> np.ndarray:
        """Images of rows start..stop-1 in store order: what the extractor streams, chunk by chunk."""
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            return f["images"][start:stop]

    # -- feature sets -----------------------------------------------------------------------------------
    def feature_sets(self) -> list[FeatureSetInfo]:
        """Every feature set, complete or in progress; one whose files cannot be read is listed with
        `damaged` set, so it never hides the others."""
        folder = schema.features_dir(self.path)
        paths = sorted(folder.glob("*.h5")) + sorted(p for p in folder.glob(f"*{schema.PARTS_SUFFIX}") if p.is_dir())
        out = []
        for p in paths:
            try:
                out.append(read_feature_set_info(p))
            except (*DAMAGE, json.JSONDecodeError) as e:
                out.append(FeatureSetInfo.of_damaged(p, reason(e)))
        return out

    def feature_set(self, name: str | None = None) -> FeatureSetInfo:
        """The named complete feature set; without a name, the only complete one."""
        sets = self.feature_sets()
        if not sets:
            raise UserError(f"{self.path} has no feature sets yet: run `cnncodes features --store {self.path} ...` first")
        complete = [s for s in sets if s.complete]
        names = ", ".join(s.name for s in complete) or "none"
        if name is None:
            if len(complete) == 1:
                return complete[0]
            raise UserError(f"{self.path} has {len(complete)} complete feature sets ({names}): choose one with --features NAME")
        for s in sets:
            if s.name == name:
                if s.damaged:
                    raise DamagedError(f"feature set {name} is damaged ({s.damaged}): {self.rebuild(name)}")
                if not s.complete:
                    raise UserError(f"feature set {name} is incomplete ({s.done}/{s.n} rows): re-run `cnncodes features` to finish it")
                return s
        raise UserError(f"no feature set {name!r} in {self.path} (complete: {names})")

    def rebuild(self, name: str) -> str:
        return f"re-run `cnncodes features` with the options that made {name}, which rebuilds it"

    def features(self, name: str | None = None, split: str | None = None, kind: str = "pooled", lazy: bool = False):
        info = self.feature_set(name)
        if kind == "spatial" and info.spatial_shape is None:
            raise UserError(f"feature set {info.name} has no spatial maps: extract with --spatial to store them")
        return self._read(schema.feature_path(self.path, info.name), kind, split, lazy)

    def _read(self, path, key, split, lazy):
        rows = self.rows(split)
        fix = self.reingest if Path(path) == self.data_file else self.rebuild(Path(path).stem)
        with reading(path, fix):
            if lazy:
                return dask_array(path, key)[rows]
            with h5py.File(path, "r") as f:
                return f[key][rows]

    def check(self) -> dict[str, str | None]:
        """Reads every stored byte once: file name -> None when sound, else why it is damaged."""
        files = [self.data_file] + [schema.feature_path(self.path, s.name) for s in self.feature_sets() if s.complete]
        out = {}
        for path in files:
            try:
                read_everything(path)
                out[str(path.relative_to(self.path))] = None
            except DAMAGE as e:
                out[str(path.relative_to(self.path))] = reason(e)
        for s in self.feature_sets():
            if s.damaged:
                out[f"{schema.FEATURES_DIR}/{s.name}"] = s.damaged
        return out

    def summary(self) -> dict:
        return {
            "store": str(self.path), "dataset": self.dataset, "source": str(self.attrs.get("source", "")),
            "images": {"count": self.n, "shape": list(self.image_shape), "dtype": "uint8"},
            "splits": self.counts(),
            "label_sets": {ls: len(self.class_names(ls)) for ls in self.label_sets},
            "folds": [f"{on}:{k}" for on, k in self.fold_keys],
            "sources": self.has_sources,
            "skipped": int(self.attrs.get("skipped", 0)),
            "content_sha256": str(self.attrs["content_sha256"]),
            "feature_sets": [
                {"name": s.name, "damaged": s.damaged} if s.damaged else
                {"name": s.name, "complete": s.complete, "rows": f"{s.done}/{s.n}",
                 "shape": list(s.pooled_shape), "dtype": s.pooled_dtype,
                 "spatial_shape": list(s.spatial_shape) if s.spatial_shape else None,
                 "fingerprint": s.fingerprint, "seconds": round(s.seconds, 2), "config": s.config}
                for s in self.feature_sets()],
        }


def read_everything(path: Path, rows_per_read: int = 4096):
    """Reads every dataset of an HDF5 file in slices, so every chunk's checksum is verified."""
    with h5py.File(path, "r") as f:
        datasets = []
        f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        for d in datasets:
            if d.shape == () or len(d) == 0:
                d[()]
                continue
            step = max(1, min(rows_per_read, (64 << 20) // max(1, d[0:1].nbytes)))
            for lo in range(0, len(d), step):
                d[lo:lo + step]
