"""Outliers: images far from every class, by the cosine distance of their codes to the nearest class centroid
(the mean of a class's training codes, each scaled to unit length).

Why centroids and not the k-nearest-neighbor distance (cleanlab's feature-based OutOfDistribution is that
score): junk comes in groups, and a group is its own neighborhood. On the planted bench (bench/audit.py,
bench/HISTORY.md) 10 noise images and 10 handwritten digits among 2,720 CIFAR-10 photos were each other's
nearest neighbors: the mean distance to the 10 nearest ranked all 20 as the *least* outlying images
(AUROC 0.001), the distance to the nearest class centroid ranked them first (AUROC 1.000). A group of junk
moves a centroid little, so it stays far from every class; the score costs one pass over the codes."""
from dataclasses import dataclass

import numpy as np

from cnncodes.classifiers.heads.neighbors import BLOCK, unit_rows

# Tukey's "far out" fence: a score above the third quartile plus 3 interquartile ranges. It needs no class
# count or contamination rate, and on a skewed, long-tailed score it flags the tail, not a fixed share.
FENCE_IQRS = 3.0


@dataclass
class Outliers:
    rows: np.ndarray   # (outliers,) int, most outlying first
    score: np.ndarray  # (outliers,) cosine distance to the nearest class centroid
    fence: float       # the score above which a row is an outlier


def class_centroids(codes, labels: np.ndarray, train: slice, n_classes: int, block: int = BLOCK) -> np.ndarray:
    """(n_classes, dim) unit vectors: each class's mean unit code over the training rows, read a block at a time
    (a class without training rows gets a zero row, similar to nothing)."""
    sums = np.zeros((n_classes, codes.shape[1]))
    for start in range(train.start, train.stop, block):
        stop = min(start + block, train.stop)
        u = unit_rows(codes, start, stop)
        for c in np.unique(labels[start:stop]):
            sums[c] += u[labels[start:stop] == c].sum(axis=0)
    norms = np.linalg.norm(sums, axis=1, keepdims=True)
    return (sums / np.where(norms > 0, norms, 1.0)).astype(np.float32)


def centroid_distance(codes, centroids: np.ndarray, block: int = BLOCK) -> np.ndarray:
    """Each row's cosine distance (1 - similarity) to its nearest class centroid."""
    return np.concatenate([1.0 - (unit_rows(codes, start, start + block) @ centroids.T).max(axis=1)
                           for start in range(0, len(codes), block)] or [np.empty(0)]).astype(np.float64)


def find_outliers(codes, labels: np.ndarray, train: slice, n_classes: int) -> Outliers:
    score = centroid_distance(codes, class_centroids(codes, labels, train, n_classes))
    if len(score) == 0:
        return Outliers(np.empty(0, np.int64), np.empty(0), float("nan"))
    q1, q3 = np.percentile(score, [25, 75])
    fence = float(q3 + FENCE_IQRS * (q3 - q1))
    rows = np.flatnonzero(score > fence)
    rows = rows[np.lexsort((rows, -score[rows]))]
    return Outliers(rows, score[rows], fence)
