"""Writers: the data file written once by ingest, and feature sets committed chunk by chunk.

Crash safety comes from atomic renames, not from HDF5: a file killed mid-write may be unreadable,
so nothing half-written ever carries a final name. A committed chunk is a `.npy` renamed into place;
the feature set's `.h5` appears, complete, only after every chunk is in.
"""
import fcntl
import hashlib
import json
import os
import shutil
import time
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import UserError
from .store import read_feature_set_info

STRING = h5py.string_dtype("utf-8")


class DataFileWriter:
    """Appends images to `data.h5.tmp`; `finish` adds labels, split, folds and renames it into place."""

    def __init__(self, store: Path, image_shape: tuple, rows_per_chunk: int = 256):
        self.final = schema.data_path(store)
        self.tmp = self.final.with_name(self.final.name + ".tmp")
        self.file = h5py.File(self.tmp, "w")
        self.images = self.file.create_dataset(
            "images", shape=(0, *image_shape), maxshape=(None, *image_shape), dtype=np.uint8,
            chunks=(rows_per_chunk, *image_shape))
        self.content = hashlib.sha256()

    def append(self, images: np.ndarray):
        n = self.images.shape[0]
        self.images.resize(n + len(images), axis=0)
        self.images[n:] = images
        self.content.update(np.ascontiguousarray(images).data)

    def finish(self, *, labels: dict, class_names: dict, split: np.ndarray, folds: dict, attrs: dict,
               skipped: list[str]):
        f = self.file
        for name, values in labels.items():
            f.create_dataset(f"labels/{name}", data=values.astype(np.int16))
            f.create_dataset(f"label_names/{name}", data=np.array(class_names[name], dtype=object), dtype=STRING)
            self.content.update(values.astype(np.int16).data)
        f.create_dataset("split", data=split.astype(np.uint8))
        f["split"].attrs["names"] = json.dumps(schema.SPLITS)
        self.content.update(split.astype(np.uint8).data)
        for (on, k), assignment in folds.items():
            f.create_dataset(f"folds/{on}/{k}", data=assignment)
        f.create_dataset("skipped", data=np.array(skipped, dtype=object), dtype=STRING)
        f.attrs.update({**attrs, "schema_version": schema.SCHEMA_VERSION, "label_sets": json.dumps(list(labels)),
                        "content_sha256": self.content.hexdigest(), "skipped": len(skipped)})
        f.close()
        os.replace(self.tmp, self.final)

    def abort(self):
        self.file.close()
        self.tmp.unlink(missing_ok=True)


def existing_fingerprint(store: Path, name: str) -> str | None:
    for path in (schema.feature_path(store, name), schema.parts_dir(store, name)):
        if path.exists():
            return read_feature_set_info(path).fingerprint
    return None


def choose_name(store: Path, base: str, fp: str, explicit: bool) -> str:
    """The name under which this fingerprint lives: `base`, or `base-<fp8>` if `base` holds another."""
    candidates = [base] if explicit else [base, f"{base}-{fp[:8]}"]
    for name in candidates:
        if existing_fingerprint(store, name) in (None, fp):
            return name
    raise UserError(f"feature set {base!r} in {store} was made with a different configuration "
                    f"(fingerprint {existing_fingerprint(store, base)[:12]}, this run {fp[:12]}): "
                    f"pick another --name, or delete {schema.feature_path(store, base)}")


@contextmanager
def writer_lock(store: Path, name: str):
    """One writer per feature set: a second process on the same set stops instead of interleaving."""
    folder = schema.features_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"feature set {name} is being written by another process; wait for it to finish") from None
        yield


