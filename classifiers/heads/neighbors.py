"""Exact cosine nearest neighbors over CNN codes, in blocks: the rows x rows similarity matrix is never held,
only one block of queries against one block of the base at a time, so memory stays flat in the number of rows
(`block` x `block` similarities plus the running top k). The audit's duplicates, the knn head and
`cnncodes neighbors` all search through `nearest`."""
from dataclasses import dataclass

import numpy as np

# rows a side: 4096 x 4096 float32 similarities are 64 MiB, and with the running top k's candidates, their
# indices and the partition's copies the search peaks near 550 MiB (measured), however many rows there are
BLOCK = 4096


def unit_rows(X, start: int = 0, stop: int | None = None) -> np.ndarray:
    """Rows start..stop of X (numpy, h5py or dask) as float32 unit vectors; an all-zero row stays zero."""
    x = np.asarray(X[start:stop], dtype=np.float32)
    x = x.reshape(len(x), -1)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)


@dataclass
class Neighbors:
    """For each query row, its k most similar base rows, most similar first (equal similarities: lower row first)."""
    index: np.ndarray       # (queries, k) int64 rows of the base
    similarity: np.ndarray  # (queries, k) float32 cosine similarities


def nearest(queries, base, k: int, *, skip_self: bool = False, block: int = BLOCK, progress=None) -> Neighbors:
    """The `k` base rows of highest cosine similarity to each query row, most similar first; k larger than the
    base gives every base row. `skip_self`: queries are the base itself (row i never its own neighbor; an exact
    copy elsewhere still is). `progress(rows)` hears each finished block of queries. The answer does not depend
    on `block`: ties are broken by the lower base row in every block, as in one."""
    if k < 1:
        raise ValueError(f"nearest: k={k}; ask for at least 1 neighbor")
    n_base = len(base)
    k = min(k, n_base - 1 if skip_self else n_base)
    if k < 1:
        raise ValueError(f"nearest: {n_base} base rows leave no neighbor to find")
    index = np.empty((len(queries), k), np.int64)
    similarity = np.empty((len(queries), k), np.float32)
    for q0 in range(0, len(queries), block):
        q = unit_rows(queries, q0, q0 + block)
        best_s = np.full((len(q), 0), -np.inf, np.float32)
        best_i = np.empty((len(q), 0), np.int64)
        for b0 in range(0, n_base, block):
            s = q @ unit_rows(base, b0, b0 + block).T
            s[np.isnan(s)] = -np.inf  # a row of NaN (an fp16 overflow) is never anyone's neighbor
            if skip_self:  # the query's own row, where it falls in this base block
                rows = np.arange(q0, q0 + len(q))
                inside = (rows >= b0) & (rows < b0 + s.shape[1])
                s[np.flatnonzero(inside), rows[inside] - b0] = -np.inf
            # the running best (all lower rows than this block) first: columns run in ascending row order among equals
            cand_s = np.concatenate([best_s, s], axis=1)
            cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(b0, b0 + s.shape[1]), s.shape)], axis=1)
            keep = top_k(cand_s, cand_i, k)
            best_s = np.take_along_axis(cand_s, keep, axis=1)
            best_i = np.take_along_axis(cand_i, keep, axis=1)
        # float rounding can put a copy's similarity a hair over 1, which no cosine is
        index[q0:q0 + len(q)], similarity[q0:q0 + len(q)] = best_i, np.minimum(best_s, 1.0)
        if progress:
            progress(len(q))
    return Neighbors(index, similarity)


def top_k(similarity: np.ndarray, index: np.ndarray, k: int) -> np.ndarray:
    """Column positions of each row's k highest similarities, highest first, equal ones by the lower index.
    Where equals straddle the k-th place, the first columns among them are kept: callers list candidates so that
    equal similarities appear in ascending index order (argpartition alone keeps an arbitrary one of them, so an
    exact duplicate's neighbors would depend on the block size)."""
    if similarity.shape[1] > k:
        kth = -np.partition(-similarity, k - 1, axis=1)[:, k - 1:k]  # each row's k-th highest similarity
        above, level = similarity > kth, similarity == kth
        wanted = k - above.sum(axis=1, keepdims=True)  # how many of the equals at the k-th place fit
        keep = above | (level & (np.cumsum(level, axis=1) <= wanted))
        part = np.nonzero(keep)[1].reshape(len(similarity), k)
    else:
        part = np.broadcast_to(np.arange(similarity.shape[1]), similarity.shape)
    s, i = np.take_along_axis(similarity, part, axis=1), np.take_along_axis(index, part, axis=1)
    return np.take_along_axis(part, np.lexsort((i, -s), axis=1), axis=1)
