"""Seeded stratified k-fold assignments, computed once at ingest so every head and baseline shares them."""
import fcntl
import hashlib
import io
from pathlib import Path

import numpy as np

from . import schema
from .errors import UserError
from .outputs import write_atomically
from .reading import DAMAGE


def stratified_folds(labels: np.ndarray, k: int, seed: int, member: np.ndarray) -> np.ndarray:
    """Fold index (0..k-1) per sample where `member` is true, -1 elsewhere.

    Members are shuffled (seeded), grouped by class and dealt round-robin, so fold sizes differ by
    at most one and each class is spread as evenly as its size allows, even for classes smaller than k.
    """
    folds = np.full(len(labels), -1, dtype=np.int8)
    idx = np.flatnonzero(member)
    order = np.random.default_rng(seed).permutation(len(idx))
    order = order[np.argsort(labels[idx][order], kind="stable")]
    folds[idx[order]] = np.arange(len(idx)) % k
    return folds


def stratified_subset(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Sorted indices of a seeded subset of n samples with the class proportions of `labels`."""
    if n >= len(labels):
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation: every class gets its share, rounding never loses a sample.
    share = counts * n / len(labels)
    take = np.floor(share).astype(int)
    rest = n - take.sum()
    take[np.argsort(-(share - take), kind="stable")[:rest]] += 1
    chosen = [rng.choice(np.flatnonzero(labels == c), t, replace=False) for c, t in zip(classes, take)]
    return np.sort(np.concatenate(chosen))


def per_class_draw(y: np.ndarray, n: int | None, seed: int) -> np.ndarray:
    """Sorted rows: a seeded draw of `n` rows of each class (every row of a class that has fewer; None: all)."""
    if n is None:
        return np.arange(len(y))
    rng = np.random.default_rng(seed)
    picked = [rng.choice(rows, min(n, len(rows)), replace=False)
              for rows in (np.flatnonzero(y == c) for c in np.unique(y))]
    return np.sort(np.concatenate(picked))


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Split codes (0 train, 1 test) holding out `fraction` of each class, seeded."""
    split = np.zeros(len(labels), dtype=np.uint8)
    split[stratified_subset(labels, int(round(fraction * len(labels))), seed)] = 1
    return split


# -- assignments kept in the store (FeatureStore.folds) -------------------------------------------------------
def fold_assignment(store, on: str, k: int) -> np.ndarray:
    if (on, k) in store.stored_folds:
        return store._read(store.data_file, f"folds/{on}/{k}", None, lazy=False)
    for path in schema.fold_files(store.path).get((on, k), []):
        try:
            return read_kept_folds(store, path, k)
        except DAMAGE:
            pass  # recomputed below: the assignment is a pure function of the stored labels and seed
    member = store.split == 0 if on == "train" else np.ones(store.n, bool)
    primary = store.labels()
    check_stratifiable(store, k, on, primary[member])
    folds = stratified_folds(primary, k, int(store.attrs.get("seed", 0)), member)
    save_folds(store, on, k, folds)
    return folds


def fold_seal(store, data: bytes) -> str:
    """A kept assignment's seal: its bytes and the content of the data it was computed from, so a flipped
    value, or a file kept from data since ingested again, is never used."""
    return hashlib.sha256(store.content.encode() + data).hexdigest()[:16]


def read_kept_folds(store, path: Path, k: int) -> np.ndarray:
    """A kept assignment that passes its seal; ValueError (or OSError) saying why when it does not."""
    data = Path(path).read_bytes()
    if schema.fold_seal(path) is None:
        raise ValueError("no checksum (kept by cnncodes before 0.3); recomputed when next asked for")
    if schema.fold_seal(path) != fold_seal(store, data):
        raise ValueError("fails its checksum, or was computed from data since ingested again; recomputed "
                         "when next asked for")
    folds = np.load(io.BytesIO(data), allow_pickle=False)
    if folds.shape != (store.n,) or folds.min() < -1 or folds.max() >= k:
        raise ValueError(f"does not hold {store.n} fold numbers below {k}")
    return folds


def check_stratifiable(store, k: int, on: str, labels: np.ndarray):
    if k < 2:
        raise UserError(f"-k {k}: k-fold needs at least 2 folds")
    classes, counts = np.unique(labels, return_counts=True)
    if len(counts) and counts.min() < k:
        smallest = classes[counts.argmin()]
        raise UserError(f"cannot make {k} stratified folds over {on}: its smallest class, "
                        f"{store.class_names()[smallest]!r}, has {counts.min()} rows; use -k {max(counts.min(), 2)} "
                        f"or fewer" if counts.min() >= 2 else
                        f"cannot make {k} stratified folds over {on}: class {store.class_names()[smallest]!r} "
                        f"has {counts.min()} row; add images of it, or leave it out")


def save_folds(store, on: str, k: int, folds: np.ndarray):
    """Atomically, under the store's lock, replacing older files of the same assignment; a read-only
    store just recomputes them next time."""
    buffer = io.BytesIO()
    np.save(buffer, folds)
    data = buffer.getvalue()
    path = schema.folds_path(store.path, on, k, fold_seal(store, data))
    try:
        path.parent.mkdir(exist_ok=True)
        with open(path.parent / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            write_atomically(path, data)
            for old in schema.fold_files(store.path).get((on, k), []):
                if old != path:
                    old.unlink(missing_ok=True)
    except OSError:
        pass