class FeatureSetWriter:
    """Commits chunks of a feature set as atomic files and assembles `<name>.h5` when all are in."""

    def __init__(self, store: Path, name: str, fp: str, config: dict, n: int, pooled_dim: int,
                 spatial_shape: tuple | None, chunk_size: int = 512):
        self.store, self.name, self.n = Path(store), name, n
        self.parts = schema.parts_dir(store, name)
        self.final = schema.feature_path(store, name)
        self.parts.mkdir(parents=True, exist_ok=True)
        manifest = self.parts / "manifest.json"
        if manifest.exists():
            self.manifest = json.loads(manifest.read_text())
        else:
            self.manifest = {"name": name, "fingerprint": fp, "config": config, "n": n, "pooled_dim": pooled_dim,
                             "spatial_shape": list(spatial_shape) if spatial_shape else None, "seconds": 0.0,
                             "chunk_size": chunk_size}
            self._write_manifest()
        self.spatial = spatial_shape is not None

    def committed(self) -> dict[int, int]:
        """start row -> row count of every committed chunk."""
        return schema.committed_chunks(self.parts)

    @classmethod
    def existing(cls, store: Path, name: str, fp: str) -> "FeatureSetWriter":
        """The writer of a set another process started (a Dask worker committing its shard)."""
        manifest = json.loads((schema.parts_dir(store, name) / "manifest.json").read_text())
        if manifest["fingerprint"] != fp:
            raise UserError(f"feature set {name} in progress has fingerprint {manifest['fingerprint'][:12]}, not {fp[:12]}")
        spatial = tuple(manifest["spatial_shape"]) if manifest["spatial_shape"] else None
        return cls(store, name, fp, manifest["config"], manifest["n"], manifest["pooled_dim"], spatial,
                   manifest["chunk_size"])

    @property
    def chunk_size(self) -> int:
        """Fixed when the set is started: a resumed run's chunks must line up with the committed ones."""
        return int(self.manifest["chunk_size"])

    @property
    def seconds(self) -> float:
        return float(self.manifest["seconds"])

    def add_seconds(self, seconds: float):
        """Time spent, kept across resumed runs. Only the coordinating process calls this."""
        self.manifest["seconds"] = self.seconds + seconds
        self._write_manifest()

    def commit(self, start: int, pooled: np.ndarray, spatial: np.ndarray | None):
        """Spatial first, pooled last: a chunk counts as committed once its pooled file exists.
        Safe from several processes at once: each chunk is its own file."""
        if self.spatial:
            self._save(schema.chunk_file("spatial", start, len(pooled)), spatial.astype(np.float16))
        self._save(schema.chunk_file("pooled", start, len(pooled)), pooled.astype(np.float32))

    def assemble(self, extra: dict) -> Path:
        chunks = sorted(self.committed().items())
        if sum(c for _, c in chunks) != self.n:
            raise RuntimeError(f"feature set {self.name}: {sum(c for _, c in chunks)} of {self.n} rows committed")
        tmp = self.final.with_name(self.final.name + ".tmp")
        m = self.manifest
        with h5py.File(tmp, "w") as f:
            pooled = f.create_dataset("pooled", shape=(self.n, m["pooled_dim"]), dtype=np.float32,
                                      chunks=(min(self.n, 1024), m["pooled_dim"]))
            if self.spatial:
                shape = tuple(m["spatial_shape"])
                spatial = f.create_dataset("spatial", shape=(self.n, *shape), dtype=np.float16,
                                           chunks=(min(self.n, 64), *shape), compression="lzf", shuffle=True)
            for start, count in chunks:
                pooled[start:start + count] = np.load(self.parts / schema.chunk_file("pooled", start, count))
                if self.spatial:
                    spatial[start:start + count] = np.load(self.parts / schema.chunk_file("spatial", start, count))
            f.attrs.update({"name": self.name, "fingerprint": m["fingerprint"], "config": json.dumps(m["config"]),
                            "complete": True, "seconds": self.seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                            "extra": json.dumps(extra), "schema_version": schema.SCHEMA_VERSION})
        os.replace(tmp, self.final)
        shutil.rmtree(self.parts)
        return self.final

    def _save(self, filename: str, array: np.ndarray):
        tmp = self.parts / f".{filename}.{os.getpid()}.tmp"
        with open(tmp, "wb") as handle:
            np.save(handle, array)
        os.replace(tmp, self.parts / filename)

    def _write_manifest(self):
        tmp = self.parts / f".manifest.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, self.parts / "manifest.json")
