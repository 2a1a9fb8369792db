"""Writers: the data file written once by ingest, and feature sets committed chunk by chunk.

Crash safety comes from atomic renames, not from HDF5: a file killed mid-write may be unreadable,
so nothing half-written ever carries a final name. A committed chunk is a `.npy` renamed into place;
the feature set's `.h5` appears, complete, only after every chunk is in.
"""
import errno
import fcntl
import hashlib
import io
import json
import os
import shutil
import time
import zlib
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import UserError
from .store import DAMAGE, read_feature_set_info, reason

STRING = h5py.string_dtype("utf-8")


@contextmanager
def store_lock(store: Path, what: str = "ingest"):
    """Held for the whole first ingest of a store: a second process waits for none of it and stops
    before it creates (and so truncates) anything."""
    Path(store).mkdir(parents=True, exist_ok=True)
    with open(Path(store) / f".{what}.lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"{store} is being written by another cnncodes process ({what}); "
                            f"wait for it to finish, then run the same command again") from None
        yield


class DataFileWriter:
    """Appends images to `data.h5.tmp`; `finish` adds labels, split, sources and folds, re-reads the
    file to check it holds what was written, and renames it into place. Create it under `store_lock`."""

    def __init__(self, store: Path, image_shape: tuple, rows_per_chunk: int = 256):
        self.final = schema.data_path(store)
        self.tmp = self.final.with_name(self.final.name + ".tmp")
        self.file = h5py.File(self.tmp, "w")
        self.images = self.file.create_dataset(
            "images", shape=(0, *image_shape), maxshape=(None, *image_shape), dtype=np.uint8,
            chunks=(rows_per_chunk, *image_shape), **schema.CHECKSUM)
        self.content = hashlib.sha256()

    def append(self, images: np.ndarray):
        n = self.images.shape[0]
        self.images.resize(n + len(images), axis=0)
        self.images[n:] = images
        self.content.update(np.ascontiguousarray(images).data)

    def finish(self, *, labels: dict, class_names: dict, split: np.ndarray, folds: dict, attrs: dict,
               skipped: list[str], sources: list[str]):
        f = self.file
        for name, values in labels.items():
            f.create_dataset(f"labels/{name}", data=values.astype(np.int16), chunks=True, **schema.CHECKSUM)
            f.create_dataset(f"label_names/{name}", data=np.array(class_names[name], dtype=object), dtype=STRING)
            self.content.update(values.astype(np.int16).data)
        f.create_dataset("split", data=split.astype(np.uint8), chunks=True, **schema.CHECKSUM)
        f["split"].attrs["names"] = json.dumps(schema.SPLITS)
        self.content.update(split.astype(np.uint8).data)
        f.create_dataset("sources", data=np.array([s.encode("utf-8") for s in sources], dtype=bytes), chunks=True,
                         **schema.CHECKSUM)
        for (on, k), assignment in folds.items():
            f.create_dataset(f"folds/{on}/{k}", data=assignment, chunks=True, **schema.CHECKSUM)
        f.require_group("folds")
        f.create_dataset("skipped", data=np.array(skipped, dtype=object), dtype=STRING)
        f.attrs.update({**attrs, "schema_version": schema.SCHEMA_VERSION, "label_sets": json.dumps(list(labels)),
                        "content_sha256": self.content.hexdigest(), "skipped": len(skipped)})
        f.close()
        self._verify(list(labels))
        os.replace(self.tmp, self.final)

    def _verify(self, label_sets: list[str]):
        """The content digest was computed from memory: recompute it from the file before publishing."""
        h = hashlib.sha256()
        with h5py.File(self.tmp, "r") as f:
            images = f["images"]
            for lo in range(0, len(images), images.chunks[0] * 16):
                h.update(np.ascontiguousarray(images[lo:lo + images.chunks[0] * 16]).data)
            for name in label_sets:
                h.update(f[f"labels/{name}"][:].data)
            h.update(f["split"][:].data)
            written = f.attrs["content_sha256"]
        if h.hexdigest() != written:
            raise RuntimeError(f"{self.tmp} does not hold what was written to it (another process or a disk fault): "
                               f"it was not published; run the same command again")

    def abort(self):
        try:
            self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def existing_fingerprint(store: Path, name: str) -> str | None:
    """The fingerprint a set of this name was made with; None when there is none, or when its files
    are damaged (it is then rebuilt under its name)."""
    for path in (schema.feature_path(store, name), schema.parts_dir(store, name)):
        if path.exists():
            try:
                return read_feature_set_info(path).fingerprint
            except (*DAMAGE, json.JSONDecodeError):
                return None
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


