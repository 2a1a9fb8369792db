"""A pixel baseline's settings (`cnncodes baseline`, or kfold's cnn, finetune and wrn heads), and the name of
the run they make. Apart from train.py so that the head registry reads the settings' names without training."""
import hashlib
import json
from dataclasses import asdict, dataclass, field

from cnncodes.features.provenance import code_version
from cnncodes.pipeline.backbones import canonical_weights

DEFAULT_EPOCHS = {"cnn": 100, "finetune": 20, "wrn": 200, "airbench": 10}
# airbench's recipe (baselines/airbench.py) has its own label smoothing and weight decay, and sets its batch size
# and precision (None here) when it trains, by the training rows and the hardware (airbench.sized)
KIND_DEFAULTS = {"batch_size": ({"airbench": None}, 128), "precision": ({"airbench": None}, "fp32"),
                 "label_smoothing": ({"airbench": 0.2}, 0.0),
                 "weight_decay": ({"airbench": 0.0153}, 0.0)}
NULL_MEANS_DEFAULT = {"epochs", "patience", "limit", "per_class", "learning_rate", "unfreeze_from", "progressive_size",
                      "from_features", *KIND_DEFAULTS}  # null: the kind's default, or off


@dataclass(frozen=True)
class BaselineConfig:
    kind: str                        # cnn | finetune | wrn | airbench
    label: str | None = None
    epochs: int | None = None
    fold: int | None = None          # train on the other folds of the stored 6-fold split, test on this one
    k: int = 6
    batch_size: int | None = None    # None: the kind's (KIND_DEFAULTS)
    precision: str | None = None     # None: the kind's (fp32; airbench: bf16 where native, airbench.sized)
    seed: int = 0
    patience: int | None = None      # early stopping on a 10% validation slice when set
    limit: int | None = None         # a stratified subset of N training rows (quick runs)
    per_class: int | None = None     # a seeded draw of N training rows of each class (`curve`'s points)
    # finetune
    backbone: str = "resnet50"
    weights: str = "imagenet"
    size: int = 224
    head_epochs: int = 2             # phase 1: backbone frozen
    unfreeze_from: str | None = None  # a layer name, or "all": every layer trained in phase 2
    learning_rate: float | None = None
    label_smoothing: float | None = None  # every kind: 1 - s on the class, s over all classes (None: 0; airbench 0.2)
    weight_decay: float | None = None  # finetune's phase 2, wrn: decoupled, never on BatchNorm or biases; airbench:
                                       # its own form (0.0153 per 1024 images)
    warmup_epochs: int = 0           # finetune's phase 2: the rate rises from 0 over these epochs...
    cosine: bool = False             # ... then falls along a half cosine to 0 by the last epoch
    train_batchnorm: bool = False    # finetune's phase 2: BatchNorm trained, on batch statistics (frozen otherwise)
    crop_area: float = 1.0           # finetune: below 1, random-resized crops of this much of the area and more
    progressive_size: int | None = None  # finetune: the first progressive_epochs epochs at this smaller side...
    progressive_epochs: int = 0          # ... then the rest at `size`, with the same weights and optimizer state
    from_features: str | None = None     # finetune: train the layers above this set's cut on its stored maps
    test_sides: tuple = ()           # finetune from pixels: more input sides to score at, the validation slice choosing
    test_flip: bool = False          # from pixels: also score each image averaged with its mirror, if that
                                     # validates better
    # wrn
    depth: int = 28
    width: int = 10
    dropout: float = 0.0
    optimizer: str = "sgd"           # wrn: sgd (the paper's) or adam (the reference's); finetune's phase 2: sgd
                                     # (Nesterov momentum 0.9), adam or adamw
    extra: dict = field(default_factory=dict)

    def __post_init__(self):  # --weights NONE or a kfold --param finetune.weights=NONE: the word, not a file
        object.__setattr__(self, "weights", canonical_weights(self.weights))
        for name, (by_kind, default) in KIND_DEFAULTS.items():
            if getattr(self, name) is None:
                object.__setattr__(self, name, by_kind.get(self.kind, default))
        if isinstance(self.test_sides, (list, tuple)):  # a record's JSON list, or the CLI's in any order: one tuple
            object.__setattr__(self, "test_sides", tuple(sorted(set(self.test_sides))))

    @property
    def total_epochs(self) -> int:
        return self.epochs or DEFAULT_EPOCHS[self.kind]

    @property
    def final_learning_rate(self) -> float:
        """The rate of the last (or only) phase: the given one, or the kind's default."""
        if self.learning_rate:
            return float(self.learning_rate)  # Keras's optimizers refuse an int (--param learning_rate=1)
        return {"cnn": 1e-4, "finetune": 1e-4, "wrn": 1e-3 if self.optimizer == "adam" else 0.1,
                "airbench": 11.5}[self.kind]  # airbench: per 1024 images, in its decoupled form

    def size_at(self, epoch: int) -> int:
        """The input side of the epoch after `epoch` (0-based count of epochs done): progressive resizing."""
        return self.progressive_size if self.progressive_size and epoch < self.progressive_epochs else self.size

    def run_name(self, label: str) -> str:
        """`baseline-<kind>-<label>-<hash of the settings its checkpoints depend on and of the code>`; run
        folders are this name after a time stamp, like fit's. The same settings and code find their run
        again (to resume it, or to go on for more epochs); other settings, or other code, make a run of
        their own: a run's epochs are never trained by two versions of cnncodes."""
        key = json.dumps([resume_settings(asdict(self)), label, code_version()["source_sha256"]], sort_keys=True)
        return f"baseline-{self.kind}-{label}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


SCORING_SETTINGS = ("test_sides", "test_flip")  # how the kept weights are scored: never what they are


def resume_settings(config: dict) -> dict:
    """The settings a run's checkpoints depend on. --epochs may change (a longer run goes on where a
    shorter one ended), unless the learning-rate schedule is spread over the epochs (wrn with sgd, airbench, finetune
    with --cosine: a longer run's rate would jump back up from where the shorter one's reached 0); the
    test-time views may change too (a finished run is scored again, not trained again)."""
    settings = json.loads(json.dumps(config))
    for name in SCORING_SETTINGS:
        settings.pop(name, None)
    kind = settings["kind"]
    if (kind == "wrn" and settings["optimizer"] == "sgd") or (kind == "finetune" and settings.get("cosine")) or \
            kind == "airbench":
        settings["epochs"] = settings["epochs"] or DEFAULT_EPOCHS[kind]
    else:
        settings.pop("epochs")
    return settings
