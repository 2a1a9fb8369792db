"""The backbone registry: which Keras application, its input preprocessing, and how to load weights."""
import difflib
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass

from features.errors import UserError

PRECISIONS = {"fp32": "float32", "bf16": "mixed_bfloat16", "fp16": "mixed_float16"}


@dataclass(frozen=True)
class Backbone:
    name: str
    application: str       # constructor in keras.applications
    preprocessing: str     # "caffe": BGR minus ImageNet mean; "tf": scale to -1..1


BACKBONES = {
    "resnet50": Backbone("resnet50", "ResNet50", "caffe"),
    "vgg16": Backbone("vgg16", "VGG16", "caffe"),
    "mobilenet_v2": Backbone("mobilenet_v2", "MobileNetV2", "tf"),
}


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise UserError(f"unknown backbone {name!r}: use one of {', '.join(BACKBONES)}")
    return BACKBONES[name]


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
    """The frozen backbone without its classifier, cut at `layer` (default: its last layer)."""
    import keras

    spec = get_backbone(name)
    make = getattr(keras.applications, spec.application)
    with dtype_policy(precision), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if weights == "none":
            model = make(include_top=False, weights=None, input_shape=(size, size, 3))
            seeded_initialization(model, seed)  # reproducible and resumable random features
        elif weights == "imagenet":
            try:
                # Keras's own download-and-cache, checked against the file's published hash.
                model = make(include_top=False, weights="imagenet", input_shape=(size, size, 3))
            except Exception as e:
                cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models")
                raise UserError(f"ImageNet weights for {name} could not be loaded ({type(e).__name__}: "
                                f"{str(e).splitlines()[0][:120]}): connect to the network once, put the "
                                f"Keras weights file in {cache}, or pass --weights PATH") from None
        else:
            if not os.path.isfile(weights):
                raise UserError(f"weights file {weights} not found: pass imagenet, none or the path of a Keras weights file")
            model = make(include_top=False, weights=None, input_shape=(size, size, 3))
            try:
                model.load_weights(weights)
            except Exception as e:
                raise UserError(f"weights file {weights} does not fit {name} without its top "
                                f"({str(e).splitlines()[0][:160]}): save it from keras.applications."
                                f"{spec.application}(include_top=False)") from None
    model.trainable = False
    if layer is None:
        return model
    try:
        output = model.get_layer(layer).output
    except ValueError:
        names = [l.name for l in model.layers]
        close = difflib.get_close_matches(layer, names, n=3) or names[-3:]
        raise UserError(f"{name} has no layer {layer!r}: try {', '.join(close)} (`cnncodes layers {name}` lists all)") from None
    return keras.Model(model.input, output, name=f"{name}_{layer}")


def seeded_initialization(model, seed: int):
    """Re-draws every variable from its layer's own initializer, seeded by (seed, variable path).

    Keras seeds unseeded initializers from Python's process-wide `random` when a layer is made, and
    other threads (a Dask worker's, say) draw from it too; this makes the weights depend on `seed`
    and the architecture alone, in any process.
    """
    import hashlib

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
    import keras
    from keras import ops

    class Preprocess(keras.layers.Layer):
        """The backbone's own input convention, applied to RGB 0..255 on the device."""

        def __init__(self, **kwargs):
            super().__init__(dtype="float32", **kwargs)

        def call(self, x):
            if mode == "caffe":
                return ops.flip(x, axis=-1) - ops.convert_to_tensor([103.939, 116.779, 123.68])
            return x / 127.5 - 1.0

    return Preprocess(name=f"preprocess_{mode}")