def discard_damaged(store: Path, name: str, log=print) -> bool:
    """Removes a set whose files fail their checks (checksums, truncation, a garbled manifest), so it is
    rebuilt; a sound set is left alone. Returns whether something was removed. Hold the writer lock."""
    final, parts = schema.feature_path(store, name), schema.parts_dir(store, name)
    removed = False
    if final.exists():
        from .store import read_everything
        try:
            read_everything(final)
        except DAMAGE as e:
            log(f"features: {final} is damaged ({reason(e)}): rebuilding it")
            final.unlink()
            removed = True
    if parts.exists():
        try:
            read_feature_set_info(parts)
        except (*DAMAGE, json.JSONDecodeError) as e:
            log(f"features: {parts} is damaged ({reason(e)}): starting it again")
            shutil.rmtree(parts)
            removed = True
    return removed


@contextmanager
def writer_lock(store: Path, name: str):
    """One writer per feature set: a second process on the same set stops instead of interleaving."""
    folder = schema.features_dir(store)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".{name}.lock", "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UserError(f"feature set {name} is being written by another process; wait for it to finish") from None
        yield


class FeatureSetWriter:
    """Commits chunks of a feature set as atomic files and assembles `<name>.h5` when all are in."""

    def __init__(self, store: Path, name: str, fp: str, config: dict, n: int, pooled_dim: int,
                 spatial_shape: tuple | None, chunk_size: int = 512):
        if int(chunk_size) < 1:
            raise UserError(f"--chunk-size {chunk_size}: a chunk holds at least one image")
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
            self._save("spatial", start, spatial.astype(np.float16))
        self._save("pooled", start, pooled.astype(np.float32))

    def drop_damaged_chunks(self, log=print) -> list[int]:
        """Removes committed chunks whose bytes no longer match their CRC (or that lack their spatial
        part), so the run recomputes them; returns their start rows."""
        bad = []
        spatial = schema.chunk_files(self.parts, "spatial")
        for start, (count, path) in sorted(schema.chunk_files(self.parts).items()):
            try:
                self._load(path, count)
                if self.spatial:
                    self._load(spatial[start][1], count)
            except (*DAMAGE, UserError) as e:
                log(f"features: chunk {path.name} of {self.name} is damaged ({reason(e)}): recomputing it")
                path.unlink(missing_ok=True)
                bad.append(start)
        return bad

    def _load(self, path: Path, rows: int) -> np.ndarray:
        data = path.read_bytes()
        crc = path.stem.rsplit("-", 1)[1] if path.stem.count("-") == 2 else None
        if crc is not None and f"{zlib.crc32(data):08x}" != crc:
            raise ValueError("CRC mismatch")
        array = np.load(io.BytesIO(data), allow_pickle=False)
        if len(array) != rows:
            raise ValueError(f"{len(array)} rows, not {rows}")
        return array

    def assemble(self, extra: dict) -> Path:
        chunks = sorted(schema.chunk_files(self.parts).items())
        spatial_files = schema.chunk_files(self.parts, "spatial")
        if sum(c for _, (c, _) in chunks) != self.n:
            raise RuntimeError(f"feature set {self.name}: {sum(c for _, (c, _) in chunks)} of {self.n} rows committed")
        tmp = self.final.with_name(self.final.name + ".tmp")
        m = self.manifest
        try:
            with h5py.File(tmp, "w") as f:
                pooled = f.create_dataset("pooled", shape=(self.n, m["pooled_dim"]), dtype=np.float32,
                                          chunks=(min(self.n, 1024), m["pooled_dim"]), **schema.CHECKSUM)
                if self.spatial:
                    shape = tuple(m["spatial_shape"])
                    spatial = f.create_dataset("spatial", shape=(self.n, *shape), dtype=np.float16,
                                               chunks=(min(self.n, 64), *shape), compression="lzf", shuffle=True,
                                               **schema.CHECKSUM)
                for start, (count, path) in chunks:
                    pooled[start:start + count] = self._checked(path, count)
                    if self.spatial:
                        spatial[start:start + count] = self._checked(spatial_files[start][1], count)
                f.attrs.update({"name": self.name, "fingerprint": m["fingerprint"], "config": json.dumps(m["config"]),
                                "complete": True, "seconds": self.seconds,
                                "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "extra": json.dumps(extra),
                                "schema_version": schema.SCHEMA_VERSION})
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, self.final)
        shutil.rmtree(self.parts)
        return self.final

    def _checked(self, path: Path, rows: int) -> np.ndarray:
        try:
            return self._load(path, rows)
        except DAMAGE as e:
            path.unlink(missing_ok=True)
            raise UserError(f"chunk {path.name} of feature set {self.name} was damaged on disk ({reason(e)}) and "
                            f"was removed: run the same command again to recompute it") from None

    def _save(self, kind: str, start: int, array: np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
        filename = schema.chunk_file(kind, start, len(array), zlib.crc32(data))
        tmp = self.parts / f".{filename}.{os.getpid()}.tmp"
        try:
            tmp.write_bytes(data)
            os.replace(tmp, self.parts / filename)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"the disk holding {self.parts} is full: free space and run the same command again "
                                f"(committed chunks are kept)") from None
            raise

    def _write_manifest(self):
        tmp = self.parts / f".manifest.json.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(self.manifest, indent=1))
        os.replace(tmp, self.parts / "manifest.json")
