"""A feature set as the store lists it: its info (`FeatureSetInfo`), read from a finished `<name>.h5` or a
`<name>.parts/` folder still being written, and the reads that check a set in progress."""
import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py

from . import schema
from .reading import check_attrs, read_chunk
from .sealed import read_sealed


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
    data_sha256: str | None = None  # the binding: content of the data.h5 it was made from (None: made before 0.3)
    data_rows: int | None = None    # ... and its row count
    path: Path | None = None        # its <name>.h5 or <name>.parts
    parts: list | None = None       # a concatenation `A+B`: the stored sets whose codes it joins, in order
    views: int = 0                  # augmented views kept of each training row's codes (0: none)

    @classmethod
    def of_damaged(cls, path: Path, why: str) -> "FeatureSetInfo":
        name = path.name.removesuffix(".h5").removesuffix(schema.PARTS_SUFFIX)
        return cls(name=name, complete=False, fingerprint="", config={}, n=0, done=0, pooled_shape=(0, 0),
                   damaged=why, path=path)


def read_feature_set_info(path: Path) -> FeatureSetInfo:
    """Info of a complete `<name>.h5`, or of a `<name>.parts/` folder still being written."""
    path = Path(path)
    if path.suffix == ".h5":
        with h5py.File(path, "r") as f:
            a = check_attrs(f.attrs)
            rows = f["pooled"].shape[0]
            spatial = f["spatial"].shape if "spatial" in f else None
            if spatial is not None and spatial[0] != rows:
                raise ValueError(f"its spatial maps have {spatial[0]} rows, its codes {rows}")
            views = f["views"].shape if "views" in f else (0, 0, 0)
            if "views" in f and (len(views) != 3 or views[0] > rows or views[2] != f["pooled"].shape[1]):
                raise ValueError(f"its views {views} do not fit its codes {f['pooled'].shape}")
            if (spatial is not None and "views" in f) != (schema.VIEW_MAPS in f) or (
                    schema.VIEW_MAPS in f and f[schema.VIEW_MAPS].shape != (*views[:2], *spatial[1:])):
                held = f[schema.VIEW_MAPS].shape if schema.VIEW_MAPS in f else "missing"
                raise ValueError(f"its views' maps ({held}) do not fit its views {views} and maps {spatial}")
            return FeatureSetInfo(
                name=a["name"], complete=bool(a.get("complete", False)), fingerprint=a["fingerprint"],
                config=json.loads(a["config"]), n=rows, done=rows,
                pooled_shape=f["pooled"].shape, pooled_dtype=str(f["pooled"].dtype),
                spatial_shape=spatial, seconds=float(a.get("seconds", 0.0)),
                extra=json.loads(a.get("extra", "{}")), data_sha256=a.get("data_sha256"),
                data_rows=int(a["data_rows"]) if "data_rows" in a else None, path=path, views=views[1])
    if not (path / "manifest.json").exists():
        raise ValueError("its manifest.json is missing")
    manifest = read_sealed(path / "manifest.json")
    if int(manifest.get("chunk_size", 1)) < 1:
        raise ValueError(f"its manifest has chunk size {manifest['chunk_size']}")
    done = sum(schema.committed_chunks(path).values())
    return FeatureSetInfo(
        name=manifest["name"], complete=False, fingerprint=manifest["fingerprint"],
        config=manifest["config"], n=manifest["n"], done=done,
        pooled_shape=(manifest["n"], manifest["pooled_dim"]),
        spatial_shape=tuple(manifest["spatial_shape"]) if manifest.get("spatial_shape") else None,
        seconds=float(manifest.get("seconds", 0.0)), data_sha256=manifest.get("data_sha256"),
        data_rows=manifest.get("data_rows"), path=path, views=int(manifest.get("views", 0)))


STALE = "stale:"  # how check() marks a set that is sound but belongs to other data than data.h5


def read_parts(s: FeatureSetInfo):
    """Reads every committed chunk of a set in progress, each checked against its CRC and row count."""
    spatial = schema.chunk_files(s.path, "spatial")
    views = schema.chunk_files(s.path, "views")
    view_maps = schema.chunk_files(s.path, schema.VIEW_MAPS)
    train_rows = int(read_sealed(s.path / "manifest.json").get("train_rows", 0)) if s.views else 0
    for start, (count, path) in schema.chunk_files(s.path).items():
        read_chunk(path, count)
        if s.spatial_shape is not None:
            if start not in spatial:
                raise ValueError(f"chunk {path.name} has no spatial part")
            read_chunk(spatial[start][1], count)
        if min(start + count, train_rows) > start:
            if start not in views:
                raise ValueError(f"chunk {path.name} has no views part")
            if s.spatial_shape is not None and start not in view_maps:
                raise ValueError(f"chunk {path.name} has no views' maps part")
    for count, path in (*views.values(), *view_maps.values()):
        read_chunk(path, count)


def view_identity(s: FeatureSetInfo) -> tuple:
    """What decides a set's views: sets alike in it hold the views of the same crops, row for row."""
    return s.views, json.dumps(s.config.get("augmentation"), sort_keys=True), s.config.get("seed")
