"""The backbone registry: every backbone cnncodes knows, its input convention, and how it is built.

Adding a backbone is one line in BACKBONES; its family module (`applications`, `efficientnet_lite`)
builds it with `imagenet`, a weights file or no weights. What is common to all of them (seeded
random weights, the cut at `--layer`, mixed precision, freezing) happens here.
"""
import difflib
import hashlib
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cnncodes.features.errors import UserError

from . import applications, efficientnet_lite

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclass(frozen=True)
class Backbone:
    name: str
    family: str            # the module that builds it: "applications" or "efficientnet_lite"
    preprocessing: str     # "caffe": BGR minus ImageNet mean; "tf": to -1..1; "lite": (x - 127) / 128
    last_stage: str        # first layer of its last stage: what `baseline finetune` unfreezes
    native_size: int = 224  # the input side its ImageNet weights were trained at
    min_size: int = 32     # the smallest input side it builds at (keras.applications refuse less than 32)


BACKBONES = {b.name: b for b in [
    Backbone("resnet50", "applications", "caffe", "conv5_block1_1_conv"),
    Backbone("vgg16", "applications", "caffe", "block5_conv1"),
    Backbone("mobilenet_v2", "applications", "tf", "block_16_expand"),
    Backbone("efficientnet_lite0", "efficientnet_lite", "lite", "block6a_expand_conv", 224, 1),
    Backbone("efficientnet_lite1", "efficientnet_lite", "lite", "block6a_expand_conv", 240, 1),
    Backbone("efficientnet_lite2", "efficientnet_lite", "lite", "block6a_expand_conv", 260, 1),
]}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


def check_size(name: str, size: int, option: str | None = None):
    """Stops before any work when `size` is under what backbone `name` builds at; `option` names the setting
    that gave it (--size by default)."""
    least = get_backbone(name).min_size
    if size < least:
        given, fix = (option, f"a side of {least}") if option else (f"--size {size}", f"--size {least}")
        raise UserError(f"{given} is too small for {name}, which takes at least {least}x{least} px: "
                        f"give {fix} or more (images are resized to it on the device)")


def family(spec: Backbone):
    return {"applications": applications, "efficientnet_lite": efficientnet_lite}[spec.family]


@contextmanager
def dtype_policy(precision: str):
    """Keras mixed precision for the layers built inside; variables stay float32."""
    import keras

    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r}: use one of {', '.join(PRECISIONS)}")
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(PRECISIONS[precision])
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def build_backbone(name: str, weights: str, size: int, layer: str | None = None, seed: int = 0,
                   precision: str = "fp32"):
    """The frozen backbone without its classifier, cut at `layer` (default: its last layer).

    `weights`: "imagenet" (its published ImageNet weights), "none" (seeded random initialisation) or
    the path of a weights file (see the family module for the formats it reads).
    """

    spec = get_backbone(name)
    with dtype_policy(precision), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = family(spec).build(name, size, None if weights == "none" else weights)
        if weights == "none":
            seeded_initialization(model, seed)  # reproducible and resumable random features
    model.trainable = False
    return model if layer is None else cut(model, name, [layer])


def cut(model, backbone: str, layers: list):
    """`model` up to the named layers (None: its last), one output each, sharing the model's layers.
    A single cut is the model `--layer` has always made, so its weights (and fingerprint) are unchanged."""
    import keras

    if layers == [None]:
        return model
    outputs = [model.output if l is None else named_layer(model, backbone, l).output for l in layers]
    label = "_".join(l or "last" for l in layers) if len(layers) < 4 else f"{len(layers)}_cuts"
    return keras.Model(model.input, outputs[0] if len(outputs) == 1 else outputs, name=f"{backbone}_{label}")


def block_of(layer: str) -> str:
    """The block a layer's name places it in: its name without the trailing words (and a sub-layer's
    number after a numbered block): block6a_expand_bn -> block6a, conv3_block2_1_conv -> conv3_block2."""
    if numbered := re.match(r"(block_?\d+[a-z]?)(_|$)", layer):  # block6a_..., block_5_..., VGG's block3_...
        return numbered.group(1)
    key = re.sub(r"(_[A-Za-z]+)+$", "", layer)
    return re.sub(r"(_[A-Za-z]*\d[A-Za-z0-9]*)_\d+$", r"\1", key)


