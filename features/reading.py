"""Reading the store's files safely: a damaged or missing file becomes one line naming it and the fix,
chunks and attributes are checked against their sums, HDF5 datasets are read lazily as dask arrays, and
`check_store` reads every stored byte once."""
import io
import zlib
from contextlib import contextmanager, nullcontext
from pathlib import Path

import h5py
import numpy as np

from . import schema
from .errors import DamagedError, UserError
from .fingerprint import attrs_digest

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


def check_attrs(attrs) -> dict:
    """A file's root attributes, checked against their seal (files of schema 2 have none)."""
    attrs = dict(attrs)
    if schema.ATTRS_SEAL in attrs and attrs[schema.ATTRS_SEAL] != attrs_digest(attrs):
        raise ValueError("its attributes fail their checksum")
    return attrs


def read_chunk(path: Path, rows: int) -> np.ndarray:
    """A committed chunk of a set in progress, checked against the CRC in its name and its row count."""
    data = path.read_bytes()
    crc = path.stem.rsplit("-", 1)[1] if path.stem.count("-") == 2 else None
    if crc is not None and f"{zlib.crc32(data):08x}" != crc:
        raise ValueError("CRC mismatch")
    array = np.load(io.BytesIO(data), allow_pickle=False)
    if len(array) != rows:
        raise ValueError(f"{len(array)} rows, not {rows}")
    return array


def read_everything(path: Path, rows_per_read: int = 4096):
    """Reads every dataset of an HDF5 file in slices, so every chunk's checksum is verified, and checks
    its attributes against their seal."""
    with h5py.File(path, "r") as f:
        check_attrs(f.attrs)
        datasets = []
        f.visititems(lambda name, obj: datasets.append(obj) if isinstance(obj, h5py.Dataset) else None)
        for d in datasets:
            if d.shape == () or len(d) == 0:
                d[()]
                continue
            step = max(1, min(rows_per_read, (64 << 20) // max(1, d[0:1].nbytes)))
            for lo in range(0, len(d), step):
                d[lo:lo + step]


class H5Array:
    """Opens the file on every read: no handle is shared between threads or pickled to workers. `guard()`,
    when given (picklable: a module-level function or a partial of one), is the context every read runs in:
    the store's, which turns a damaged file into one line naming it, however late the read comes."""

    def __init__(self, path, key, guard=None):
        self.path, self.key, self.guard = str(path), key, guard
        with h5py.File(self.path, "r") as f:
            d = f[key]
            self.shape, self.dtype, self.chunks = d.shape, d.dtype, d.chunks
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        with self.guard() if self.guard else nullcontext(), h5py.File(self.path, "r") as f:
            return np.asarray(f[self.key][index])


def dask_array(path, key, rows=None, guard=None):
    import dask.array as da

    source = H5Array(path, key, guard)
    row_chunk = rows or (source.chunks[0] if source.chunks else 1024)
    chunks = (max(1, row_chunk),) + source.shape[1:]
    return da.from_array(source, chunks=chunks, asarray=True, fancy=False)
