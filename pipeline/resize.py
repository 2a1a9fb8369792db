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


def make_crop_resize_layer(size: int):
    import keras
    from keras import ops

    class CropResize(keras.layers.Layer):
        """[uint8 images (b, h, w, 3), row matrices (b, size, h), column matrices (b, size, w)] -> float32
        (b, size, size, 3) in 0..255: each image's own crop, flip and bicubic resize, rounded as OpenCV's."""

        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)

        def call(self, inputs):
            images, rows, cols = inputs
            x = ops.einsum("bih,bhwc,bjw->bijc", rows, ops.cast(images, "float32"), cols)
            return ops.round(ops.clip(x, 0.0, 255.0))

        def compute_output_shape(self, input_shapes):
            return (input_shapes[0][0], size, size, input_shapes[0][3])

    return CropResize(name="crop_resize")
