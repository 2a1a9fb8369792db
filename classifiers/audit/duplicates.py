"""Duplicate images by the cosine similarity of their codes: pairs within and across splits, and the test
rows with a duplicate in training (leakage: a test image the head has, in effect, already seen).

Pairs come from each row's nearest neighbors (classifiers/neighbors.py: exact, in blocks, memory flat), so
a row with more than NEIGHBORS duplicates has only its NEIGHBORS closest listed; the same pass counts every
pair (`pair_counts`), and identical images are counted in full by their pixels' digests (`exact_counts`), so
the totals are totals however many copies there are. Leakage is searched on its own (every test row against
the training rows), so it is exact too."""
import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from cnncodes.classifiers.heads.neighbors import Neighbors, nearest
from cnncodes.pipeline.console import progress_bar

# Cosine similarity at or above which two images count as duplicates: the highest F1 of leak detection for
# 200 planted copies of CIFAR-10 training photos (exact, JPEG at quality 50, rescaled, shifted) among 10,000
# other training photos searched against 40,000, every other match counted as false (bench/audit.py,
# bench/HISTORY.md; Lite0's last layer at 224). It finds every exact copy and half the shifted ones, few of the
# re-encoded or rescaled (their codes sit among different photos of the same kind); most of the "false"
# matches near it are CIFAR-10's own duplicates.
DUPLICATE_THRESHOLD = 0.92
NEIGHBORS = 10  # each row's closest rows searched for pairs: a group of up to 11 copies is listed whole
# Codes at least this similar are compared pixel by pixel: identical images give codes equal only up to
# float rounding (a batch's size and position change the sums' order), so "exact" is told by the pixels.
EXACT_CANDIDATE = 0.999


@dataclass
class Pairs:
    """Duplicate pairs, first < second (store rows), most similar first."""
    first: np.ndarray       # (pairs,) int
    second: np.ndarray      # (pairs,) int
    similarity: np.ndarray  # (pairs,) float
    exact: np.ndarray       # (pairs,) bool: the stored images are identical


@dataclass
class Leakage:
    """For every test row: its most similar training row (a store row) and their similarity."""
    nearest_train: np.ndarray  # (test rows,) int
    similarity: np.ndarray     # (test rows,) float

    def leaked(self, threshold: float) -> np.ndarray:
        """Positions (in the test split) of the test rows with a duplicate in training."""
        return np.flatnonzero(self.similarity >= threshold)


def searched(queries, base, k: int, *, skip_self: bool, desc: str, progress: bool) -> Neighbors:
    with progress_bar(total=len(queries), desc=desc, unit="row", disable=not progress) as bar:
        return nearest(queries, base, k, skip_self=skip_self, progress=bar.update)


def all_neighbors(codes, progress: bool = True, threshold: float | None = None, split=None) -> Neighbors:
    """Each row's NEIGHBORS most similar other rows, over both splits; with `threshold`, also how many rows of
    each split (`split`: 0 train, 1 test, per row) are at least that similar to it, all of them."""
    with progress_bar(total=len(codes), desc="audit: neighbors", unit="row", disable=not progress) as bar:
        return nearest(codes, codes, NEIGHBORS, skip_self=True, progress=bar.update, count_at=threshold,
                       groups=split)


DIGEST_ROWS = 1024  # stored images read at a time for their digests


def pair_counts(neighbors: Neighbors, split: np.ndarray) -> dict:
    """Every duplicate pair at the threshold `all_neighbors` counted at, by where its two rows lie; each pair is
    counted from both of its rows, so within a split a count is halved."""
    counts, train, test = neighbors.counts, split == 0, split == 1
    width = counts.shape[1]
    to_test = counts[:, 1] if width > 1 else np.zeros(len(counts), np.int64)
    return {"within_train": int(counts[train, 0].sum()) // 2, "within_test": int(to_test[test].sum()) // 2,
            "across_splits": int(to_test[train].sum())}


def exact_counts(images, neighbors: Neighbors, split: np.ndarray) -> dict:
    """Every pair of identical stored images, by where its rows lie, and the test images with an identical
    training image: counted in full from the pixels' digests of the rows whose nearest code is EXACT_CANDIDATE
    close (an identical image's is), however many copies a group holds."""
    candidates = np.flatnonzero(neighbors.similarity[:, 0] >= EXACT_CANDIDATE)
    groups = defaultdict(lambda: [0, 0])  # digest: [train rows, test rows]
    for start in range(0, len(candidates), DIGEST_ROWS):  # rows read a block at a time: memory stays flat
        rows = candidates[start:start + DIGEST_ROWS]
        for row, image in zip(rows, np.asarray(images[rows])):
            groups[hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()][int(split[row])] += 1
    sizes = list(groups.values())
    return {"within_train": sum(a * (a - 1) // 2 for a, _ in sizes),
            "within_test": sum(b * (b - 1) // 2 for _, b in sizes),
            "across_splits": sum(a * b for a, b in sizes), "leaked_test_images": sum(b for a, b in sizes if a)}


def leakage(test_codes, train_codes, progress: bool = True) -> Leakage:
    """Each test row's most similar training row; training rows come first in the store, so a position in
    `train_codes` is its store row."""
    if len(test_codes) == 0 or len(train_codes) == 0:
        return Leakage(np.empty(0, np.int64), np.empty(0, np.float32))
    found = searched(test_codes, train_codes, 1, skip_self=False, desc="audit: test against train", progress=progress)
    return Leakage(found.index[:, 0], found.similarity[:, 0])


def duplicate_pairs(a: np.ndarray, b: np.ndarray, similarity: np.ndarray, threshold: float) -> tuple[np.ndarray, ...]:
    """(first, second, similarity) of the candidate pairs (a[i], b[i]) at or above `threshold`, each pair once
    with first < second (a pair found from both of its rows comes twice), most similar first."""
    keep = similarity >= threshold
    a, b, s = a[keep], b[keep], similarity[keep]
    first, second = np.minimum(a, b).astype(np.int64), np.maximum(a, b).astype(np.int64)
    order = np.lexsort((second, first, -s))  # most similar first, so `once` keeps a pair's first (equal) copy
    first, second, s = first[order], second[order], s[order]
    _, once = np.unique(np.stack([first, second], axis=1), axis=0, return_index=True)
    once = np.sort(once)
    return first[once], second[once], s[once]


def identical_images(images, first: np.ndarray, second: np.ndarray, similarity: np.ndarray) -> np.ndarray:
    """Whether each pair's stored images are identical; read only for pairs whose codes are EXACT_CANDIDATE
    close (`images`: the store's images, any array that reads rows by index)."""
    exact = np.zeros(len(first), bool)
    for p in np.flatnonzero(similarity >= EXACT_CANDIDATE):
        exact[p] = np.array_equal(np.asarray(images[int(first[p])]), np.asarray(images[int(second[p])]))
    return exact


def find_duplicates(neighbors: Neighbors, leak: Leakage, threshold: float, first_test_row: int, images) -> Pairs:
    """Every duplicate pair the neighbor lists and the leakage search found, with exact ones marked."""
    rows, cols = np.nonzero(neighbors.similarity >= threshold)
    leaked = leak.leaked(threshold)
    first, second, similarity = duplicate_pairs(np.concatenate([rows, leak.nearest_train[leaked]]),
                                                np.concatenate([neighbors.index[rows, cols], first_test_row + leaked]),
                                                np.concatenate([neighbors.similarity[rows, cols],
                                                                leak.similarity[leaked]]), threshold)
    return Pairs(first, second, similarity, identical_images(images, first, second, similarity))
