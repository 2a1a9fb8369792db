"""Backbones from keras.applications: their ImageNet weights come through Keras's own download-and-cache."""
import os
import zipfile

from cnncodes.features.errors import UserError

CONSTRUCTORS = {"resnet50": "ResNet50", "vgg16": "VGG16", "mobilenet_v2": "MobileNetV2"}


def build(name: str, size: int, weights: str | None):
    """The application without its top; `weights`: None, "imagenet" or a Keras weights file."""
    import keras

    make = getattr(keras.applications, CONSTRUCTORS[name])
    if weights == "imagenet":
        try:
            # Keras's own download-and-cache, checked against the file's published hash.
            return make(include_top=False, weights="imagenet", input_shape=(size, size, 3))
        except Exception as e:
            cache = os.path.join(os.environ.get("KERAS_HOME", "~/.keras"), "models")
            raise UserError(f"ImageNet weights for {name} could not be loaded ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120]}): connect to the network once, put the "
                            f"Keras weights file in {cache}, or pass --weights PATH") from None
    model = make(include_top=False, weights=None, input_shape=(size, size, 3))
    if weights is not None:
        load_keras_weights(model, weights, name, f"keras.applications.{CONSTRUCTORS[name]}(include_top=False)")
    return model


def check_weights_file(name: str, path: str):
    """Stops, without the backend, when Keras would refuse the file by its name or format."""
    check_keras_file(path, name, f"keras.applications.{CONSTRUCTORS[name]}(include_top=False)")


def check_keras_file(path: str, name: str, how: str):
    """A file Keras's load_weights reads: HDF5 named .weights.h5 or .h5 (.hdf5), a .keras zip, or the index of
    sharded weights (.weights.json, its shards beside it). Whether its weights fit the network is known only
    once it is built."""
    import h5py

    fits = (h5py.is_hdf5(path) if path.endswith((".h5", ".hdf5")) else
            zipfile.is_zipfile(path) if path.endswith(".keras") else path.endswith(".weights.json"))
    if not fits:
        raise UserError(f"weights file {path} is not a Keras weights file (HDF5 named .weights.h5 or .h5, or a "
                        f".keras file) for {name}: save it from {how}")


def load_keras_weights(model, path: str, name: str, how: str):
    """A weights file saved by Keras for this architecture without its top, or one clear error."""
    if not os.path.exists(path):
        raise UserError(f"weights file {path} not found: pass imagenet, none or the path of a Keras weights file")
    if not os.path.isfile(path):
        raise UserError(f"weights file {path} is not a file: pass imagenet, none or the path of a Keras weights file")
    try:
        model.load_weights(path)
    except Exception as e:
        why = " ".join(line.strip() for line in str(e).splitlines() if line.strip())[:240]
        raise UserError(f"weights file {path} does not fit {name} without its top ({why}): "
                        f"save it from {how}") from None
