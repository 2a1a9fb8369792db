"""Sealed JSON: the store's small text files (run records, k-fold fold results and tables, baseline state)
carry a sha256 of their own content, so a flipped byte or a hand edit is caught when they are read, and
by `cnncodes info --check`, instead of being shown as a result.

A sealed file is a JSON object with one extra key, SEAL_KEY, whose value is the sha256 of the object's
canonical JSON without that key. Writes are atomic (outputs.atomic_write).
"""
import hashlib
import json
import math
from pathlib import Path

import numpy as np

from .fingerprint import file_digest
from .outputs import write_atomically

SEAL_KEY = "sha256"


class SealBroken(ValueError):
    """A sealed file that cannot be read, is not an object, has no seal or fails it; the message says which."""


def _plain(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def _digest(obj: dict) -> str:
    text = json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def plain(obj):
    """`obj` as it reads back from JSON (numpy values as Python ones, tuples as lists, other objects as text)."""
    return json.loads(json.dumps(obj, default=_plain))


def seal(obj: dict) -> dict:
    """The object, as JSON gives it back, with its seal added (any older seal replaced)."""
    body = {k: v for k, v in plain(obj).items() if k != SEAL_KEY}
    return {**body, SEAL_KEY: _digest(body)}


def write_sealed(path, obj: dict):
    """Atomic: a reader (or a resumed run) never sees half a file."""
    write_atomically(Path(path), json.dumps(seal(obj), indent=1))


def read_sealed(path) -> dict:
    """The object without its seal; SealBroken when the file cannot be read, has no seal or fails it."""
    path = Path(path)
    try:
        found = json.loads(path.read_bytes())
    except (OSError, ValueError) as e:  # ValueError: invalid JSON, or bytes that are not UTF-8
        raise SealBroken(f"cannot be read ({str(e).splitlines()[0][:120]})") from None
    if not isinstance(found, dict):
        raise SealBroken("is not a JSON object")
    if SEAL_KEY not in found:
        raise SealBroken("has no checksum (written by cnncodes before 0.3, or edited by hand)")
    body = {k: v for k, v in found.items() if k != SEAL_KEY}
    if found[SEAL_KEY] != _digest(body):
        raise SealBroken("fails its checksum (changed on disk or edited by hand)")
    return body


FILES_KEY = "files"  # a sealed file may vouch for files beside it: {"files": {name: sha256}}


def check_listed_files(path, body: dict) -> dict:
    """Checks the files a sealed file lists beside it against their sha256 (a head's model.npz and .keras
    files); SealBroken naming the first that differs or is missing. Returns `body`."""
    files = body.get(FILES_KEY)
    if not isinstance(files, dict):
        return body
    for name, digest in files.items():
        beside = Path(path).parent / Path(str(name)).name  # only files beside it
        try:
            found = file_digest(beside, "sha256")
        except OSError as e:
            raise SealBroken(f"{beside.name} cannot be read ({e.strerror})") from None
        if found != digest:
            raise SealBroken(f"{beside.name} fails its checksum (changed on disk since it was saved)")
    return body


def all_finite(obj) -> bool:
    """Whether every number in a JSON value is finite (NaN and inf are never a result worth showing)."""
    if isinstance(obj, float):
        return math.isfinite(obj)
    if isinstance(obj, dict):
        return all(all_finite(v) for v in obj.values())
    if isinstance(obj, list):
        return all(all_finite(v) for v in obj)
    return True
