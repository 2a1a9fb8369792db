"""Read access to a store directory: `FeatureStore.open(DIR)` hands out numpy or dask arrays."""
import functools
import hashlib
import json
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .check import check_store
from .errors import DamagedError, UserError
from .feature_sets import FeatureSetInfo, read_feature_set_info, view_identity
from .fingerprint import NAMES_SEAL, SOURCE_KEYS, SOURCES_SEAL, check_text, name_keys
from .folds import fold_assignment
from .reading import DAMAGE, check_attrs, dask_array, reading, reason


def resolve_name(name: str, names, what: str) -> str | None:
    """`name` as stored: itself, else the one stored name equal to it ignoring case (names ignore case
    elsewhere too); None when there is none."""
    if name in names:
        return name
    matches = sorted({n for n in names if n.casefold() == name.casefold()})
    if len(matches) > 1:
        raise UserError(f"{what} {name!r} matches {', '.join(map(repr, matches))}, which differ only in case: "
                        f"give the exact name")
    return matches[0] if matches else None


def store_path(path) -> Path:
    """A store's folder; never an empty path, which Path() would read as the current folder."""
    if not str(path).strip():
        raise UserError("the store path is empty: give a folder, e.g. --store store/mydata")
    return Path(path)


class FeatureStore:
    """One data set's images, labels, split, folds and feature sets. Opens files per call, read only."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.data_file = schema.data_path(self.path)
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            self.attrs = dict(f.attrs)
            self.version = int(self.attrs.get("schema_version", 1))
            if self.version > schema.SCHEMA_VERSION:  # before its seal, which a newer schema may make otherwise
                raise UserError(f"{self.path} was written by a newer cnncodes (store schema {self.version}, this "
                                f"one reads up to {schema.SCHEMA_VERSION}): upgrade cnncodes")
            check_attrs(self.attrs)
            self.split = f["split"][:]
            self.label_sets = list(json.loads(self.attrs["label_sets"]))
            # read (and so checksummed) on open: a damaged class name stops a command before its work
            check_text(f, self.attrs, NAMES_SEAL, name_keys(self.label_sets))
            self.names = {ls: [s.decode("utf-8", "replace") for s in f[f"label_names/{ls}"][:]]
                          for ls in self.label_sets}
            self.stored_folds = sorted((on, int(k)) for on in f["folds"] for k in f["folds"][on])
            self.image_shape = f["images"].shape[1:]
            self.has_sources = "sources" in f
            if len(f["images"]) != len(self.split):
                raise DamagedError(f"{self.data_file} is damaged ({len(f['images'])} images, {len(self.split)} "
                                   f"split codes): {self.reingest}")
        self.dataset = str(self.attrs["dataset"])
        self.content = str(self.attrs["content_sha256"])
        self.n = len(self.split)

    @property
    def reingest(self) -> str:
        return ("the store's images and labels cannot be trusted; ingest into a new --store, or again into this "
                "one with `cnncodes features --reingest`")

    @classmethod
    def open(cls, path) -> "FeatureStore":
        path = store_path(path)
        if not schema.data_path(path).exists():
            raise UserError(f"no store at {path}: create it with `cnncodes features --dataset ... --store {path}`")
        return cls(path)

    @property
    def fold_keys(self) -> list[tuple[str, int]]:
        """(on, k) of every fold assignment kept: computed at ingest, or since, on demand."""
        return sorted(set(self.stored_folds) | set(schema.fold_files(self.path)))

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

    def canonical_label_set(self, name: str | None) -> str:
        """The label set as stored: None is the primary one, and a name matches in any case ("CLASS")."""
        if name is None:
            return self.primary_label
        found = resolve_name(name, self.label_sets, "label set")
        if found is None:
            raise UserError(f"unknown label set {name!r} in {self.path}: it has {', '.join(self.label_sets)}")
        return found

    def labels(self, label_set: str | None = None, split: str | None = None, lazy: bool = False):
        key = f"labels/{self.canonical_label_set(label_set)}"
        return self._read(self.data_file, key, split, lazy)

    def class_names(self, label_set: str | None = None) -> list[str]:
        return list(self.names[self.canonical_label_set(label_set)])

    def folds(self, k: int, on: str = "train", split: str | None = None) -> np.ndarray:
        """Seeded stratified k-fold assignment (on the primary label set) over the rows of `on`:
        "train" (the training split) or "all" (every row). Returns a fold index 0..k-1 per row of
        `split`, -1 for rows outside `on`; `split` defaults to `on`, so `folds(k)` lines up row for
        row with `features(split="train")` and `labels(split="train")`, and `folds(k, on="all")`
        with `features()`. Any k from 2 to the smallest class count: an assignment not made at ingest
        is computed the first time it is asked for, saved in the store and reused after."""
        if on not in ("train", "all"):
            raise UserError(f"folds over {on!r}: use on='train' or on='all'")
        return fold_assignment(self, on, int(k))[self.rows(split or on)]


    def sources(self, split: str | None = None) -> np.ndarray | None:
        """Where each row came from (a file's path in its folder or archive, `data_batch_3[17]`, ...),
        aligned with the other accessors; None for stores made before cnncodes recorded sources."""
        if not self.has_sources:
            return None
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            check_text(f, self.attrs, SOURCES_SEAL, SOURCE_KEYS)
            rows = f["sources"][self.rows(split)]
        return np.array([s.decode("utf-8", "replace") for s in rows])

    def source_listing(self) -> dict | None:
        """The source's image files as ingest found them (name -> [size, modification time in ns]), to say
        what changed since; None for sources that are not folders, and stores made before cnncodes kept it."""
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            return json.loads(f["source_listing"][:].tobytes()) if "source_listing" in f else None

    def images(self, split: str | None = None, lazy: bool = False):
        return self._read(self.data_file, "images", split, lazy)

    def image_rows(self, start: int, stop: int) -> np.ndarray:
        """Images of rows start..stop-1 in store order: what the extractor streams, chunk by chunk."""
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            return f["images"][start:stop]

    def images_at(self, rows, split: str | None = None) -> np.ndarray:
        """Images of the given rows of `split` (any order, repeats allowed), read without reading the split whole:
        the report's thumbnails."""
        first = self.rows(split).start or 0
        wanted, order = np.unique(first + np.asarray(rows, dtype=np.int64), return_inverse=True)
        with reading(self.data_file, self.reingest), h5py.File(self.data_file, "r") as f:
            return f["images"][wanted][order.reshape(-1)] if len(wanted) else f["images"][:0]

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
        """The named complete feature set (its name in any case); without a name, the only complete one.
        Its `.name` is the stored name. A set made from other data than this data.h5 is refused.
        `A+B` names the concatenation of sets A and B (see `_concatenation`)."""
        sets = self.feature_sets()
        if not sets:
            raise UserError(f"{self.path} has no feature sets yet: "
                            f"run `cnncodes features --store {self.path} ...` first")
        if name is None:
            complete = [s for s in sets if s.complete and not self.stale(s)]  # what can be chosen
            if len(complete) == 1:
                return self._usable(complete[0])
            if not complete and len(sets) == 1:  # the one set there is: why it cannot be used
                return self._usable(sets[0])
            raise UserError(f"{self.path} has {len(complete)} complete feature sets ({self._complete_names(sets)}): "
                            f"choose one with --features NAME")
        if "+" in name and resolve_name(name, [s.name for s in sets], "feature set") is None:
            return self._concatenation(name, sets)  # a set stored under a name with + (before joins existed) is itself
        return self._named(name, sets)

    def _complete_names(self, sets: list[FeatureSetInfo]) -> str:
        return ", ".join(s.name for s in sets if s.complete and not self.stale(s)) or "none"

    def _named(self, name: str, sets: list[FeatureSetInfo]) -> FeatureSetInfo:
        found = resolve_name(name, [s.name for s in sets], "feature set")
        if found is None:
            raise UserError(f"no feature set {name!r} in {self.path} (complete: {self._complete_names(sets)})")
        return self._usable(next(s for s in sets if s.name == found))

    def _concatenation(self, name: str, sets: list[FeatureSetInfo]) -> FeatureSetInfo:
        """`A+B+...`: the codes of complete sets A, B, ... side by side, row for row (every usable set has one row
        per stored image, in store order, so rows align). Nothing is written: `features()` joins them as it reads."""
        names = [part.strip() for part in name.split("+")]
        if "" in names:
            raise UserError(f"--features {name!r} has an empty part: join set names with +, e.g. --features A+B")
        parts = [self._named(part, sets) for part in names]
        stored = [p.name for p in parts]
        if len(set(stored)) < len(stored):
            raise UserError(f"--features {name!r} names {next(n for n in stored if stored.count(n) > 1)} twice: "
                            f"join each set once")
        fingerprint = hashlib.sha256("+".join(p.fingerprint for p in parts).encode()).hexdigest()
        views = parts[0].views if len({view_identity(p) for p in parts}) == 1 else 0  # views of the same crops
        return FeatureSetInfo(name="+".join(stored), complete=True, fingerprint=fingerprint,
                              config={"parts": [p.config for p in parts]}, n=parts[0].n, done=parts[0].n,
                              pooled_shape=(parts[0].n, sum(p.pooled_shape[1] for p in parts)),
                              seconds=sum(p.seconds for p in parts), extra={"parts": stored},
                              data_sha256=self.content, data_rows=parts[0].n, parts=stored, views=views)

    def _usable(self, s: FeatureSetInfo) -> FeatureSetInfo:
        if s.damaged:
            raise DamagedError(f"feature set {s.name} is damaged ({s.damaged}): {self.rebuild(s.name)}")
        if not s.complete:
            raise UserError(f"feature set {s.name} is incomplete ({s.done}/{s.n} rows): re-run `cnncodes features` "
                            f"to finish it")
        if why := self.stale(s):
            raise UserError(f"feature set {s.name} {why}: {self.rebuild(s.name)}")
        return s

    def stale(self, s: FeatureSetInfo) -> str | None:
        """Why a feature set does not belong to this data.h5 (its file rewritten, or made from other data); None
        when it does, or when it cannot be told (a set made before cnncodes bound sets to their data, whose row
        count matches)."""
        if s.data_rows is not None and s.data_rows != s.n:
            return f"has {s.n} rows but was made with {s.data_rows}: its file was rewritten since"
        return self.of_other_data(s)

    def of_other_data(self, s: FeatureSetInfo) -> str | None:
        """Why a sound feature set was made from other data than this data.h5 (the store ingested again since):
        stale, not damaged; None when it was not."""
        if s.data_sha256 is not None and s.data_sha256 != self.content:
            return (f"was made from other data than this store's data.h5 (content {s.data_sha256[:12]}, now "
                    f"{self.content[:12]}: the store was ingested again since)")
        if s.n != self.n and (s.data_rows is None or s.data_rows == s.n):
            return f"has {s.n} rows, but data.h5 has {self.n}: it was made from other data"
        return None

    def rebuild(self, name: str) -> str:
        return f"re-run `cnncodes features` with the options that made {name}, which rebuilds it"

    def features(self, name: str | None = None, split: str | None = None, kind: str = "pooled", lazy: bool = False):
        info = self.feature_set(name)
        if info.parts and kind == "spatial":
            raise UserError(f"{info.name} joins pooled codes; spatial maps are read from one set: name one set")
        if info.parts:
            arrays = [self._read(schema.feature_path(self.path, part), kind, split, lazy) for part in info.parts]
            if lazy:
                import dask.array as da

                return da.concatenate(arrays, axis=1)
            return np.concatenate(arrays, axis=1)
        if kind == "spatial" and info.spatial_shape is None:
            raise UserError(f"feature set {info.name} has no spatial maps: extract with --spatial to store them")
        return self._read(schema.feature_path(self.path, info.name), kind, split, lazy)

    def views(self, name: str | None = None, lazy: bool = False, kind: str = "pooled"):
        """The codes of the augmented views of every training row: (training rows, views, dim) float32, rows in
        store order, so row i lines up with row i of `features(name, split="train")` and `labels(split="train")`.
        With `lazy`, a dask array chunked by row, so memory stays flat when the views exceed it. `A+B` joins the
        views of sets whose views are of the same crops (one run with --layer A,B, or the same --views and --seed).
        `kind="spatial"`: the views' maps, (training rows, views, h, w, c) float16, of a set with --spatial."""
        if kind not in ("pooled", "spatial"):
            raise ValueError(f"kind {kind!r}: pooled or spatial")
        info = self.feature_set(name)
        if kind == "spatial" and (info.parts or info.spatial_shape is None):
            raise UserError(f"{info.name} has no views' maps: they are read from one set extracted with --spatial "
                            f"--views K")
        parts = [self.feature_set(part) for part in info.parts] if info.parts else [info]
        if lacking := next((p for p in parts if not p.views), None):
            raise UserError(f"feature set {lacking.name} has no views: extract it with --views K to store them")
        if len({view_identity(p) for p in parts}) > 1:
            raise UserError(f"{info.name} joins sets whose views are of different crops (other --views, --seed or "
                            f"augmentation): extract them in one run, --layer A,B --views K")
        key = schema.VIEW_MAPS if kind == "spatial" else "views"
        arrays = [self._read(schema.feature_path(self.path, p.name), key, None, lazy) for p in parts]
        train = self.counts()["train"]
        for p, a in zip(parts, arrays):
            if a.shape[0] != train:
                raise DamagedError(f"feature set {p.name} has views of {a.shape[0]} rows, but data.h5 has {train} "
                                   f"training rows: {self.rebuild(p.name)}")
        if len(arrays) == 1:
            return arrays[0]
        if lazy:
            import dask.array as da

            return da.concatenate(arrays, axis=2)
        return np.concatenate(arrays, axis=2)

    def _read(self, path, key, split, lazy):
        rows = self.rows(split)
        fix = self.reingest if Path(path) == self.data_file else self.rebuild(Path(path).stem)
        with reading(path, fix):
            if lazy:  # read later, chunk by chunk: each read is guarded as this one
                return dask_array(path, key, guard=functools.partial(reading, path, fix))[rows]
            with h5py.File(path, "r") as f:
                if path == self.data_file and f.attrs.get("content_sha256") != self.content:
                    raise UserError(f"{self.data_file} was replaced while this command ran (ingested again?): what "
                                    f"it read before belongs to other data; run the command again")
                return f[key][rows]

    def check(self) -> dict[str, str | None]:
        """Reads every stored byte once (reading.check_store): path relative to the store -> None when sound,
        else why it is damaged, stale or cannot be verified."""
        return check_store(self)


    def summary(self) -> dict:
        return {
            "store": str(self.path), "dataset": self.dataset, "source": str(self.attrs.get("source", "")),
            "images": {"count": self.n, "shape": list(self.image_shape), "dtype": "uint8"},
            "splits": self.counts(),
            "label_sets": {ls: len(self.class_names(ls)) for ls in self.label_sets},
            "folds": [f"{on}:{k}" for on, k in self.fold_keys],
            "sources": self.has_sources,
            "skipped": int(self.attrs.get("skipped", 0)),
            "content_sha256": self.content,
            "feature_sets": [
                {"name": s.name, "damaged": s.damaged} if s.damaged else
                {"name": s.name, "complete": s.complete, "rows": f"{s.done}/{s.n}",
                 "shape": list(s.pooled_shape), "dtype": s.pooled_dtype,
                 "spatial_shape": list(s.spatial_shape) if s.spatial_shape else None, "views": s.views,
                 "fingerprint": s.fingerprint, "seconds": round(s.seconds, 2), "config": s.config,
                 "bound": s.data_sha256 is not None, "stale": self.of_other_data(s),
                 **({"damaged": why} if not self.of_other_data(s) and (why := self.stale(s)) else {})}
                for s in self.feature_sets()],
        }


