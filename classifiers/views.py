"""Training on cached augmented views (`cnncodes features --views K`): what a head reads besides a training
row's plain codes. Views come as (rows, K, dim), aligned with the plain codes' rows, in memory or lazy (a
dask array over the store): they are read in blocks of rows, so a lazy set is never loaded whole here.

Linear heads train on every view (the plain rows and their K views as (K + 1) x rows rows, which must fit in
memory); the dense head draws one of the K + 1 per row and epoch (one epoch's inputs, the size of the plain
codes, however large K). Either way only the rows given train: a held-out image's views never do."""
import numpy as np
import psutil

from cnncodes.features.errors import BadParameter
from .inputs import standardize

BLOCK_ROWS = 2048  # rows of views read at a time: 2048 x K x dim float32
MEMORY_SHARE = 0.5  # of the memory available now, the most a linear head's stacked views may take


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


def view_blocks(views, rows):
    """(offset into `rows`, float32 block (len, K, dim)) over the given sorted rows, a block at a time; a lazy
    array is computed here, in this thread (never by a Dask client that may be busy running this very task)."""
    rows = np.asarray(rows)
    for start in range(0, len(rows), BLOCK_ROWS):
        block = views[rows[start:start + BLOCK_ROWS]]
        block = block.compute(scheduler="sync") if hasattr(block, "compute") else block
        block = np.asarray(block, dtype=np.float32)
        if not np.isfinite(block).all():
            raise BadParameter("the stored views hold NaN or inf: extract the feature set again "
                               "(with --precision bf16 or fp32 if it is fp16)")
        yield start, block


def with_all_views(X, y, views, rows, scaler):
    """(codes, labels) for a linear head: the rows' plain codes X (standardised already), then every view of
    each row (row by row) standardised by `scaler`, the labels repeated to match. Refused, before it is built, when it would take
    more than MEMORY_SHARE of the memory available."""
    K, d = views.shape[1], X.shape[1]
    need = (K + 1) * len(rows) * d * 4
    available = _available_memory()
    if need > MEMORY_SHARE * available:
        raise BadParameter(f"training a linear head on {K} views of {len(rows)} rows needs {need / 2**30:.1f} GiB, "
                           f"more than half the {available / 2**30:.1f} GiB available: use --head dense (which draws "
                           f"views per epoch, in flat memory), fewer views, or --no-views")
    out = np.empty(((K + 1) * len(rows), d), np.float32)
    out[:len(rows)] = X[rows]
    for start, block in view_blocks(views, rows):
        first = len(rows) + start * K
        out[first:first + block.shape[0] * K] = standardize(scaler, block.reshape(-1, d))
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


def _available_memory() -> int:
    return psutil.virtual_memory().available
