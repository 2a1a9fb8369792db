"""The one compiled device step: uint8 images in, resized, preprocessed and through the cut backbone on the
device, pooled codes (and maps) out, in big batches; its views' twin; and the host-side prefetch that feeds it."""
import queue
import threading
import time
from dataclasses import replace

import numpy as np

from cnncodes.features.fingerprint import digest_arrays
from cnncodes.pipeline.backbones import build_backbone, cut, get_backbone, make_preprocess_layer

from .augment import draw_boxes, view_matrices
from .config import FeatureConfig
from .fold import fold_batch_norms


def build_extractor(config: FeatureConfig, image_hw: tuple):
    """The whole device step as one Keras model: uint8 images in, float32 pooled codes (and maps) out.

    Also returns the digest of the backbone's weights as loaded (before BatchNorm folding).
    """
    model, _, digests = build_multi_extractor(replace(config, views=0), image_hw, [config.layer])
    return model, digests[0]


def build_multi_extractor(config: FeatureConfig, image_hw: tuple, layers: list):
    """One device step that cuts the backbone at every layer in `layers` (None: its last) in one forward
    pass. Outputs per layer: its pooled codes, then its maps with `config.spatial`. Returns the model, the
    views' model (None without `config.views`: see `build_view_model`) and, per layer, the digest of the
    weights a single cut there holds (as loaded, before BatchNorm folding), so each layer's set has the
    fingerprint a one-layer run gives it."""
    import keras

    from cnncodes.pipeline.layers import make_resize_layer

    full = build_backbone(config.backbone, config.weights, config.size, None, config.seed, config.precision)
    digests = [digest_arrays(cut(full, config.backbone, [layer]).get_weights()) for layer in layers]
    backbone = fold_batch_norms(cut(full, config.backbone, list(layers)))
    images = keras.Input((*image_hw, 3), dtype="uint8", name="images")
    x = make_resize_layer(image_hw, config.size)(images)
    x = make_preprocess_layer(get_backbone(config.backbone).preprocessing)(x)
    maps = as_list(backbone(x, training=False))
    if config.flip_average:  # test-time augmentation: the mirror image's maps, mirrored back, averaged in
        def mirror(name):
            return keras.layers.Lambda(lambda t: keras.ops.flip(t, axis=2), name=name)

        mirrored = as_list(backbone(mirror("mirror_images")(x), training=False))
        maps = [keras.layers.Average(name=f"flip_average_{i}")([m, mirror(f"mirror_maps_{i}")(f)])
                for i, (m, f) in enumerate(zip(maps, mirrored))]
    outputs = []
    for i, m in enumerate(maps):
        outputs.append(keras.layers.GlobalAveragePooling2D(dtype="float32", name="pooled" + (f"_{i}" if i else ""))(m))
        if config.spatial:
            outputs.append(m)
    views = build_view_model(config, image_hw, backbone) if config.views else None
    return keras.Model(images, outputs, name="extractor"), views, digests


def build_view_model(config: FeatureConfig, image_hw: tuple, backbone):
    """The views' device step, sharing the folded backbone (and so its weights) with the plain one: uint8
    images with each one's row and column interpolation matrices (crop, flip, resize) in; out, per cut, as
    the plain step: its float32 pooled codes, then its maps with `config.spatial` (what a fine-tune from
    cached maps draws its augmented inputs from)."""
    import keras

    from cnncodes.pipeline.layers import make_crop_resize_layer

    images = keras.Input((*image_hw, 3), dtype="uint8", name="images")
    rows = keras.Input((config.size, image_hw[0]), dtype="float32", name="rows")
    cols = keras.Input((config.size, image_hw[1]), dtype="float32", name="cols")
    x = make_crop_resize_layer(config.size)([images, rows, cols])
    x = make_preprocess_layer(get_backbone(config.backbone).preprocessing)(x)
    maps = as_list(backbone(x, training=False))
    outputs = []
    for i, m in enumerate(maps):
        outputs.append(keras.layers.GlobalAveragePooling2D(dtype="float32", name=f"view_pooled_{i}")(m))
        if config.spatial:
            outputs.append(m)
    return keras.Model([images, rows, cols], outputs, name="view_extractor")


