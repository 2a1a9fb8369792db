"""The extractor's device step rebuilt from Keras's own layers only, for a model that loads anywhere Keras does
(`keras.saving.load_model` in safe mode, TF Serving, TFLite) without cnncodes: the ingest's scaling and centre
crop and the device resize become Dense matrix products along each axis, OpenCV's rounding to uint8 a
Discretization at the half-integers, the preprocessing a Rescaling (or, for caffe's channel swap, a Dense
with a permutation), and the folded BatchNorms' pass-throughs Identity layers. Each part computes what the
extractor's own layer computes (tests/test_export_model.py holds them equal)."""
import cv2
import keras
import numpy as np

from cnncodes.features.fingerprint import digest_arrays
from cnncodes.pipeline.backbones import build_backbone, cut, get_backbone
from cnncodes.pipeline.images import scaled_size
from cnncodes.pipeline.resize import cubic_matrix

from .fold import fold_batch_norms

# x's bucket among these is round(x) as keras.ops.round gives it, halves to even: k + 0.5 goes up for odd k
# (boundary k + 0.5, counted in the upper bucket) and down for even k (boundary just above k + 0.5).
ROUNDING_BINS = [float(k + 0.5) if k % 2 else float(np.nextafter(np.float32(k + 0.5), np.float32(np.inf)))
                 for k in range(255)]
CAFFE_MEANS = [103.939, 116.779, 123.68]  # pipeline/layers.py's Preprocess, BGR order
CAFFE_WEIGHTS = [np.eye(3, dtype=np.float32)[::-1].copy(), -np.asarray(CAFFE_MEANS, np.float32)]  # x @ swap - means


def ingest_matrix(n_in: int, n_scaled: int, side: int) -> np.ndarray:
    """(side x n_in): the ingest's resize of one axis to n_scaled pixels, then its centred `side` pixels, as
    pipeline/images.py's fit_square does it. OpenCV resizes are linear in the pixels (area when shrinking,
    bicubic when enlarging), so the matrix is the resize of the identity, computed by OpenCV itself."""
    if n_in == n_scaled:
        m = np.eye(n_in, dtype=np.float32)
    else:
        interp = cv2.INTER_AREA if n_scaled < n_in else cv2.INTER_CUBIC
        # OpenCV resizes float32 images in float: the columns of the identity are the matrix's columns
        m = cv2.resize(np.eye(n_in, dtype=np.float32), (n_in, n_scaled), interpolation=interp)
    start = (n_scaled - side) // 2
    return m[start:start + side]


