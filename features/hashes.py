"""Perceptual hashes kept in the store: computed once from the stored pixels (classifiers/audit/image_hashes.py)
and kept as HASHES_DIR/<method>-<seal>.npy, as fold assignments are kept. The seal is a sha256 of the data's
content, the method and the file's bytes, so hashes of other data, of another method or library version, or
with a flipped bit are never used: they are computed again."""
import fcntl
import hashlib
import io
from pathlib import Path

import numpy as np

from . import schema
from .outputs import write_atomically
from .reading import DAMAGE


def hashes_seal(store, method: str, data: bytes) -> str:
    return hashlib.sha256(store.content.encode() + method.encode() + data).hexdigest()[:16]


def method_files(store, method: str) -> list[Path]:
    folder = Path(store.path) / schema.HASHES_DIR
    return sorted(folder.glob(f"{method}-*.npy")) if folder.exists() else []


def kept_hashes(store, method: str, shape: tuple) -> np.ndarray | None:
    """The kept hashes of `method` ((rows, *shape) uint8, row for row with the store), or None when none pass
    their seal and shape: then they are computed again."""
    for path in method_files(store, method):
        try:
            data = path.read_bytes()
            if path.stem.rsplit("-", 1)[-1] != hashes_seal(store, method, data):
                continue
            bits = np.load(io.BytesIO(data), allow_pickle=False)
        except DAMAGE:
            continue
        if bits.dtype == np.uint8 and bits.shape == (store.n, *shape):
            return bits
    return None


def save_hashes(store, method: str, bits: np.ndarray) -> Path | None:
    """Atomically, under the folder's lock, replacing older files of the same method; a read-only store just
    computes them again next time (None)."""
    buffer = io.BytesIO()
    np.save(buffer, np.ascontiguousarray(bits, np.uint8))
    data = buffer.getvalue()
    path = schema.hashes_path(store.path, method, hashes_seal(store, method, data))
    try:
        path.parent.mkdir(exist_ok=True)
        with open(path.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_atomically(path, data)
            for old in method_files(store, method):
                if old != path:
                    old.unlink(missing_ok=True)
    except OSError:
        return None
    return path
