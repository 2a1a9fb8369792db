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


def content_digest(f, label_sets) -> str:
    """sha256 over what codes and results are computed from (images, labels, split), recomputed from the
    file's bytes: what `content_sha256` holds. Checksums per chunk catch a flipped bit; only this catches
    values rewritten through HDF5, whose checksums are rewritten with them."""
    h = hashlib.sha256()
    images = f["images"]
    step = (images.chunks[0] if images.chunks else 256) * 16
    for lo in range(0, len(images), step):
        h.update(np.ascontiguousarray(images[lo:lo + step]).data)
    for name in label_sets:
        h.update(f[f"labels/{name}"][:].data)
    h.update(f["split"][:].data)
    return h.hexdigest()


# The texts of data.h5 under their own digests: class names, small and checked at every open; the per-row
# sources and the skipped list, checked when read and by `--check`.
NAMES_SEAL, SOURCES_SEAL = "names_sha256", "sources_sha256"


def text_digest(f, keys) -> str:
    h = hashlib.sha256()
    for key in keys:
        if key in f:
            data = f[key][:]
            h.update(f"{key}:{data.dtype.str}:{data.shape}".encode())
            h.update(np.ascontiguousarray(data).tobytes())
    return h.hexdigest()


def name_keys(label_sets) -> list[str]:
    return [f"label_names/{name}" for name in label_sets]


SOURCE_KEYS = ("sources", "skipped")


def check_text(f, attrs: dict, seal: str, keys):
    """Fails when texts were rewritten since ingest (a store of schema 2 has no such seal)."""
    if seal in attrs and attrs[seal] != text_digest(f, keys):
        raise ValueError(f"its {'class names' if seal == NAMES_SEAL else 'sources'} fail their checksum")
