"""Writers: feature sets committed chunk by chunk (data.h5's own writer is data_file.py), and the disk checks
both share.

Crash safety comes from atomic renames, not from HDF5: a file killed mid-write may be unreadable,
so nothing half-written ever carries a final name (outputs.atomic_write). A committed chunk is a `.npy`;
the feature set's `.h5` appears, complete, only after every chunk is in. A full disk shows before HDF5
writes anything (`reserve`), because HDF5 cannot recover from a write that fails for want of space.
"""
import errno
import fcntl
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
from .feature_sets import read_feature_set_info
from .fingerprint import attrs_digest
from .outputs import atomic_write, write_atomically
from .reading import DAMAGE, read_chunk, read_everything, reason
from .sealed import read_sealed, write_sealed
from .store import FeatureStore

MARGIN = 1 << 20  # reserved beyond an estimate: HDF5's own structures, the last partial chunks


def disk_full(error: BaseException) -> bool:
    """Whether an error is a full disk or quota, as the system reports it or as HDF5 words it."""
    full = (errno.ENOSPC, errno.EDQUOT)
    if isinstance(error, OSError) and error.errno in full:
        return True
    return isinstance(error, (OSError, RuntimeError)) and any(f"errno = {n}," in str(error) for n in full)


def reserve(path: Path, nbytes: int):
    """Allocates the disk blocks a file will grow into before HDF5 writes them. After a write that fails
    for want of space HDF5 can neither close the file nor exit cleanly (a segmentation fault), so a full
    disk must show here, as a plain OSError. A file system that cannot allocate ahead is written without."""
    if nbytes <= 0:
        return
    fd = os.open(path, os.O_RDWR)
    try:
        os.posix_fallocate(fd, 0, nbytes)
    except OSError as e:
        if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
            raise
    finally:
        os.close(fd)


def trim(path: Path):
    """Gives back the reserved space the file did not use: HDF5 cuts a file it opened for writing to its
    own end when it closes it."""
    with h5py.File(path, "r+"):
        pass


def seal_attrs(f: h5py.File, attrs: dict):
    """Sets root attributes and seals them all, as h5py reads them back (see `attrs_digest`)."""
    f.attrs.update(attrs)
    f.attrs[schema.ATTRS_SEAL] = attrs_digest(f.attrs)


def close_dropping(f: h5py.File):
    """Closes a file being abandoned without writing what HDF5 still holds for it: emptied, resizable
    datasets drop their unwritten chunks (on a full disk, writing them at close is what HDF5 cannot survive)."""
    if not f:
        return
    try:
        f.visititems(lambda name, d: d.resize(0, axis=0)
                     if isinstance(d, h5py.Dataset) and d.maxshape and d.maxshape[0] is None else None)
    finally:
        f.close()


def existing_fingerprint(store: FeatureStore, name: str) -> str | None:
    """The fingerprint a set of this name was made with; None when there is none, or when its files are
    damaged or it was made from other data (it is then rebuilt under its name)."""
    for path in (schema.feature_path(store.path, name), schema.parts_dir(store.path, name)):
        if path.exists():
            try:
                info = read_feature_set_info(path)
            except (*DAMAGE, json.JSONDecodeError):
                return None
            return None if store.stale(info) else info.fingerprint
    return None


def choose_name(store: FeatureStore, base: str, fp: str, explicit: bool) -> str:
    """The name under which this fingerprint lives: `base`, or `base-<fp8>` if `base` holds another."""
    candidates = [base] if explicit else [base, f"{base}-{fp[:8]}"]
    for name in candidates:
        if existing_fingerprint(store, name) in (None, fp):
            return name
    raise UserError(f"feature set {base!r} in {store.path} was made with a different configuration "
                    f"(fingerprint {existing_fingerprint(store, base)[:12]}, this run {fp[:12]}): "
                    f"pick another --name, or delete {schema.feature_path(store.path, base)}")


