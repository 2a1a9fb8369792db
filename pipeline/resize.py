"""Bicubic resizing on the device, as two matrix products.

OpenCV's INTER_CUBIC (Keys kernel, a = -0.75, replicated border), which the reference work used,
written as a fixed interpolation matrix per axis. Unlike each backend's own bicubic resize, this is
the same on TensorFlow, JAX and PyTorch, and it compiles under XLA (TensorFlow's bicubic does not).
A crop is the same product with the crop's source coordinates, a mirror image the column matrix reversed.
"""
import numpy as np

A = -0.75


def cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys weights of the 4 taps at offsets -1, 0, 1, 2 for fractional positions t (any shape)."""
    t = t[..., None]
    d = np.abs(np.array([-1.0, 0.0, 1.0, 2.0]) - t)
    near = ((A + 2) * d - (A + 3)) * d * d + 1
    far = ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def crop_matrices(starts, lengths, n_in: int, n_out: int) -> np.ndarray:
    """M (crops x n_out x n_in) with resized = M[k] @ signal: crop k (`lengths[k]` pixels from `starts[k]`)
    resized to n_out as OpenCV resizes the cropped image, pixel centres and replicated border included."""
    starts, lengths = np.asarray(starts)[:, None], np.asarray(lengths)[:, None]
    src = starts + (np.arange(n_out) + 0.5) * (lengths / n_out) - 0.5
    left = np.floor(src).astype(int)
    weights = cubic_weights(src - left)
    m = np.zeros((len(starts), n_out, n_in))
    crop, out = np.indices(src.shape)
    for tap in range(4):
        np.add.at(m, (crop, out, np.clip(left - 1 + tap, starts, starts + lengths - 1)), weights[..., tap])
    return m.astype(np.float32)


def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """M (n_out x n_in) with resized = M @ signal, sampling pixel centres as OpenCV does."""
    return crop_matrices([0], [n_in], n_in, n_out)[0]
