"""`baseline finetune --from-features SET`: the layers above a cached cut train on its stored maps.

Below the unfreeze point the backbone is frozen, so its output for an image never changes: a set extracted
with `cnncodes features --layer X --spatial` holds it, and the fine-tune reads those maps instead of running
the bottom of the network again every epoch. The model above the cut shares its layers (and so its initial
weights, seeded as a fine-tune from pixels seeds them) with the whole fine-tune model. A set extracted with
`--views K` too holds the maps of K random-resized crops with flips of each training image: each epoch then
draws, per image, its plain maps or one of its views' (DrawnMaps), the augmentation a fine-tune from pixels
makes on the device."""
import math

import numpy as np

from cnncodes.classifiers.heads.views import available_memory
from cnncodes.features.errors import UserError
from cnncodes.features.feature_sets import FeatureSetInfo
from cnncodes.pipeline.backbones import get_backbone

from .networks import UNFREEZE_ALL, Built

MAPS_MEMORY_SHARE = 0.5  # of the memory available now, the most the training maps may take


def check_from_features(info: FeatureSetInfo, backbone: str, size: int, weights: str, seed: int) -> str:
    """The set's cut layer, when `info` holds maps this fine-tune can start from; else one line saying why."""
    name = info.name
    if info.parts:
        raise UserError(f"--from-features {name} joins several sets: name one set extracted with --spatial")
    if info.spatial_shape is None:
        raise UserError(f"--from-features {name} holds pooled codes only: extract the maps with `cnncodes features "
                        f"--backbone {backbone} --size {size} --layer LAYER --spatial`")
    config = info.config
    for key, wanted in (("backbone", backbone), ("size", size), ("weights", weights)):
        if config.get(key) != wanted:
            raise UserError(f"--from-features {name} was extracted with {key} {config.get(key)}, but the fine-tune "
                            f"asks for {wanted}: give --{key} {config.get(key)}, or extract the maps with {wanted}")
    if weights == "none" and config.get("seed", 0) != seed:
        raise UserError(f"--from-features {name} holds maps of random weights drawn with seed {config.get('seed', 0)}: "
                        f"give --seed {config.get('seed', 0)}")
    if config.get("flip_average"):
        raise UserError(f"--from-features {name} holds flip-averaged maps, which no image has: extract without "
                        f"--flip-average")
    if not config.get("layer"):
        raise UserError(f"--from-features {name} is cut at {backbone}'s last layer, which leaves nothing of it to "
                        f"train: extract with --layer at a block output below the unfreeze point")
    return config["layer"]


def check_memory(info: FeatureSetInfo, train_rows: int):
    """Refuses, in one line, maps (and the views' maps of the `train_rows` training rows) that would take more
    than MAPS_MEMORY_SHARE of the memory available now."""
    rows = info.n + info.views * train_rows
    need = 2 * rows * 2 * math.prod(info.spatial_shape[1:])  # float16, read whole, then split into train and test
    available = available_memory()
    if need > MAPS_MEMORY_SHARE * available:
        raise UserError(f"--from-features {info.name}: its maps take {need / 2**30:.1f} GiB while read, "
                        "more than half the "
                        f"{available / 2**30:.1f} GiB available: cut at a later layer (smaller maps), or fine-tune "
                        f"from pixels")


class DrawnMaps:
    """One epoch's inputs from cached maps with views: for each training row, its plain maps X or one of its K
    views' maps, drawn uniformly by the epoch's generator (SeededBatches's `inputs_for_epoch`), so a resumed
    epoch draws as it did."""

    def __init__(self, X: np.ndarray, view_maps: np.ndarray):
        if view_maps.shape[0] != len(X) or view_maps.shape[2:] != X.shape[1:]:
            raise ValueError(f"views' maps of shape {view_maps.shape} do not line up with maps of shape {X.shape}")
        self.X, self.view_maps = X, view_maps

    def __call__(self, rng, epoch: int | None = None) -> np.ndarray:
        choice = rng.integers(self.view_maps.shape[1] + 1, size=len(self.X))  # 0: the plain maps
        out = self.X.copy()
        picked = np.flatnonzero(choice)
        out[picked] = self.view_maps[picked, choice[picked] - 1]
        return out


def above_cut(built, backbone: str, layer: str, map_shape, unfreeze_from: str | None, train_batchnorm: bool):
    """The fine-tune model from `layer`'s maps (float16, as stored) to the class probabilities: the backbone's
    layers above the cut, then the same pooling and head, every layer shared with `built`."""
    import keras

    base = built.backbone
    names = [l.name for l in base.layers]
    start = unfreeze_from or get_backbone(backbone).last_stage
    if start == UNFREEZE_ALL or (start in names and names.index(start) <= names.index(layer)):
        raise UserError(f"--unfreeze-from {start} trains layers at or below {layer}, where the maps of --from-features "
                        f"were cut: unfreeze from a layer above it, or fine-tune from pixels")
    try:
        upper = keras.Model(base.get_layer(layer).output, base.output, name=f"{backbone}_above_cut")
    except ValueError:  # a skip connection jumps over the cut: the layers above need more than its output
        raise UserError(f"--from-features: {layer} is not a cut point of {backbone} (a skip connection crosses it): "
                        f"extract the maps at a block output, which `cnncodes layers {backbone}` marks") from None
    gap, hidden, output = built.model.layers[-3:]
    inputs = keras.Input(tuple(map_shape), dtype="float16", name="maps")
    x = keras.layers.Identity(dtype="float32", name="maps_to_float32")(inputs)
    x = upper(x) if train_batchnorm else upper(x, training=False)
    return Built(keras.Model(inputs, output(hidden(gap(x))), name="finetune_from_maps"), base)
