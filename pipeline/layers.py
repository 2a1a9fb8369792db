"""The Keras layers cnncodes adds to a backbone, as module-level classes: the device resize, the views' crop
and resize, the backbones' preprocessing and the pass-through left where a BatchNorm was folded away. It
imports the backend at its top: the functions that build a model import it where they run, so quick
commands never load Keras."""
import keras
from keras import ops

from .resize import cubic_matrix


class BicubicResize(keras.layers.Layer):
    """uint8 (b, h, w, 3) -> float32 (b, size, size, 3) in 0..255, rounded like OpenCV's uint8 output."""

    def __init__(self, in_hw, size: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.in_hw, self.size = tuple(in_hw), size
        self.rows = cubic_matrix(self.in_hw[0], size)
        self.cols = cubic_matrix(self.in_hw[1], size)
        self.identity = self.in_hw == (size, size)

    def call(self, x):
        x = ops.cast(x, "float32")
        if self.identity:
            return x
        x = ops.einsum("Hh,bhwc->bHwc", ops.convert_to_tensor(self.rows), x)
        x = ops.einsum("Ww,bHwc->bHWc", ops.convert_to_tensor(self.cols), x)
        return ops.round(ops.clip(x, 0.0, 255.0))

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.size, self.size, input_shape[3])

    def get_config(self):
        return {**super().get_config(), "in_hw": list(self.in_hw), "size": self.size}


class CropResize(keras.layers.Layer):
    """[uint8 images (b, h, w, 3), row matrices (b, size, h), column matrices (b, size, w)] -> float32
    (b, size, size, 3) in 0..255: each image's own crop, flip and bicubic resize, rounded as OpenCV's."""

    def __init__(self, size: int, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.size = size

    def call(self, inputs):
        images, rows, cols = inputs
        x = ops.einsum("bih,bhwc,bjw->bijc", rows, ops.cast(images, "float32"), cols)
        return ops.round(ops.clip(x, 0.0, 255.0))

    def compute_output_shape(self, input_shapes):
        return (input_shapes[0][0], self.size, self.size, input_shapes[0][3])

    def get_config(self):
        return {**super().get_config(), "size": self.size}


class Preprocess(keras.layers.Layer):
    """The backbone's own input convention, applied to RGB 0..255 on the device: caffe (BGR, ImageNet means
    subtracted), lite (EfficientNet-Lite's (x - 127) / 128) or tf (-1..1)."""

    def __init__(self, mode: str, **kwargs):
        super().__init__(dtype="float32", **kwargs)
        self.mode = mode

    def call(self, x):
        if self.mode == "caffe":
            return ops.flip(x, axis=-1) - ops.convert_to_tensor([103.939, 116.779, 123.68])
        if self.mode == "lite":
            return (x - 127.0) / 128.0
        return x / 127.5 - 1.0

    def get_config(self):
        return {**super().get_config(), "mode": self.mode}


class FoldedBatchNorm(keras.layers.Layer):
    """Where a BatchNorm was folded into the convolution before it: a pass-through of the same name, so a cut
    at its name still gives what it gave."""

    def call(self, x, **kwargs):
        return x
