"""Training on cached augmented views (`cnncodes features --views K`): what a head reads besides a training
row's plain codes. Views come as (rows, K, dim), aligned with the plain codes' rows, in memory or lazy (a
dask array over the store): they are read in blocks of rows, so a lazy set is never loaded whole here.

Linear heads train on every view (the plain rows and their K views as (K + 1) x rows rows, which must fit in
memory); the dense head draws one of the K + 1 per row and epoch (one epoch's inputs are the size of the plain
codes, however large K; views are read BLOCK_BYTES at a time). Either way only the rows given train: a
held-out image's views never do."""
import numpy as np
import psutil

from cnncodes.features.errors import BadParameter

from .inputs import standardize

BLOCK_BYTES = 64 * 2**20  # views read at a time: memory stays flat however large K or dim
MEMORY_SHARE = 0.5  # of the memory available now, the most the stacked views of running linear heads may take


def view_count(X, views) -> int:
    """K, the views per row (0 without views), after checking that `views` lines up with the plain codes X."""
    if views is None:
        return 0
    if X.ndim != 2:
        raise BadParameter("views are pooled codes: a head trains on them beside pooled codes, not spatial maps "
                           "(drop --spatial, or train without views: --no-views)")
    shape = tuple(views.shape)
    if len(shape) != 3 or shape[0] != len(X) or shape[2] != X.shape[1]:
        raise ValueError(f"views of shape {shape} do not line up with codes of shape {X.shape}: "
                         f"expected ({len(X)}, K, {X.shape[1]})")
    return shape[1]


def block_rows(views) -> int:
    """Rows of views read at a time: BLOCK_BYTES of them."""
    return max(1, BLOCK_BYTES // (4 * views.shape[1] * views.shape[2]))


def view_blocks(views, rows):
    """(offset into `rows`, float32 block (len, K, dim)) over the given sorted rows, a block at a time; a lazy
    array is computed here, in this thread (never by a Dask client that may be busy running this very task).
    A block holds every view of its rows: the store keeps a row's views together."""
    rows, step = np.asarray(rows), block_rows(views)
    for start in range(0, len(rows), step):
        block = views[rows[start:start + step]]
        block = block.compute(scheduler="sync") if hasattr(block, "compute") else block
        block = np.asarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise BadParameter("the stored views hold NaN or inf: extract the feature set again "
                               "(with --precision bf16 or fp32 if it is fp16)")
        yield start, block


def stacked_bytes(rows: int, K: int, dim: int) -> int:
    """What a linear head's training data takes with every view stacked: (K + 1) x rows x (dim + a bias column)."""
    return (K + 1) * rows * (dim + 1) * 4


def check_memory(need: int, tasks: int = 1):
    """Refuses, in one line, stacked views that `tasks` heads training at once would hold beyond MEMORY_SHARE of
    the memory available now."""
    available = available_memory()
    if tasks * need > MEMORY_SHARE * available:
        who = f"{tasks} linear heads at once (--workers)" if tasks > 1 else "a linear head"
        raise BadParameter(f"training {who} on every view needs {tasks * need / 2**30:.1f} GiB, more than half the "
                           f"{available / 2**30:.1f} GiB available: use --head dense (which draws views per epoch, "
                           f"in flat memory), fewer views or workers, or --no-views")


def with_all_views(X, y, views, rows, scaler, bias: bool = False):
    """(codes, labels) for a linear head: the rows' plain codes X (standardised already), then every view of
    each row (row by row) standardised by `scaler`, the labels repeated to match; with `bias`, a last column of
    ones (the SVM's), so that no copy is made to add it. Refused, before it is built, when it would take more
    than MEMORY_SHARE of the memory available."""
    K, d = views.shape[1], X.shape[1]
    check_memory(stacked_bytes(len(rows), K, d))
    out = np.empty(((K + 1) * len(rows), d + bias), np.float32)
    if bias:
        out[:, d] = 1.0
    out[:len(rows), :d] = X[rows]
    for start, block in view_blocks(views, rows):
        first = len(rows) + start * K
        out[first:first + block.shape[0] * K, :d] = standardize(scaler, block.reshape(-1, d))
    return out, np.concatenate([y[rows], np.repeat(y[rows], K)])


def drawn_views(X, views, rows, scaler, rng) -> np.ndarray:
    """One epoch's inputs for a network head: for each row, its plain codes X (standardised already) or one of
    its K views standardised by `scaler`, drawn uniformly by `rng`."""
    K = views.shape[1]
    choice = rng.integers(K + 1, size=len(rows))  # 0: the plain codes
    out = X[rows]  # a copy: rows is an index array
    for start, block in view_blocks(views, rows):
        drawn = choice[start:start + len(block)]
        picked = np.flatnonzero(drawn)
        out[start + picked] = standardize(scaler, block[picked, drawn[picked] - 1])
    return out


def available_memory() -> int:
    return psutil.virtual_memory().available
