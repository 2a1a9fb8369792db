"""A picklable view of one HDF5 dataset, so dask arrays over the store work on distributed workers."""
import h5py
import numpy as np


class H5Array:
    """Opens the file on every read: no handle is shared between threads or pickled to workers."""

    def __init__(self, path, key):
        self.path, self.key = str(path), key
        with h5py.File(self.path, "r") as f:
            d = f[key]
            self.shape, self.dtype, self.chunks = d.shape, d.dtype, d.chunks
        self.ndim = len(self.shape)

    def __getitem__(self, index):
        with h5py.File(self.path, "r") as f:
            return np.asarray(f[self.key][index])


def dask_array(path, key, rows=None):
    import dask.array as da

    source = H5Array(path, key)
    row_chunk = rows or (source.chunks[0] if source.chunks else 1024)
    chunks = (max(1, row_chunk),) + source.shape[1:]
    return da.from_array(source, chunks=chunks, asarray=True, fancy=False)
