"""A picklable view of one HDF5 dataset, so dask arrays over the store work on distributed workers."""
from contextlib import nullcontext

import h5py
import numpy as np


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
