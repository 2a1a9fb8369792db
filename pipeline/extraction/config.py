"""What decides a feature set's codes: its configuration (`FeatureConfig`), the record kept with it, and the
fingerprint that tells whether cached work can be reused."""
import json
import os
import re
from dataclasses import asdict, dataclass
from importlib.metadata import version
from pathlib import Path

from cnncodes.features.fingerprint import file_digest, fingerprint
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.backbones import canonical_weights, get_backbone

from .augment import Augmentation

FORMAT = 2  # bump when a change here alters the features for an unchanged configuration (2: folded BN)


@dataclass(frozen=True)
class FeatureConfig:
    backbone: str = "resnet50"
    weights: str = "imagenet"      # imagenet | none | PATH of a Keras weights file
    size: int = 224
    layer: str | None = None       # cut here; default: the backbone's last layer
    spatial: bool = False          # also keep the (float16) maps, not only their global average
    precision: str = "fp32"
    seed: int = 0                  # initialises --weights none
    flip_average: bool = False     # codes (and maps) averaged over the image and its mirror image
    views: int = 0                 # augmented views of each training image, stored beside the plain codes
    augmentation: Augmentation = Augmentation()  # how views are drawn (with `seed`)

    def __post_init__(self):  # weights="NONE" from a Python caller: the word, not a file
        object.__setattr__(self, "weights", canonical_weights(self.weights))
        if isinstance(self.augmentation, dict):  # as a feature set's config keeps it
            object.__setattr__(self, "augmentation", Augmentation(**self.augmentation))

    def default_name(self) -> str:
        w = {"imagenet": "imagenet", "none": f"none{self.seed}"}.get(self.weights,
                                                                      Path(self.weights).name.split(".")[0])
        parts = [self.backbone, self.layer or "pool", str(self.size), w, self.precision]
        parts += (["flip"] if self.flip_average else []) + (["spatial"] if self.spatial else [])
        parts += [f"views{self.views}"] if self.views else []
        return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts))


@dataclass
class ExtractResult:
    name: str
    status: str            # "extracted", "resumed" or "cached"
    rows: int
    seconds: float
    images_per_second: float
    path: Path


def config_record(config: FeatureConfig) -> dict:
    """The configuration as a set keeps it (JSON values). Views and their augmentation appear only when there
    are views, so a set without them is described as before."""
    record = asdict(config)
    if not config.views:
        del record["views"], record["augmentation"]
    return json.loads(json.dumps(record))


def feature_fingerprint(store: FeatureStore, config: FeatureConfig, weights_digest: str, cut_layer: str) -> str:
    import keras

    return fingerprint({
        "data": store.attrs["content_sha256"], "image_shape": list(store.image_shape),
        "backbone": config.backbone, "weights": weights_digest, "layer": cut_layer, "size": config.size,
        "interpolation": "opencv-bicubic-a-0.75-rounded", "precision": config.precision,
        "preprocessing": get_backbone(config.backbone).preprocessing, "spatial": config.spatial,
        **({"flip_average": True} if config.flip_average else {}),  # absent when off: older sets keep their fingerprint
        **({"views": config.views, "augmentation": asdict(config.augmentation), "seed": config.seed}
           if config.views else {}),  # the same: sets without views keep theirs
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(), "format": FORMAT},
    })


def setup_identity(config: FeatureConfig) -> dict:
    """What besides the configuration decides the codes and can be known without loading the backend:
    kept with a feature set, so a rerun can tell it is done in about a second."""
    identity = {"keras_version": version("keras"), "backend": configured_backend()}
    if Path(config.weights).is_file():
        identity["weights_file_sha256"] = file_digest(config.weights, "sha256")
    return identity


def configured_backend() -> str:
    """The backend Keras will load, read as Keras reads it: $KERAS_BACKEND, then keras.json."""
    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"
