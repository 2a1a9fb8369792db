"""Duplicate images, by two kinds of evidence: their perceptual hashes (pixels) and their CNN codes.

Candidates are each row's NEIGHBORS nearest rows by codes (cosine) and by pHash (Hamming), over both splits,
searched exactly in blocks (classifiers/heads/neighbors.py): the rows x rows similarities are never held, and what
grows with the rows is the neighbour lists and candidate pairs, under 1 KB a row (bench/audit.py --memory). A
candidate pair is confirmed by either rule (bench/audit.py measured both on planted copies, bench/HISTORY.md):

- hashes: pHash and dHash both within HASH_DISTANCE bits (neither image flat): every exact, re-encoded (JPEG
  quality 50 to 75), rescaled (down 20 to 50% and back) and brightened (75 to 125%) copy; codes miss many of
  these, whose codes sit among other photos of the same kind;
- codes: the two are each other's near neighbours by far, each closer to the other than RATIO times the distance
  to its next neighbour outside its group of copies: shifted and cropped copies, which move too many pixels
  for a hash. A ratio, not a cosine threshold: how close photos of one kind sit varies with the data set and the
  backbone; a copy stands out from its own neighbours in all of them.

Test rows in a confirmed pair with a training row are leakage (a test image the head has, in effect, seen).
Identical images are told by their pixels, and counted in full by their digests (`exact_counts`), however many
copies a group holds."""
import hashlib
from collections import defaultdict
from dataclasses import dataclass

import numpy as np

from cnncodes.classifiers.heads.neighbors import Neighbors, nearest, unit_rows
from cnncodes.pipeline.console import progress_bar

from .image_hashes import flat, hamming, signs

NEIGHBORS = 10  # each row's closest rows searched, by codes and by hash: a group of up to 10 copies is found whole
HASH_DISTANCE = 8  # bits of 64, pHash and dHash each: see the module's note
RATIO = 0.65  # distance to the partner over distance to the next neighbour outside the group, at most
EPSILON = 1e-4  # cosine distance added to both sides of the ratio: identical codes compare as equal, not 0/0
# Codes at least this similar are compared pixel by pixel: identical images give codes equal only up to
# float rounding (a batch's size and position change the sums' order), so "exact" is told by the pixels.
EXACT_CANDIDATE = 0.999
EVIDENCE = ("hashes", "codes", "hashes+codes")
DIGEST_ROWS = 1024  # stored images read at a time for their digests
PAIR_BLOCK = 1 << 18  # candidate pairs checked at a time: their neighbour lists and bits stay a few tens of MB


@dataclass
class Pairs:
    """Confirmed duplicate pairs, first < second (store rows), most certain first."""
    first: np.ndarray       # (pairs,) int
    second: np.ndarray      # (pairs,) int
    similarity: np.ndarray  # (pairs,) float: cosine similarity of their codes
    phash: np.ndarray       # (pairs,) int: Hamming distance of their pHashes
    dhash: np.ndarray       # (pairs,) int
    ratio: np.ndarray       # (pairs,) float: the codes' ratio, the larger of the two rows' (inf: not in a group)
    evidence: np.ndarray    # (pairs,) str: one of EVIDENCE
    exact: np.ndarray       # (pairs,) bool: the stored images are identical

    def leaked(self, split: np.ndarray) -> np.ndarray:
        """Sorted store rows of the test images in a pair with a training image."""
        across = split[self.first] != split[self.second]
        return np.unique(np.where(split[self.first[across]] == 1, self.first[across], self.second[across]))


def searched(queries, k: int, desc: str, progress: bool) -> Neighbors:
    with progress_bar(total=len(queries), desc=desc, unit="row", disable=not progress) as bar:
        return nearest(queries, queries, k, skip_self=True, progress=bar.update)


def code_neighbors(codes, progress: bool = True) -> Neighbors:
    """Each row's NEIGHBORS most similar other rows by codes, over both splits."""
    return searched(codes, NEIGHBORS, "audit: neighbours by codes", progress)


