"""Seeded stratified k-fold assignments, computed once at ingest so every head and baseline shares them."""
import numpy as np


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


def stratified_holdout(labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """Split codes (0 train, 1 test) holding out `fraction` of each class, seeded."""
    split = np.zeros(len(labels), dtype=np.uint8)
    split[stratified_subset(labels, int(round(fraction * len(labels))), seed)] = 1
    return split
