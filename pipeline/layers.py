"""The Keras layers cnncodes adds to a backbone, as module-level classes: the device resize, the views' crop
and resize, the backbones' preprocessing and the pass-through left where a BatchNorm was folded away. It
imports the backend at its top: the functions that build a model import it where they run, so quick
commands never load Keras."""
import keras
import numpy as np
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
        # The products as pipeline/portable.py's matrix_resize takes them (the contracted axis last, a matmul
        # by the transposed matrix), so an exported model sums in the same order and rounds the same pixels:
        # an einsum here summed some near-half values to the other side (23 pixels in 2,000 photos).
        x = ops.matmul(ops.transpose(x, (0, 2, 3, 1)), ops.convert_to_tensor(self.rows.T))  # (b, w, c, H)
        x = ops.matmul(ops.transpose(x, (0, 3, 2, 1)), ops.convert_to_tensor(self.cols.T))  # (b, H, c, W)
        x = ops.transpose(x, (0, 1, 3, 2))
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


class RandomResizedCrop(keras.layers.Layer):
    """While training, each image becomes a random crop of `min_area` to all of its area (aspect ratio 3/4 to
    4/3, as the views' crops), flipped left-right with chance 1/2 and resized back to its own size (bilinear,
    reflecting at the border); at inference, the image itself. Draws come from the layer's seed generator,
    whose state a baseline's checkpoint keeps."""

    def __init__(self, min_area: float = 0.25, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.min_area, self.seed = float(min_area), seed
        self.seed_generator = keras.random.SeedGenerator(seed)

    def call(self, images, training=False):
        if not training:
            return images
        batch, h, w = ops.shape(images)[0], float(images.shape[1]), float(images.shape[2])

        def uniform(low, high):
            return keras.random.uniform((batch,), low, high, seed=self.seed_generator)

        area, aspect = uniform(self.min_area, 1.0), ops.exp(uniform(np.log(3 / 4), np.log(4 / 3)))
        sx, sy = ops.minimum(ops.sqrt(area * aspect), 1.0), ops.minimum(ops.sqrt(area / aspect), 1.0)
        x0, y0 = uniform(0.0, 1.0) * (1.0 - sx) * w, uniform(0.0, 1.0) * (1.0 - sy) * h
        flip = uniform(0.0, 1.0) < 0.5
        zero = ops.zeros_like(sx)
        # affine_transform maps each output pixel (x, y) to the input point (a0 x + a2, b1 y + b2)
        a0 = ops.where(flip, -sx, sx)
        a2 = ops.where(flip, x0 + (w - 1.0) * sx, x0)
        transform = ops.stack([a0, zero, a2, zero, sy, y0, zero, zero], axis=1)
        return ops.image.affine_transform(images, transform, interpolation="bilinear", fill_mode="reflect")

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "min_area": self.min_area, "seed": self.seed}


def make_resize_layer(in_hw: tuple, size: int) -> BicubicResize:
    """The device resize of (h, w) images to size x size."""
    return BicubicResize(in_hw, size, name="bicubic_resize")


def make_crop_resize_layer(size: int) -> CropResize:
    """The views' crop, flip and resize to size x size in one step."""
    return CropResize(size, name="crop_resize")
