"""EfficientNet-Lite0/1/2 (Tan & Le 2019; the "Lite" variants for mobile) in Keras layers.

Lite differs from EfficientNet-B: ReLU6 instead of swish, no squeeze-excitation, and stem and head
kept fixed while width and depth scale. Convolutions pad as TensorFlow's "same" (the extra row and
column at the bottom and right), which is what the published weights were trained with and what
Keras's "same" does on every backend. Layer names follow keras.applications' EfficientNet
(`block6a_expand_conv`, `top_activation`, ...), so `--layer` cuts it like the other backbones.

`assign_state_dict` puts a PyTorch state dict of the same network (the published checkpoints' layout:
`_conv_stem`, `_bn0`, `_blocks.N._expand_conv` ..., `_conv_head`, `_bn1`, `_fc`) into the model.
"""
import math
from dataclasses import dataclass

import numpy as np

# (repeats, kernel, stride, expansion, input filters, output filters) per stage, for Lite0
STAGES = [(1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
          (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320)]
STEM, HEAD = 32, 1280
BN_EPSILON, BN_MOMENTUM = 1e-3, 0.99
# The reference implementation's initialisers (as keras.applications' EfficientNet has them): with
# Keras's default glorot, a depthwise kernel counts its input channels as fan-in, and random-weight
# activations shrink ~20x per stage until the codes are all zero.
CONV_INIT = {"class_name": "VarianceScaling",
             "config": {"scale": 2.0, "mode": "fan_out", "distribution": "truncated_normal"}}
DENSE_INIT = {"class_name": "VarianceScaling", "config": {"scale": 1 / 3, "mode": "fan_out", "distribution": "uniform"}}


@dataclass(frozen=True)
class Variant:
    width: float   # channel multiplier
    depth: float   # repeat multiplier (their native input sizes are in the registry)


VARIANTS = {"efficientnet_lite0": Variant(1.0, 1.0), "efficientnet_lite1": Variant(1.0, 1.1),
            "efficientnet_lite2": Variant(1.1, 1.2)}


def round_filters(filters: int, width: float, divisor: int = 8) -> int:
    """The reference implementation's channel rounding: nearest multiple of 8, never 10% below."""
    scaled = filters * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return int(rounded + divisor if rounded < 0.9 * scaled else rounded)


@dataclass(frozen=True)
class Block:
    name: str          # keras prefix, e.g. "block2a"
    index: int         # position in the checkpoint's `_blocks` list
    kernel: int
    stride: int
    expansion: int
    filters_in: int
    filters_out: int


def blocks(variant: Variant) -> list[Block]:
    """Every MBConv block of a variant; the first and last stages keep their repeats (fixed stem and head)."""
    out = []
    for stage, (repeats, kernel, stride, expansion, f_in, f_out) in enumerate(STAGES):
        if 0 < stage < len(STAGES) - 1:
            repeats = int(math.ceil(repeats * variant.depth))
        f_in = STEM if stage == 0 else round_filters(f_in, variant.width)
        f_out = round_filters(f_out, variant.width)
        for r in range(repeats):
            out.append(Block(f"block{stage + 1}{chr(ord('a') + r)}", len(out), kernel, stride if r == 0 else 1,
                             expansion, f_in if r == 0 else f_out, f_out))
    return out


def efficientnet_lite(name: str, input_shape, include_top: bool = False, classes: int = 1000):
    """The network as a functional Keras model on preprocessed input ((x - 127) / 128, RGB)."""
    import keras
    from keras import layers

    variant = VARIANTS[name]

    def conv(filters, kernel, stride, name):
        return layers.Conv2D(filters, kernel, stride, padding="same", use_bias=False, kernel_initializer=CONV_INIT,
                             name=name)

    def bn_relu(x, bn_name, relu_name=None):
        x = layers.BatchNormalization(epsilon=BN_EPSILON, momentum=BN_MOMENTUM, name=bn_name)(x)
        return layers.ReLU(6.0, name=relu_name)(x) if relu_name else x

    inputs = keras.Input(input_shape, name="input_layer")
    x = bn_relu(conv(STEM, 3, 2, "stem_conv")(inputs), "stem_bn", "stem_activation")
    for b in blocks(variant):
        shortcut, p = x, f"{b.name}_"
        if b.expansion != 1:
            x = conv(b.filters_in * b.expansion, 1, 1, p + "expand_conv")(x)
            x = bn_relu(x, p + "expand_bn", p + "expand_activation")
        x = layers.DepthwiseConv2D(b.kernel, b.stride, padding="same", use_bias=False, depthwise_initializer=CONV_INIT,
                                   name=p + "dwconv")(x)
        x = bn_relu(x, p + "bn", p + "activation")
        x = bn_relu(conv(b.filters_out, 1, 1, p + "project_conv")(x), p + "project_bn")
        if b.stride == 1 and b.filters_in == b.filters_out:
            x = layers.Add(name=p + "add")([x, shortcut])
    x = bn_relu(conv(HEAD, 1, 1, "top_conv")(x), "top_bn", "top_activation")
    if include_top:  # the ImageNet classifier, as logits (the checkpoint's dropout is a no-op at inference)
        x = layers.GlobalAveragePooling2D(name="avg_pool")(x)
        x = layers.Dense(classes, kernel_initializer=DENSE_INIT, name="predictions")(x)
    return keras.Model(inputs, x, name=name)


def checkpoint_names(name: str) -> dict[str, str]:
    """keras layer name -> the checkpoint's module name, for every layer that has weights."""
    names = {"stem_conv": "_conv_stem", "stem_bn": "_bn0", "top_conv": "_conv_head", "top_bn": "_bn1",
             "predictions": "_fc"}
    for b in blocks(VARIANTS[name]):
        t = f"_blocks.{b.index}."
        if b.expansion != 1:
            names.update({f"{b.name}_expand_conv": t + "_expand_conv", f"{b.name}_expand_bn": t + "_bn0"})
        names.update({f"{b.name}_dwconv": t + "_depthwise_conv", f"{b.name}_bn": t + "_bn1",
                      f"{b.name}_project_conv": t + "_project_conv", f"{b.name}_project_bn": t + "_bn2"})
    return names


def keras_arrays(layer, state: dict, module: str) -> list[np.ndarray]:
    """The layer's weights, in Keras order and layout, from the checkpoint's (N, C, H, W) tensors."""
    from keras import layers

    if isinstance(layer, layers.BatchNormalization):
        return [state[f"{module}.{k}"] for k in ("weight", "bias", "running_mean", "running_var")]
    if isinstance(layer, layers.DepthwiseConv2D):      # (C, 1, k, k) -> (k, k, C, 1)
        return [state[f"{module}.weight"].transpose(2, 3, 0, 1)]
    if isinstance(layer, layers.Conv2D):               # (out, in, k, k) -> (k, k, in, out)
        return [state[f"{module}.weight"].transpose(2, 3, 1, 0)]
    if isinstance(layer, layers.Dense):                # (out, in) -> (in, out)
        return [state[f"{module}.weight"].T, state[f"{module}.bias"]]
    raise TypeError(f"no checkpoint layout for {type(layer).__name__}")


def assign_state_dict(model, state: dict, name: str):
    """Sets every weight of `model` (with or without its top) from the checkpoint's arrays.

    Raises ValueError naming the first missing or misshapen tensor: a checkpoint of another variant
    or network does not load silently.
    """
    used = set()
    for layer_name, module in checkpoint_names(name).items():
        try:
            layer = model.get_layer(layer_name)
        except ValueError:
            continue  # the top, on a model without it
        try:
            arrays = keras_arrays(layer, state, module)
        except KeyError as e:
            raise ValueError(f"the checkpoint has no {e.args[0]}: it is not {name}") from None
        for var, array in zip(layer.weights, arrays):
            if tuple(var.shape) != array.shape:
                raise ValueError(f"{module} has shape {array.shape} where {name} needs {tuple(var.shape)}: "
                                 f"it is not {name}")
            var.assign(array.astype("float32"))
        used.update(k for k in state if k.startswith(module + "."))
    extra = sorted(k for k in state if k not in used and not k.endswith("num_batches_tracked")
                   and not k.startswith("_fc."))
    if extra:
        raise ValueError(f"the checkpoint has tensors {name} does not ({extra[0]} ...): it is another network")