def discard_unusable(store: FeatureStore, name: str, log=print) -> bool:
    """Removes a set whose files fail their checks (checksums, truncation, a garbled manifest) or that was
    made from other data than the store now holds, so it is rebuilt; a sound set is left alone. Returns
    whether something was removed. Hold the writer lock."""
    final, parts = schema.feature_path(store.path, name), schema.parts_dir(store.path, name)
    removed = False
    if final.exists():
        try:
            read_everything(final)
            why = store.stale(read_feature_set_info(final))
        except (*DAMAGE, json.JSONDecodeError) as e:
            why = f"is damaged ({reason(e)})"
        if why:
            log(f"features: {final} {why}: rebuilding it")
            final.unlink()
            removed = True
    if parts.exists():
        try:
            why = store.stale(read_feature_set_info(parts))
        except (*DAMAGE, json.JSONDecodeError) as e:
            why = f"is damaged ({reason(e)})"
        if why:
            log(f"features: {parts} {why}: starting it again")
            shutil.rmtree(parts)
            removed = True
    return removed


def bind_to_data(store: FeatureStore, name: str):
    """Records in a complete set made before cnncodes bound sets to their data which data that is. Call it
    only once the set's full fingerprint, which covers the data's content, matched this store's."""
    final = schema.feature_path(store.path, name)
    with atomic_write(final) as (tmp,):  # the set is changed in a copy: a kill midway leaves it as it was
        shutil.copyfile(final, tmp)
        reserve(tmp, final.stat().st_size + MARGIN)
        with h5py.File(tmp, "r+") as f:
            seal_attrs(f, {"data_sha256": store.content, "data_rows": store.n})


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
    """Commits chunks of a feature set as atomic files and assembles `<name>.h5` when all are in.
    `data_sha256`, the content of the data.h5 the codes are computed from, binds the set to it.
    With `views`, the set also keeps that many views' codes of each of the first `train_rows` rows
    (the training split), committed with the chunk they belong to, and with spatial maps their maps too."""

    def __init__(self, store: Path, name: str, fp: str, config: dict, n: int, pooled_dim: int,
                 spatial_shape: tuple | None, chunk_size: int = 512, data_sha256: str | None = None,
                 views: int = 0, train_rows: int = 0):
        if int(chunk_size) < 1:
            raise UserError(f"--chunk-size {chunk_size}: a chunk holds at least one image")
        self.store, self.name, self.n = Path(store), name, n
        self.parts = schema.parts_dir(store, name)
        self.final = schema.feature_path(store, name)
        self.parts.mkdir(parents=True, exist_ok=True)
        manifest = self.parts / "manifest.json"
        if manifest.exists():
            self.manifest = read_sealed(manifest)
        else:
            self.manifest = {"name": name, "fingerprint": fp, "config": config, "n": n, "pooled_dim": pooled_dim,
                             "spatial_shape": list(spatial_shape) if spatial_shape else None, "seconds": 0.0,
                             "chunk_size": chunk_size, "data_sha256": data_sha256, "data_rows": n,
                             "views": views, "train_rows": train_rows}
            self._write_manifest()
        self.spatial = spatial_shape is not None
        self.views = int(self.manifest.get("views", 0))
        self.train_rows = int(self.manifest.get("train_rows", 0))
        self.view_maps = self.spatial and self.views > 0

    def committed(self) -> dict[int, int]:
        """start row -> row count of every committed chunk."""
        return schema.committed_chunks(self.parts)

    @classmethod
    def existing(cls, store: Path, name: str, fp: str) -> "FeatureSetWriter":
        """The writer of a set another process started (a Dask worker committing its shard)."""
        manifest = read_sealed(schema.parts_dir(store, name) / "manifest.json")
        if manifest["fingerprint"] != fp:
            raise UserError(f"feature set {name} in progress has fingerprint {manifest['fingerprint'][:12]}, "
                            f"not {fp[:12]}")
        spatial = tuple(manifest["spatial_shape"]) if manifest["spatial_shape"] else None
        return cls(store, name, fp, manifest["config"], manifest["n"], manifest["pooled_dim"], spatial,
                   manifest["chunk_size"], manifest.get("data_sha256"), manifest.get("views", 0),
                   manifest.get("train_rows", 0))

    @property
    def chunk_size(self) -> int:
        """Fixed when the set is started: a resumed run's chunks must line up with the committed ones."""
        return int(self.manifest["chunk_size"])

    @property
    def seconds(self) -> float:
        return float(self.manifest["seconds"])

    @property
    def views_seconds(self) -> float:
        return float(self.manifest.get("views_seconds", 0.0))  # absent in a set started by older code

    def add_seconds(self, seconds: float, views_seconds: float = 0.0):
        """Time spent (and the views' share of it), kept across resumed runs. Only the coordinating process
        calls this."""
        self.manifest["seconds"] = self.seconds + seconds
        if self.views:
            self.manifest["views_seconds"] = self.views_seconds + views_seconds
        self._write_manifest()

    def view_rows(self, start: int, count: int) -> int:
        """Rows with views (training rows) in the chunk of `count` rows from `start`."""
        return max(0, min(start + count, self.train_rows) - start) if self.views else 0

    def commit(self, start: int, pooled: np.ndarray, spatial: np.ndarray | None, views: np.ndarray | None = None,
               view_maps: np.ndarray | None = None):
        """Spatial and views (and the views' maps) first, pooled last: a chunk counts as committed once its
        pooled file exists, and so only when all of its files are in. Safe from several processes at once: each
        chunk is its own file."""
        if self.spatial:
            self._save("spatial", start, spatial.astype(np.float16))
        if self.view_rows(start, len(pooled)):
            self._save("views", start, views.astype(np.float32))
            if self.view_maps:
                self._save(schema.VIEW_MAPS, start, view_maps.astype(np.float16))
        self._save("pooled", start, pooled.astype(np.float32))

    def drop_damaged_chunks(self, log=print) -> list[int]:
        """Removes committed chunks whose bytes no longer match their CRC (or that lack their spatial or
        views part), so the run recomputes them; returns their start rows."""
        bad = []
        spatial = schema.chunk_files(self.parts, "spatial")
        views = schema.chunk_files(self.parts, "views")
        view_maps = schema.chunk_files(self.parts, schema.VIEW_MAPS)
        for start, (count, path) in sorted(schema.chunk_files(self.parts).items()):
            try:
                read_chunk(path, count)
                if self.spatial:
                    read_chunk(spatial[start][1], count)
                if rows := self.view_rows(start, count):
                    parts = [("views", views)] + ([("views' maps", view_maps)] if self.view_maps else [])
                    for kind, files in parts:
                        if start not in files:
                            raise ValueError(f"its {kind} part is missing")
                        read_chunk(files[start][1], rows)
            except (*DAMAGE, UserError) as e:
                log(f"features: chunk {path.name} of {self.name} is damaged ({reason(e)}): recomputing it")
                path.unlink(missing_ok=True)
                bad.append(start)
        self._drop_uncommitted_parts()
        return bad

    def _drop_uncommitted_parts(self):
        """Spatial and views files of chunks whose pooled file, the commit mark, is not in (a run killed while
        committing, or a chunk dropped above): recomputed, they may differ in their last bits, and so in name."""
        committed = self.committed()
        for kind in ("spatial", "views", schema.VIEW_MAPS):
            for start, path in schema.chunk_paths(self.parts, kind):
                if start not in committed:
                    path.unlink(missing_ok=True)

    def assemble(self, extra: dict) -> Path:
        """Writes `<name>.h5` from the committed chunks and removes them: the set appears complete or not at all."""
        chunks = sorted(schema.chunk_files(self.parts).items())
        view_files = schema.chunk_files(self.parts, "views")
        view_map_files = schema.chunk_files(self.parts, schema.VIEW_MAPS)
        if sum(c for _, (c, _) in chunks) != self.n:
            raise RuntimeError(f"feature set {self.name}: {sum(c for _, (c, _) in chunks)} of {self.n} rows committed")
        if lacking := [start for start, (c, _) in chunks if self.view_rows(start, c) and (
                start not in view_files or (self.view_maps and start not in view_map_files))]:
            raise RuntimeError(f"feature set {self.name}: the chunk at row {lacking[0]} has no views")
        m = self.manifest
        if m.get("data_sha256") and FeatureStore(self.store).content != m["data_sha256"]:
            raise UserError(f"the store was ingested again while feature set {self.name} was being extracted from "
                            f"its data before: run the same command again to extract it from the new data")
        with atomic_write(self.final) as (tmp,):  # renamed into place once complete
            f = h5py.File(tmp, "w", libver=schema.LIBVER)
            try:
                f.flush()
                self._reserve_for_set(tmp)
                self._fill(f, chunks, extra)
                f.flush()
                f.close()
                trim(tmp)
            except BaseException:
                try:
                    close_dropping(f)
                except Exception:
                    pass  # a file HDF5 cannot close is removed all the same
                raise
        shutil.rmtree(self.parts)
        return self.final

    def _reserve_for_set(self, tmp: Path):
        m = self.manifest
        shape = tuple(m["spatial_shape"]) if self.spatial else ()
        row_bytes = 4 * m["pooled_dim"] + 2 * int(np.prod(shape))
        try:
            reserve(tmp, (self.n + self.train_rows * self.views) * row_bytes * 17 // 16 + MARGIN)
        except OSError as e:
            if disk_full(e):
                raise UserError(f"the disk holding {self.final.parent} is too full to assemble feature set "
                                f"{self.name}: free space and run the same command again (committed chunks "
                                f"are kept)") from None
            raise

    def _fill(self, f: h5py.File, chunks: list, extra: dict):
        """The set's datasets, each chunk's rows checked as they are copied in, and its sealed attributes."""
        m, n, train_rows = self.manifest, self.n, self.train_rows
        shape = tuple(m["spatial_shape"]) if self.spatial else ()
        spatial_files = schema.chunk_files(self.parts, "spatial")
        view_files = schema.chunk_files(self.parts, "views")
        view_map_files = schema.chunk_files(self.parts, schema.VIEW_MAPS)
        pooled = f.create_dataset("pooled", shape=(n, m["pooled_dim"]), maxshape=(None, m["pooled_dim"]),
                                  dtype=np.float32, chunks=(min(n, 1024), m["pooled_dim"]), **schema.CHECKSUM)
        if self.spatial:
            spatial = f.create_dataset("spatial", shape=(n, *shape), maxshape=(None, *shape), dtype=np.float16,
                                       chunks=(min(n, 64), *shape), compression="lzf", shuffle=True,
                                       **schema.CHECKSUM)
        if self.views:  # chunked by row, every view of a row together, chunks about as large as pooled's
            shape_v = (train_rows, self.views, m["pooled_dim"])
            views = f.create_dataset("views", shape=shape_v, maxshape=(None, *shape_v[1:]), dtype=np.float32,
                                     chunks=(max(1, min(train_rows, 1024 // self.views)), *shape_v[1:]),
                                     **schema.CHECKSUM)
        if self.view_maps:  # as the maps: a chunk of rows, every view of each together
            shape_m = (train_rows, self.views, *shape)
            view_maps = f.create_dataset(schema.VIEW_MAPS, shape=shape_m, maxshape=(None, *shape_m[1:]),
                                         dtype=np.float16,
                                         chunks=(max(1, min(train_rows, 64 // self.views)), *shape_m[1:]),
                                         compression="lzf", shuffle=True, **schema.CHECKSUM)
        for start, (count, path) in chunks:
            pooled[start:start + count] = self._checked(path, count)
            if self.spatial:
                spatial[start:start + count] = self._checked(spatial_files[start][1], count)
            if rows := self.view_rows(start, count):
                views[start:start + rows] = self._checked(view_files[start][1], rows)
                if self.view_maps:
                    view_maps[start:start + rows] = self._checked(view_map_files[start][1], rows)
        seal_attrs(f, {"name": self.name, "fingerprint": m["fingerprint"], "config": json.dumps(m["config"]),
                       "complete": True, "seconds": self.seconds, "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
                       "extra": json.dumps(extra), "schema_version": schema.SCHEMA_VERSION,
                       **({"data_sha256": m["data_sha256"], "data_rows": m["data_rows"]}
                          if m.get("data_sha256") else {})})

    def _checked(self, path: Path, rows: int) -> np.ndarray:
        try:
            return read_chunk(path, rows)
        except DAMAGE as e:
            path.unlink(missing_ok=True)
            raise UserError(f"chunk {path.name} of feature set {self.name} was damaged on disk ({reason(e)}) and "
                            f"was removed: run the same command again to recompute it") from None

    def _save(self, kind: str, start: int, array: np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, array)
        data = buffer.getvalue()
        filename = schema.chunk_file(kind, start, len(array), zlib.crc32(data))
        try:
            write_atomically(self.parts / filename, data)
        except OSError as e:
            if e.errno in (errno.ENOSPC, errno.EDQUOT):
                raise UserError(f"the disk holding {self.parts} is full: free space and run the same command again "
                                f"(committed chunks are kept)") from None
            raise

    def _write_manifest(self):
        write_sealed(self.parts / "manifest.json", self.manifest)
