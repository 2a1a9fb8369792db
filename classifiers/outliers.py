"""Outliers: images far from every other image, by the mean cosine distance of their codes to their nearest
neighbours (the k-nearest-neighbour score of cleanlab's own feature-based OutOfDistribution, which averages
the distances to the 10 nearest; computed here from the neighbours the duplicate search already found).

Why not cleanlab's OutOfDistribution itself: fed the codes, it builds a scikit-learn NearestNeighbors index
and searches every row against every other a second time, the audit's whole cost again; fed probabilities,
it scores low confidence, which the label check already ranks, and misses codes far from all the data,
where a linear head extrapolates with confidence. A row far from its nearest images is far from every
class, whatever label it carries."""
from dataclasses import dataclass

import numpy as np

from .neighbours import Neighbours

# Tukey's "far out" fence: a score above the third quartile plus 3 interquartile ranges. It needs no class
# count or contamination rate, and on a skewed, long-tailed score it flags the tail, not a fixed share.
FENCE_IQRS = 3.0


@dataclass
class Outliers:
    rows: np.ndarray   # (outliers,) int, most outlying first
    score: np.ndarray  # (outliers,) mean cosine distance to the nearest neighbours
    fence: float       # the score above which a row is an outlier


def neighbour_distance(neighbours: Neighbours) -> np.ndarray:
    """Each row's mean cosine distance (1 - similarity) to its nearest neighbours."""
    return (1.0 - neighbours.similarity.astype(np.float64)).mean(axis=1)


def find_outliers(neighbours: Neighbours) -> Outliers:
    score = neighbour_distance(neighbours)
    if len(score) == 0:
        return Outliers(np.empty(0, np.int64), np.empty(0), float("nan"))
    q1, q3 = np.percentile(score, [25, 75])
    fence = float(q3 + FENCE_IQRS * (q3 - q1))
    rows = np.flatnonzero(score > fence)
    rows = rows[np.lexsort((rows, -score[rows]))]
    return Outliers(rows, score[rows], fence)
