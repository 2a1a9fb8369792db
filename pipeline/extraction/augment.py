"""Augmented views of the training images: seeded random-resized crops and flips.

Each view's crop box and flip are drawn on the host from (seed, row, view) alone, so a view's codes do
not depend on chunking, batch size or resuming. The device applies them inside the compiled step, as
one interpolation matrix per axis and image (see resize.py).
"""
from dataclasses import dataclass

import numpy as np

from cnncodes.features.errors import MAX_VIEWS, UserError
from cnncodes.pipeline.resize import crop_matrices

MIN_SIDE = 8      # a stored side to crop from: a quarter of 8x8 (digits) still leaves 4x4 px
TRIES = 10        # draws of a box before falling back to the whole image, as torchvision's RandomResizedCrop


@dataclass(frozen=True)
class Augmentation:
    scale: tuple = (0.25, 1.0)       # the crop's area, as a fraction of the stored image's
    ratio: tuple = (3 / 4, 4 / 3)    # the crop's width / height, drawn log-uniform
    flip: float = 0.5                # chance of a horizontal flip

    def __post_init__(self):  # from a feature set's JSON config: lists
        object.__setattr__(self, "scale", tuple(float(s) for s in self.scale))
        object.__setattr__(self, "ratio", tuple(float(r) for r in self.ratio))
        if not (len(self.scale) == 2 and 0 < self.scale[0] <= self.scale[1] <= 1):
            raise UserError(f"augmentation scale {self.scale}: give (low, high) with 0 < low <= high <= 1")
        if not (len(self.ratio) == 2 and 0 < self.ratio[0] <= self.ratio[1]):
            raise UserError(f"augmentation ratio {self.ratio}: give (low, high) with 0 < low <= high")
        if not 0 <= self.flip <= 1:
            raise UserError(f"augmentation flip {self.flip}: give a chance from 0 to 1")


def check_views(views: int, side: int | None):
    """Views the store can give: checked before any work. `side`: the stored images' shorter side, when known."""
    if isinstance(views, bool) or not isinstance(views, int) or not 0 <= views <= MAX_VIEWS:
        raise UserError(f"--views {views!r}: give a whole number of views from 1 to {MAX_VIEWS}")
    if views and side is not None and side < MIN_SIDE:
        raise UserError(f"--views {views}: the stored images are {side} px a side, too small to crop; views need at "
                        f"least {MIN_SIDE} px: ingest with a larger --image-size into another --store")


def draw_box(augmentation: Augmentation, seed: int, row: int, view: int, h: int, w: int) -> tuple:
    """(top, left, height, width, flip) of one view of an h x w image: a crop of a random area and aspect
    ratio, as torchvision's RandomResizedCrop draws it, and a coin for the flip."""
    rng = np.random.default_rng([seed, row, view])
    box = (0, 0, h, w)
    log_ratio = np.log(augmentation.ratio)
    for _ in range(TRIES):
        area = h * w * rng.uniform(*augmentation.scale)
        ratio = np.exp(rng.uniform(*log_ratio))
        width, height = int(round(np.sqrt(area * ratio))), int(round(np.sqrt(area / ratio)))
        if 0 < width <= w and 0 < height <= h:
            box = (int(rng.integers(0, h - height + 1)), int(rng.integers(0, w - width + 1)), height, width)
            break
    return (*box, int(rng.random() < augmentation.flip))


def draw_boxes(augmentation: Augmentation, seed: int, rows, views: int, hw: tuple) -> np.ndarray:
    """Boxes (len(rows) * views, 5) int: every view of each row, row by row."""
    return np.array([draw_box(augmentation, seed, int(r), v, *hw) for r in rows for v in range(views)],
                    dtype=np.int64).reshape(-1, 5)


def view_matrices(boxes: np.ndarray, hw: tuple, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Row matrices (n, size, h) and column matrices (n, size, w) that crop, flip and resize each view."""
    rows = crop_matrices(boxes[:, 0], boxes[:, 2], hw[0], size)
    cols = crop_matrices(boxes[:, 1], boxes[:, 3], hw[1], size)
    flipped = boxes[:, 4].astype(bool)
    cols[flipped] = cols[flipped, ::-1]
    return rows, cols