def as_list(x) -> list:
    return list(x) if isinstance(x, (list, tuple)) else [x]


class DeviceStep:
    """Runs the model on fixed-size batches (the last one padded) so the compiled step is traced once.
    A model of several inputs takes them as several arrays, row for row."""

    def __init__(self, model, batch_size: int, jit_compile="auto", log=print):
        self.model, self.batch_size, self.log = model, batch_size, log
        self.model.compile(jit_compile=jit_compile)
        self.checked = False

    def warm_up(self):
        """Traces and compiles the step on one batch, so the streaming loop runs compiled from its start."""
        self._predict([np.zeros((self.batch_size, *x.shape[1:]), x.dtype) for x in self.model.inputs])

    def _predict(self, x: list):
        x = x[0] if len(x) == 1 else x
        try:
            out = self.model.predict_on_batch(x)
        except Exception as e:
            if self.checked or self.model.jit_compile is False:
                raise
            # Some ops do not compile on some backends; run uncompiled rather than not at all.
            self.log(f"features: compiled step failed ({type(e).__name__}), running without jit_compile")
            self.model.compile(jit_compile=False)
            out = self.model.predict_on_batch(x)
        self.checked = True
        return out if isinstance(out, (list, tuple)) else [out]

    def __call__(self, *inputs: np.ndarray) -> list[np.ndarray]:
        outs = []
        for lo in range(0, len(inputs[0]), self.batch_size):
            batch = [x[lo:lo + self.batch_size] for x in inputs]
            n = len(batch[0])
            if n < self.batch_size:
                batch = [np.concatenate([x, np.zeros((self.batch_size - n, *x.shape[1:]), x.dtype)]) for x in batch]
            outs.append([np.asarray(o[:n]) for o in self._predict(batch)])
        return [np.concatenate(parts) for parts in zip(*outs)]


class ViewPass:
    """The views' part of a pass: which rows have views (the training split, rows 0..train_rows-1: ingest
    writes train rows first), the boxes of a chunk's views, and the step that computes their codes (and
    maps, with --spatial)."""

    def __init__(self, config: FeatureConfig, train_rows: int, image_hw: tuple, step: DeviceStep | None):
        self.config, self.train_rows, self.image_hw, self.step = config, train_rows, tuple(image_hw), step
        self.seconds = 0.0  # spent in the views' device step

    def rows_in(self, lo: int, count: int) -> int:
        """Training rows among rows lo..lo+count-1."""
        return max(0, min(lo + count, self.train_rows) - lo)

    def images_in(self, lo: int, count: int) -> int:
        """Images a chunk of `count` rows from `lo` puts through the device: its rows and their views."""
        return count + self.config.views * self.rows_in(lo, count)

    def boxes(self, lo: int, count: int) -> np.ndarray:
        """The chunk's views, row by row: drawn from (seed, row, view) alone, so chunking never changes them."""
        rows = range(lo, lo + self.rows_in(lo, count))
        return draw_boxes(self.config.augmentation, self.config.seed, rows, self.config.views, self.image_hw)

    def __call__(self, images: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
        """Per output of the views' step (pooled codes, and maps with --spatial, per cut), (rows, views, ...) for
        the views of `images`, the chunk's first rows."""
        start, k, outs = time.time(), self.config.views, []
        for lo in range(0, len(boxes), self.step.batch_size):  # matrices per batch: memory stays flat
            part = boxes[lo:lo + self.step.batch_size]
            rows, cols = view_matrices(part, self.image_hw, self.config.size)
            out = self.step(images[np.arange(lo, lo + len(part)) // k], rows, cols)
            outs.append([o.astype(np.float16) if o.ndim > 2 else o for o in out])  # maps: stored as float16
        self.seconds += time.time() - start
        return [np.concatenate(parts).reshape(-1, k, *parts[0].shape[1:]) for parts in zip(*outs)]


def prefetch(items, depth: int = 2):
    """Yields from `items`, produced on a background thread up to `depth` ahead."""
    q = queue.Queue(maxsize=depth)
    done = object()

    def run():
        try:
            for item in items:
                q.put(item)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)
        q.put(done)

    threading.Thread(target=run, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item
