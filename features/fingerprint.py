"""Fingerprints decide whether cached work can be reused: equal fingerprints, equal results."""
import hashlib
import json

import numpy as np

from .schema import ATTRS_SEAL


def fingerprint(parts: dict) -> str:
    """sha256 of the canonical JSON of everything that determines a result."""
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def digest_arrays(arrays) -> str:
    """sha256 over arrays' shapes, dtypes and bytes (weights identity, data content)."""
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def file_digest(path, algorithm: str = "md5", block=1 << 20) -> str:
    """Hex digest of a file read in blocks (archives' md5, weights files' sha256)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def attrs_digest(attrs) -> str:
    """sha256 of an HDF5 file's root attributes but the seal itself, as h5py reads them back (numbers as
    numpy scalars, strings as str): the seal that covers strings HDF5 keeps outside its checksummed headers."""
    plain = {k: (v.item() if isinstance(v, np.generic) else v) for k, v in attrs.items() if k != ATTRS_SEAL}
    return fingerprint(plain)