def hash_neighbors(hashes: np.ndarray, progress: bool = True) -> Neighbors:
    """Each row's NEIGHBORS nearest other rows by pHash (cosine of +-1 bits: 1 - 2 Hamming / bits)."""
    return searched(signs(hashes, "phash"), NEIGHBORS, "audit: neighbours by hashes", progress)


def code_groups(neighbors: Neighbors, ratio: float = RATIO) -> np.ndarray:
    """(rows,) how many of each row's nearest neighbours are its group of copies: the neighbours before the
    first one whose distance is at least 1/ratio times the one before it; 0 when there is no such jump."""
    d = 1.0 - neighbors.similarity.astype(np.float64) + EPSILON
    jumps = d[:, :-1] <= ratio * d[:, 1:]
    return np.where(jumps.any(axis=1), jumps.argmax(axis=1) + 1, 0)


def group_ratio(neighbors: Neighbors, sizes: np.ndarray) -> np.ndarray:
    """(rows,) each row's ratio: its farthest group member's distance over its next neighbour's (inf: no group)."""
    d = 1.0 - neighbors.similarity.astype(np.float64) + EPSILON
    rows = np.arange(len(d))
    inside = d[rows, np.maximum(sizes - 1, 0)]
    beyond = d[rows, np.minimum(sizes, d.shape[1] - 1)]
    return np.where(sizes > 0, inside / beyond, np.inf)


def candidate_pairs(*neighbor_lists: Neighbors) -> tuple[np.ndarray, np.ndarray]:
    """(first, second): every (row, neighbour) pair of the lists, each once, first < second, in row order."""
    n = np.int64(len(neighbor_lists[0].index))
    rows = np.arange(n)[:, None]
    keys = np.unique(np.concatenate([np.minimum(rows, found.index) * n + np.maximum(rows, found.index)
                                     for found in neighbor_lists], axis=None))  # 8 bytes a candidate pair
    first, second = np.divmod(keys, n)
    keep = first != second
    return first[keep], second[keep]


