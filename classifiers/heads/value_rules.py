"""What each head parameter's value may be: one rule per name, as the names mean the same in every head and
baseline. The leaf of classifiers/ (it imports no other module of it): every head's fit, the CLI, kfold and
predict check values by these rules."""
import math
import numbers
from pathlib import Path

import numpy as np

from cnncodes.features.errors import MAX_IMAGE_SIDE, MAX_SEED, BadParameter
from cnncodes.pipeline.backbones import BACKBONES, canonical_weights

# Upper limits, each where a larger value breaks something or can mean nothing:
MAX_WHOLE = 2**31 - 1    # counts and sizes: what the backends' int32 shapes and counters hold
MAX_C = 1e6              # the SVM's float32 Newton steps overflow from C=1e10 on 600 digits (sooner on more
                         # rows); from about 1e4 a linear model on standardised codes is unregularised anyway
MAX_LEARNING_RATE = 10.0  # rates here are 1e-4..0.1; at 10 a dense head's loss is already 1e5, and from 1e4 (sgd)
                          # or 1e30 (adam) its weights become NaN, and its run record with them
MAX_TOL = 1.0            # at tol=1 logreg's lbfgs already stops before its first step (chance accuracy)
MAX_HIDDEN = 65536       # dense units; the weights' count is also checked against the codes' width at fit
MAX_WRN_DEPTH, MAX_WRN_WIDTH = 1000, 64  # a WRN-1000 or width 64 already fills a GPU at 32 px
MAX_TEMPERATURE = 1e3    # knn's votes weigh exp(-difference in similarity / temperature), differences within 2: at
                         # 1e3 every weight is within 0.2% of 1 (a plain vote), so larger means nothing more


def _number(x) -> bool:
    """A real number that is finite: NaN and inf (JSON's NaN, Infinity, 1e309) never make a model."""
    if isinstance(x, bool) or not isinstance(x, numbers.Real):
        return False
    return isinstance(x, numbers.Integral) or math.isfinite(x)


def _integer(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


def _whole(low: int, high: int, text: str | None = None):
    return text or f"a whole number from {low} to {high}", lambda x: _integer(x) and low <= x <= high


def _positive(high: float, text: str):
    return f"a positive number up to {text}", lambda x: _number(x) and 0 < x <= high


C_VALUE = _positive(MAX_C, "1e6")
FRACTION = ("a number from 0 to below 1", lambda x: _number(x) and 0 <= x < 1)
OPEN_FRACTION = ("a number between 0 and 1", lambda x: _number(x) and 0 < x < 1)
COUNT = _whole(1, MAX_WHOLE, "a whole number of at least 1 (up to 2**31-1)")
NATURAL = _whole(0, MAX_SEED, "a whole number of at least 0 (up to 2**32-1)")
SWITCH = ("true or false", lambda x: isinstance(x, bool))


def _or_null(rule):
    text, ok = rule
    return f"{text}, or null", lambda x: x is None or ok(x)


def _one_of(*names):
    return f"one of {', '.join(names)}", lambda x: x in names


def _weights(x) -> bool:
    return isinstance(x, str) and x != "" and (canonical_weights(x) in ("imagenet", "none") or Path(x).is_file())


VALUE_RULES = {
    "C": _or_null(C_VALUE),
    "Cs": ("a non-empty list of positive numbers up to 1e6, e.g. [0.1,1]",  # or a 1-d numpy array (np.logspace)
           lambda x: not isinstance(x, str) and np.ndim(x) == 1 and len(x) > 0 and all(C_VALUE[1](c) for c in x)),
    "cv": _whole(2, MAX_WHOLE, "a whole number of at least 2"),  # and at most the smallest class: checked at fit
    "tol": _positive(MAX_TOL, "1"), "learning_rate": _positive(MAX_LEARNING_RATE, "10"),
    "ks": ("a non-empty list of whole numbers of at least 1, e.g. [1,5,20]",  # k beyond the rows: every row
           lambda x: not isinstance(x, str) and np.ndim(x) == 1 and len(x) > 0
           and all(_integer(k) and 1 <= k <= MAX_WHOLE for k in x)),
    "temperature": _positive(MAX_TEMPERATURE, "1000"),
    "max_iter": COUNT, "epochs": COUNT, "batch_size": COUNT, "limit": COUNT, "per_class": COUNT, "patience": COUNT,
    "hidden": _whole(1, MAX_HIDDEN), "width": _whole(1, MAX_WRN_WIDTH),
    "size": _whole(8, MAX_IMAGE_SIDE),
    "depth": ("a whole number 6n+4 from 10 to 1000, e.g. 28",
              lambda x: _integer(x) and 10 <= x <= MAX_WRN_DEPTH and (x - 4) % 6 == 0),
    "head_epochs": _whole(0, MAX_WHOLE), "seed": NATURAL, "random_state": _or_null(NATURAL),
    "verbose": ("true, false or a whole number of at least 0", lambda x: isinstance(x, bool) or NATURAL[1](x)),
    "dropout": FRACTION, "input_dropout": FRACTION, "label_smoothing": FRACTION,
    "validation_fraction": OPEN_FRACTION,
    "standardize": SWITCH, "probability": SWITCH,
    "optimizer": _one_of("adam", "sgd", "adamw"), "precision": _one_of("fp32", "bf16", "fp16"),
    "monitor": _one_of("accuracy", "loss"),
    "weight_decay": FRACTION, "crop_area": ("a number above 0 up to 1", lambda x: _number(x) and 0 < x <= 1),
    "warmup_epochs": _whole(0, MAX_WHOLE), "cosine": SWITCH, "train_batchnorm": SWITCH,
    "progressive_size": _or_null(_whole(8, MAX_IMAGE_SIDE)), "progressive_epochs": _whole(0, MAX_WHOLE),
    "test_sides": (f"a list of whole numbers from 8 to {MAX_IMAGE_SIDE}, e.g. [144, 160]",
                   lambda x: isinstance(x, (list, tuple)) and all(_integer(v) and 8 <= v <= MAX_IMAGE_SIDE for v in x)),
    "test_flip": SWITCH,
    "from_features": ("the name of a feature set with maps", lambda x: x is None or (isinstance(x, str) and x != "")),
    "backbone": (f"one of {', '.join(BACKBONES)}",  # the registry itself: a backbone added there is taken here
                 lambda x: isinstance(x, str) and x in BACKBONES),
    "weights": ("imagenet, none or a weights file that exists", _weights),
    "unfreeze_from": ("a layer name or all", lambda x: isinstance(x, str) and x != ""),  # checked in the network
}


def value_problem(name: str, value, nullable: bool = False) -> str | None:
    """"NAME takes WHAT, not VALUE" when `value` breaks parameter `name`'s rule (a name without one takes
    anything), else None."""
    text, ok = VALUE_RULES.get(name, ("", lambda x: True))
    if nullable:
        text, ok = _or_null((text, ok))
    return None if ok(value) else f"{name} takes {text}, not {value!r}"


def check_values(owner: str, params: dict, nullable=()):
    """One BadParameter, "head OWNER: NAME takes WHAT, not VALUE", for the first value that breaks its
    name's rule; the names in `nullable` take null as well."""
    for name, value in params.items():
        problem = value_problem(name, value, nullable=name in nullable)
        if problem:
            raise BadParameter(f"head {owner}: {problem}")
