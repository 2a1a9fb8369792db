"""`digits`: scikit-learn's bundled 8x8 digits, the offline data set."""
import numpy as np

from .contract import Source, in_memory_source


def digits_source() -> Source:
    """The 1,797 digits (0..16 grey levels) as 8x8 RGB uint8; a row's origin is its load_digits index."""
    from sklearn.datasets import load_digits

    d = load_digits()
    grey = np.round(d.images * (255 / 16)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    return in_memory_source("digits", images, {"digit": d.target.astype(np.int64)},
                            {"digit": [str(i) for i in range(10)]}, None, "sklearn.datasets.load_digits",
                            origin=lambda i: f"load_digits[{i}]")