def fit_square_matrices(in_hw: tuple, side: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows, cols) matrices of the ingest rule for images of `in_hw`: shorter side scaled to `side`, centre crop."""
    h, w = in_hw
    nh, nw = scaled_size(h, w, side)
    return ingest_matrix(h, nh, side), ingest_matrix(w, nw, side)


def matrix_resize(x, rows: np.ndarray, cols: np.ndarray, name: str):
    """(b, h, w, c) float -> (b, H, W, c) = rows @ x @ cols^T per channel, clipped to 0..255 and rounded to
    integers as a uint8 image is, all in built-in layers (each Dense is built by its call, so it takes its
    matrix at once)."""
    layers = keras.layers
    x = layers.Permute((2, 3, 1), name=f"{name}_rows_last")(x)                       # (b, w, c, h)
    by_rows = layers.Dense(rows.shape[0], use_bias=False, name=f"{name}_rows")
    x = by_rows(x)                                                                    # (b, w, c, H)
    x = layers.Permute((3, 2, 1), name=f"{name}_cols_last")(x)                       # (b, H, c, w)
    by_cols = layers.Dense(cols.shape[0], use_bias=False, name=f"{name}_cols")
    x = by_cols(x)                                                                    # (b, H, c, W)
    by_rows.set_weights([rows.T])
    by_cols.set_weights([cols.T])
    x = layers.Permute((1, 3, 2), name=f"{name}_channels_last")(x)                   # (b, H, W, c)
    x = layers.ReLU(max_value=255.0, name=f"{name}_clip")(x)
    x = layers.Discretization(bin_boundaries=ROUNDING_BINS, output_mode="int", name=f"{name}_round")(x)
    return layers.Rescaling(1.0, name=f"{name}_float")(x)


def preprocess(x, mode: str, prefix: str):
    """The backbone's input convention on RGB 0..255 (pipeline/layers.py's Preprocess) in built-in layers."""
    if mode == "lite":
        return keras.layers.Rescaling(1 / 128, offset=-127 / 128, name=f"{prefix}preprocess_lite")(x)
    if mode == "tf":
        return keras.layers.Rescaling(1 / 127.5, offset=-1.0, name=f"{prefix}preprocess_tf")(x)
    caffe = keras.layers.Dense(3, name=f"{prefix}preprocess_caffe")  # RGB -> BGR, minus the means
    x = caffe(x)
    caffe.set_weights(CAFFE_WEIGHTS)
    return x


def portable_backbone(setup, layers: list):
    """(the frozen backbone cut at `layers`, BatchNorms folded, the folded ones' pass-throughs as Identity; per
    layer, the digest of the weights a single cut there holds, as pipeline/extract.py's extractor gives it)."""
    from cnncodes.pipeline.layers import FoldedBatchNorm

    full = build_backbone(setup.backbone, setup.weights, setup.size, None, setup.seed, setup.precision)
    digests = [digest_arrays(cut(full, setup.backbone, [layer]).get_weights()) for layer in layers]
    folded = fold_batch_norms(cut(full, setup.backbone, list(layers)))
    def call(layer, *args, **kwargs):  # the folded BatchNorms' nodes were called with mask=, which Identity refuses
        return layer(*args) if isinstance(layer, keras.layers.Identity) else layer(*args, **kwargs)

    return keras.models.clone_model(
        folded, call_function=call,
        clone_function=lambda l: keras.layers.Identity(name=l.name) if isinstance(l, FoldedBatchNorm) else l), digests

def portable_codes(images, in_hw: tuple, side: int, setup, layers: list, spatial: bool, prefix: str):
    """(symbolic outputs, the backbone weights' digest per layer): each layer's pooled codes, or its maps with
    `spatial`, of uint8 `images` of `in_hw`, as
    `cnncodes predict` computes them: fit_square to the store's `side`, the device resize to `setup.size`, the
    preprocessing, the backbone."""
    x = keras.layers.Rescaling(1.0, name=f"{prefix}uint8_to_float")(images)
    if tuple(in_hw) != (side, side):
        x = matrix_resize(x, *fit_square_matrices(in_hw, side), f"{prefix}ingest")
    if side != setup.size:
        x = matrix_resize(x, cubic_matrix(side, setup.size), cubic_matrix(side, setup.size), f"{prefix}resize")
    x = preprocess(x, get_backbone(setup.backbone).preprocessing, prefix)
    backbone, digests = portable_backbone(setup, layers)
    backbone = keras.Model(backbone.inputs, backbone.outputs, name=f"{prefix}{backbone.name}")  # unique in joins
    maps = backbone(x, training=False)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    outputs = maps if spatial else [keras.layers.GlobalAveragePooling2D(name=f"{prefix}pooled_{i}")(m)
                                    for i, m in enumerate(maps)]
    return outputs, digests


def portable_clone(model):
    """A trained `model` (a pixel baseline) for inference in built-in layers only: its own layers shared (so its
    trained weights), cnncodes' layers replaced by what they compute at inference: the device resize by
    matrix_resize, the preprocessing by preprocess, a folded BatchNorm's pass-through and the training-time
    random-resized crop by nothing."""
    from cnncodes.pipeline.layers import BicubicResize, FoldedBatchNorm, Preprocess, RandomResizedCrop

    def call(layer, *args, **kwargs):
        x = args[0]
        if isinstance(layer, BicubicResize):
            x = keras.layers.Rescaling(1.0, name=f"{layer.name}_cast")(x)
            return x if layer.identity else matrix_resize(x, layer.rows, layer.cols, layer.name)
        if isinstance(layer, Preprocess):
            return preprocess(x, layer.mode, f"{layer.name}_")
        if isinstance(layer, (FoldedBatchNorm, RandomResizedCrop)):
            return x
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=lambda layer: layer, call_function=call)
