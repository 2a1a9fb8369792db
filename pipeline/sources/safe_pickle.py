"""Unpickling CIFAR batches without running anything they hold.

A pickle can call any importable function while it loads, so the official archives' md5 is not the
only guard (--no-verify skips it): the unpickler resolves only the globals a CIFAR batch needs, plain
containers come from opcodes, not globals, and everything else is refused by name.
"""
import pickle

import numpy as np

try:  # numpy 2
    from numpy._core import multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray


class ForbiddenGlobal(pickle.UnpicklingError):
    """The pickle asked for a global outside the allowed few: code or an object no CIFAR batch holds."""


def latin1_bytes(text: str, encoding: str) -> bytes:
    """`_codecs.encode` as pickles made by Python 3 with protocol 2 use it for bytes, and only so."""
    if encoding not in ("latin1", "latin-1") or not isinstance(text, str):
        raise ForbiddenGlobal(f"_codecs.encode with {encoding!r}")
    return text.encode("latin1")


# (module, name) as written in the pickle -> what it resolves to. numpy arrays pickle through
# _reconstruct, ndarray and dtype (numpy.core before numpy 2, numpy._core after), scalars through scalar.
ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): multiarray.scalar,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): latin1_bytes,
}


class DataOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in ALLOWED:
            return ALLOWED[(module, name)]
        raise ForbiddenGlobal(f"{module}.{name}")


def load_data(file) -> object:
    """One pickled object of plain containers and numpy arrays; Python 2's str comes back as bytes,
    as the official archives (written by Python 2) need. Raises ForbiddenGlobal for anything else."""
    return DataOnlyUnpickler(file, encoding="bytes").load()
