"""The EfficientNet-Lite family's builder: the network (lite_network.py) with its weights policy, ImageNet's
published checkpoint (converted once, lite_weights.py), a PyTorch state dict or Keras weights."""
from pathlib import Path

from cnncodes.features.errors import UserError

from .applications import check_keras_file, load_keras_weights
from .lite_network import efficientnet_lite
from .lite_weights import load_checkpoint, load_imagenet
from .torch_pickle import is_torch_file

KERAS_HOW = "cnncodes' {name} without its top, or give its PyTorch state dict"  # how to make a file that loads


def check_weights_file(name: str, path: str):
    """Stops, without the backend, when the file is neither a PyTorch file nor one Keras reads."""
    import h5py

    if h5py.is_hdf5(path):
        check_keras_file(path, name, KERAS_HOW.format(name=name))
    elif not is_torch_file(path):
        raise UserError(f"weights file {path} is not a usable {name} checkpoint: neither a PyTorch file (as "
                        f"torch.save writes them) nor a Keras weights file (.weights.h5)")


def build(name: str, size: int, weights: str | None):
    """Without its top. `weights`: None, "imagenet" (the published checkpoint, converted once into
    Keras's cache), or a file: a PyTorch state dict of this variant, or Keras weights without the top."""
    import h5py
    import keras

    if weights == "imagenet":
        full = efficientnet_lite(name, (size, size, 3), include_top=True)
        load_imagenet(full, name)
        return keras.Model(full.input, full.get_layer("top_activation").output, name=name)
    model = efficientnet_lite(name, (size, size, 3))
    if weights is not None:
        if Path(weights).is_file() and not h5py.is_hdf5(weights):
            load_checkpoint(model, weights, name)
        else:
            load_keras_weights(model, weights, name, KERAS_HOW.format(name=name))
    return model
