"""data.h5, written once by ingest: images appended chunk by chunk, then labels, split, sources and folds,
re-read and checked before it is renamed into place, under the store's lock."""
import fcntl
import hashlib
import json
from contextlib import contextmanager
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import UserError
from .fingerprint import NAMES_SEAL, SOURCE_KEYS, SOURCES_SEAL, content_digest, name_keys, text_digest
from .outputs import atomic_write
from .reading import check_attrs
from .writers import close_dropping, reserve, seal_attrs, trim


def text_array(strings) -> np.ndarray:
    """Strings as fixed-length UTF-8, which HDF5 can checksum (variable-length strings it cannot)."""
    return np.array([s.encode("utf-8", "backslashreplace") for s in strings], dtype=bytes)


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
    """Appends images to a staged data.h5 (outputs.atomic_write); `finish` adds labels, split, sources and
    folds, re-reads the file to check it holds what was written, and renames it into place (replacing an older
    data.h5 only then). Create it under `store_lock`, with `reserve_bytes` at least what the file will take."""

    def __init__(self, store: Path, image_shape: tuple, rows_per_chunk: int = 256, reserve_bytes: int = 0):
        self.final = schema.data_path(store)
        self.writing = atomic_write(self.final)
        (self.tmp,) = self.writing.paths
        try:
            self.file = h5py.File(self.tmp, "w", libver=schema.LIBVER)
        except BaseException:
            self.writing.discard()
            raise
        try:
            self.file.flush()  # HDF5's own start of the file is written before the rest is reserved
            reserve(self.tmp, reserve_bytes)
            self.images = self.file.create_dataset(
                "images", shape=(0, *image_shape), maxshape=(None, *image_shape), dtype=np.uint8,
                chunks=(rows_per_chunk, *image_shape), **schema.CHECKSUM)
        except BaseException:
            self.abort()
            raise
        self.content = hashlib.sha256()

    def append(self, images: np.ndarray):
        n = self.images.shape[0]
        self.images.resize(n + len(images), axis=0)
        self.images[n:] = images
        self.content.update(np.ascontiguousarray(images).data)

    def finish(self, *, labels: dict, class_names: dict, split: np.ndarray, folds: dict, attrs: dict,
               skipped: list[str], sources: list[str], listing: bytes | None = None):
        """`listing`: the source's files as ingest found them (JSON), kept to say later what changed."""
        f = self.file
        for name, values in labels.items():
            f.create_dataset(f"labels/{name}", data=values.astype(np.int16), chunks=True, **schema.CHECKSUM)
            f.create_dataset(f"label_names/{name}", data=text_array(class_names[name]), chunks=True,
                             **schema.CHECKSUM)
            self.content.update(values.astype(np.int16).data)
        f.create_dataset("split", data=split.astype(np.uint8), chunks=True, **schema.CHECKSUM)
        f["split"].attrs["names"] = json.dumps(schema.SPLITS)
        self.content.update(split.astype(np.uint8).data)
        f.create_dataset("sources", data=text_array(sources), chunks=True, **schema.CHECKSUM)
        for (on, k), assignment in folds.items():
            f.create_dataset(f"folds/{on}/{k}", data=assignment, chunks=True, **schema.CHECKSUM)
        f.require_group("folds")
        f.create_dataset("skipped", data=text_array(skipped), chunks=True, **schema.CHECKSUM)
        if listing is not None:
            f.create_dataset("source_listing", data=np.frombuffer(listing, np.uint8), chunks=True,
                             compression="gzip", **schema.CHECKSUM)
        seal_attrs(f, {**attrs, "schema_version": schema.SCHEMA_VERSION, "label_sets": json.dumps(list(labels)),
                       "content_sha256": self.content.hexdigest(), "skipped": len(skipped),
                       NAMES_SEAL: text_digest(f, name_keys(labels)), SOURCES_SEAL: text_digest(f, SOURCE_KEYS)})
        f.flush()  # a failure to write shows here, while the file can still be closed without it
        f.close()
        trim(self.tmp)
        self._verify(list(labels))
        self.writing.commit()
        self.writing.discard()  # the staging folder, empty now

    def _verify(self, label_sets: list[str]):
        """The content digest was computed from memory: recompute it from the file before publishing."""
        with h5py.File(self.tmp, "r") as f:
            check_attrs(f.attrs)
            same = content_digest(f, label_sets) == f.attrs["content_sha256"]
        if not same:
            raise RuntimeError(f"{self.tmp} does not hold what was written to it (another process or a disk fault): "
                               f"it was not published; run the same command again")

    def abort(self):
        try:
            close_dropping(self.file)
        except Exception:
            pass  # a file HDF5 cannot close is removed all the same
        finally:
            self.writing.discard()