def in_group(neighbors: Neighbors, sizes: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether b[i] is among a[i]'s group of copies."""
    members = neighbors.index[a] == b[:, None]
    return (members & (np.arange(neighbors.index.shape[1]) < sizes[a][:, None])).any(axis=1)


def pair_similarity(codes, a: np.ndarray, b: np.ndarray, block: int = 8192) -> np.ndarray:
    """Cosine similarity of the codes of rows a[i] and b[i], read a block of pairs at a time."""
    out = np.empty(len(a), np.float32)
    for start in range(0, len(a), block):
        rows_a, rows_b = a[start:start + block], b[start:start + block]
        wanted, where = np.unique(np.concatenate([rows_a, rows_b]), return_inverse=True)
        x = unit_rows(np.asarray(codes[wanted]))
        out[start:start + len(rows_a)] = np.sum(x[where[:len(rows_a)]] * x[where[len(rows_a):]], axis=1)
    return np.minimum(out, 1.0)


def find_duplicates(codes, hashes: np.ndarray, images, *, ratio: float = RATIO, hash_distance: int = HASH_DISTANCE,
                    progress: bool = True) -> tuple[Pairs, Neighbors]:
    """The confirmed pairs (most certain first: identical, then both kinds of evidence, then by the codes'
    similarity), and each row's neighbours by codes (for the exact counts)."""
    by_codes = code_neighbors(codes, progress)
    by_hash = hash_neighbors(hashes, progress)
    candidates = candidate_pairs(by_codes, by_hash)
    sizes = code_groups(by_codes, ratio)
    row_ratio = group_ratio(by_codes, sizes)
    found = [confirmed(by_codes, sizes, hashes, candidates[0][i:i + PAIR_BLOCK], candidates[1][i:i + PAIR_BLOCK],
                       hash_distance) for i in range(0, len(candidates[0]), PAIR_BLOCK)]
    a, b, ph, dh, codes_say, hashes_say = (np.concatenate(part) for part in zip(*found)) if found else (
        np.empty(0, np.int64),) * 4 + (np.empty(0, bool),) * 2
    similarity = pair_similarity(codes, a, b)
    exact = identical_images(images, a, b, similarity, ph, dh)
    evidence = np.array(EVIDENCE)[np.where(hashes_say & codes_say, 2, np.where(codes_say, 1, 0))]
    pair_ratio = np.where(codes_say, np.maximum(row_ratio[a], row_ratio[b]), np.inf)
    order = np.lexsort((b, a, -similarity, ~(hashes_say & codes_say), ~exact))
    pairs = Pairs(a[order].astype(np.int64), b[order].astype(np.int64), similarity[order], ph[order], dh[order],
                  pair_ratio[order], evidence[order], exact[order])
    return pairs, by_codes


def confirmed(by_codes: Neighbors, sizes: np.ndarray, hashes: np.ndarray, a: np.ndarray, b: np.ndarray,
              hash_distance: int) -> tuple[np.ndarray, ...]:
    """Of candidate pairs (a[i], b[i]), those either rule confirms: (a, b, pHash and dHash distances, whether the
    codes say so, whether the hashes do)."""
    codes_say = in_group(by_codes, sizes, a, b) & in_group(by_codes, sizes, b, a)
    ph, dh = hamming(hashes, a, b, "phash"), hamming(hashes, a, b, "dhash")
    hashes_say = ~(flat(hashes)[a] | flat(hashes)[b]) & (ph <= hash_distance) & (dh <= hash_distance)
    keep = codes_say | hashes_say
    return a[keep], b[keep], ph[keep], dh[keep], codes_say[keep], hashes_say[keep]


def identical_images(images, first, second, similarity, phash, dhash) -> np.ndarray:
    """Whether each pair's stored images are identical; read only for pairs whose codes are EXACT_CANDIDATE
    close and whose hashes agree bit for bit (an identical pair's are)."""
    exact = np.zeros(len(first), bool)
    for p in np.flatnonzero((similarity >= EXACT_CANDIDATE) & (phash == 0) & (dhash == 0)):
        exact[p] = np.array_equal(np.asarray(images[int(first[p])]), np.asarray(images[int(second[p])]))
    return exact


def pair_counts(pairs: Pairs, split: np.ndarray, exact: dict) -> dict:
    """Every duplicate pair by where its two rows lie: the listed pairs of different images, and the pairs of
    identical images counted in full (`exact_counts`: a group larger than the neighbour lists is listed in part);
    and the listed pairs by evidence."""
    different = ~pairs.exact
    s1, s2 = split[pairs.first[different]], split[pairs.second[different]]
    return {"within_train": int(np.sum((s1 == 0) & (s2 == 0))) + exact["within_train"],
            "within_test": int(np.sum((s1 == 1) & (s2 == 1))) + exact["within_test"],
            "across_splits": int(np.sum(s1 != s2)) + exact["across_splits"],
            **{f"by_{e.replace('+', '_and_')}": int(np.sum(pairs.evidence[different] == e)) for e in EVIDENCE}}


def exact_counts(images, neighbors: Neighbors, split: np.ndarray) -> tuple[dict, np.ndarray]:
    """Every pair of identical stored images, by where its rows lie, and the test images with an identical
    training image (a count, and their rows): counted in full from the pixels' digests of the rows whose nearest
    code is EXACT_CANDIDATE close (an identical image's is), however many copies a group holds."""
    candidates = np.flatnonzero(neighbors.similarity[:, 0] >= EXACT_CANDIDATE)
    groups = defaultdict(lambda: [0, []])  # digest: [training rows, test rows]
    for start in range(0, len(candidates), DIGEST_ROWS):  # rows read a block at a time: memory stays flat
        rows = candidates[start:start + DIGEST_ROWS]
        for row, image in zip(rows, np.asarray(images[rows])):
            group = groups[hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest()]
            if split[row] == 0:
                group[0] += 1
            else:
                group[1].append(int(row))
    sizes = [(a, len(b)) for a, b in groups.values()]
    leaked = np.array(sorted(r for a, b in groups.values() if a for r in b), np.int64)
    return {"within_train": sum(a * (a - 1) // 2 for a, _ in sizes),
            "within_test": sum(b * (b - 1) // 2 for _, b in sizes),
            "across_splits": sum(a * b for a, b in sizes), "leaked_test_images": len(leaked)}, leaked

