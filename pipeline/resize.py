"""Bicubic resizing on the device, as two matrix products.

OpenCV's INTER_CUBIC (Keys kernel, a = -0.75, replicated border), which the reference work used,
written as a fixed interpolation matrix per axis. Unlike each backend's own bicubic resize, this is
the same on TensorFlow, JAX and PyTorch, and it compiles under XLA (TensorFlow's bicubic does not).
"""
import numpy as np

A = -0.75


def cubic_weights(t: np.ndarray) -> np.ndarray:
    """Keys weights of the 4 taps at offsets -1, 0, 1, 2 for fractional positions t."""
    t = t[:, None]
    d = np.abs(np.array([-1.0, 0.0, 1.0, 2.0])[None, :] - t)
    near = ((A + 2) * d - (A + 3)) * d * d + 1
    far = ((A * d - 5 * A) * d + 8 * A) * d - 4 * A
    return np.where(d <= 1, near, np.where(d < 2, far, 0.0))


def cubic_matrix(n_in: int, n_out: int) -> np.ndarray:
    """M (n_out x n_in) with resized = M @ signal, sampling pixel centres as OpenCV does."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    left = np.floor(src).astype(int)
    weights = cubic_weights(src - left)
    m = np.zeros((n_out, n_in))
    for tap in range(4):
        np.add.at(m, (np.arange(n_out), np.clip(left - 1 + tap, 0, n_in - 1)), weights[:, tap])
    return m.astype(np.float32)


def make_resize_layer(in_hw: tuple, size: int):
    import keras
    from keras import ops

    class BicubicResize(keras.layers.Layer):
        """uint8 (b, h, w, 3) -> float32 (b, size, size, 3) in 0..255, rounded like OpenCV's uint8 output."""

        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)
            self.rows = cubic_matrix(in_hw[0], size)
            self.cols = cubic_matrix(in_hw[1], size)
            self.identity = tuple(in_hw) == (size, size)

        def call(self, x):
            x = ops.cast(x, "float32")
            if self.identity:
                return x
            x = ops.einsum("Hh,bhwc->bHwc", ops.convert_to_tensor(self.rows), x)
            x = ops.einsum("Ww,bHwc->bHWc", ops.convert_to_tensor(self.cols), x)
            return ops.round(ops.clip(x, 0.0, 255.0))

        def compute_output_shape(self, input_shape):
            return (input_shape[0], size, size, input_shape[3])

    return BicubicResize(name="bicubic_resize")