def block_outputs(model) -> set[str]:
    """Layers that end a block and that every path from the input to the output goes through: where a
    cut keeps one whole representation (ResNet's conv3_block4_out, EfficientNet's block5c_add, VGG's
    block3_pool), not one branch of a block. Blocks are read from the layer names (`block6a_...`,
    `conv3_block2_...`, `block_5_...`)."""
    order = {l.name: i for i, l in enumerate(model.layers)}
    crossed = set()  # indices some edge jumps over: a skip connection's span
    for layer in model.layers:
        for node in layer._inbound_nodes:
            for t in node.input_tensors:
                source = order[t._keras_history.operation.name]
                crossed.update(range(source + 1, order[layer.name]))
    names = [l.name for l in model.layers]
    group = [block_of(n) for n in names]
    return {n for i, n in enumerate(names)
            if i not in crossed and i > 0 and (i + 1 == len(names) or group[i + 1] != group[i])}


def named_layer(model, backbone: str, layer: str):
    try:
        return model.get_layer(layer)
    except ValueError:
        names = [l.name for l in model.layers]
        close = difflib.get_close_matches(layer, names, n=3) or names[-3:]
        raise UserError(f"{backbone} has no layer {layer!r}: try {', '.join(close)} "
                        f"(`cnncodes layers {backbone}` lists all)") from None


def skeleton(backbone: str, weights_file: str | None = None):
    """The backbone built at 32 px (weights fit any input side), with a weights file or none: ImageNet weights
    are never fetched for a check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return family(get_backbone(backbone)).build(backbone, 32, weights_file)


def check_backbone(backbone: str, weights: str = "none", layer: str | list | None = None):
    """Stops before any work when a weights file does not load into the backbone, or a layer (one name or a
    list) is not in it. Builds it at 32 px (weights fit any input side); ImageNet weights are not fetched."""
    model = skeleton(backbone, None if weights in ("imagenet", "none") else weights)
    for name in [layer] if isinstance(layer, str) else layer or []:
        named_layer(model, backbone, name)


def check_layer(backbone: str, layer: str):
    """Stops before any work when `layer` is not in the backbone."""
    check_backbone(backbone, layer=layer)


def layer_after(backbone: str, layer: str) -> str:
    """The backbone's layer right after `layer`, in the order its layers run (a fine-tune from maps cut at
    `layer` trains from there)."""
    model = skeleton(backbone)
    names = [l.name for l in model.layers]
    named_layer(model, backbone, layer)
    if names.index(layer) + 1 == len(names):
        raise UserError(f"{layer} is {backbone}'s last layer: nothing above it to train")
    return names[names.index(layer) + 1]


def seeded_initialization(model, seed: int):
    """Re-draws every variable from its layer's own initializer, seeded by (seed, variable path).

    Keras seeds unseeded initializers from Python's process-wide `random` when a layer is made, and
    other threads (a Dask worker's, say) draw from it too; this makes the weights depend on `seed`
    and the architecture alone, in any process.
    """
    for layer in model.layers:
        for var in layer.weights:
            names = [f"{var.name}_initializer"] + (["depthwise_initializer"] if var.name == "kernel" else [])
            init = next((getattr(layer, n) for n in names if getattr(layer, n, None) is not None), None)
            if init is None:
                raise RuntimeError(f"no initializer found for {var.path}")
            config = init.get_config()
            if "seed" in config:
                config["seed"] = int(hashlib.sha256(f"{seed}/{var.path}".encode()).hexdigest()[:8], 16)
                init = init.__class__.from_config(config)
            var.assign(init(var.shape, dtype=var.dtype))


def make_preprocess_layer(mode: str):
    from cnncodes.pipeline.layers import Preprocess  # imports the backend: only where a model is built

    return Preprocess(mode, name=f"preprocess_{mode}")


def canonical_weights(weights: str) -> str:
    """imagenet or none in any case as those words; anything else is a file's path, as given."""
    return weights.lower() if str(weights).lower() in ("imagenet", "none") else weights


def checked_weights(weights: str, backbone: str | None = None) -> str:
    """--weights as given: imagenet or none in any case, else a file that exists and, given the backbone, is
    of a format its family reads. Checked before the backend starts, so a mistyped path or a file of the
    wrong kind is answered at once."""
    weights = canonical_weights(weights)
    if weights in ("imagenet", "none"):
        return weights
    if not Path(weights).is_file():
        raise UserError(f"--weights {weights}: no such file; give imagenet, none or the path of a weights file")
    if backbone is not None:
        family(get_backbone(backbone)).check_weights_file(backbone, weights)
    return weights
