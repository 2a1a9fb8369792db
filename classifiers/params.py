"""Head parameters as a user gives them (`--param KEY=VALUE`, `--param HEAD.KEY=VALUE`, `--epochs`), checked
and sent to the heads they belong to: the CLI and the Python API (fit_head, kfold_scores) share this one
reading, so a parameter is never dropped or refused in one and not the other."""
import math
import numbers
from pathlib import Path

import numpy as np

from cnncodes.features.errors import BadParameter, UserError
from cnncodes.features.limits import MAX_IMAGE_SIDE, MAX_SEED

BASELINES = ("cnn", "finetune", "wrn")  # pixel baselines: heads of kfold too
NOT_BASELINE_PARAMS = {"kind", "label", "fold", "k", "extra"}  # set by kfold itself, or not an option


def head_parameters(head: str) -> set[str]:
    """The parameters `head` takes; an unknown head is one UserError listing the heads."""
    from .heads import HEADS

    if head in HEADS:
        return set(HEADS[head]().get_params())
    if head in BASELINES:
        from dataclasses import fields

        from .train import BaselineConfig

        return {f.name for f in fields(BaselineConfig)} - NOT_BASELINE_PARAMS
    raise UserError(f"unknown head {head!r}: use one of {', '.join(HEADS)} (or, in kfold, {', '.join(BASELINES)})")


# -- what each parameter's value may be: one rule per name, as the names mean the same in every head --------
# Upper limits, each where a larger value breaks something or can mean nothing:
MAX_WHOLE = 2**31 - 1    # counts and sizes: what the backends' int32 shapes and counters hold
MAX_C = 1e6              # the SVM's float32 Newton steps overflow from C=1e10 on 600 digits (sooner on more
                         # rows); from about 1e4 a linear model on standardised codes is unregularised anyway
MAX_LEARNING_RATE = 10.0  # rates here are 1e-4..0.1; at 10 a dense head's loss is already 1e5, and from 1e4 (sgd)
                          # or 1e30 (adam) its weights become NaN, and its run record with them
MAX_TOL = 1.0            # at tol=1 logreg's lbfgs already stops before its first step (chance accuracy)
MAX_HIDDEN = 65536       # dense units; the weights' count is also checked against the codes' width at fit
MAX_WRN_DEPTH, MAX_WRN_WIDTH = 1000, 64  # a WRN-1000 or width 64 already fills a GPU at 32 px


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


def _backbone():
    from cnncodes.pipeline.backbones import BACKBONES  # the registry: a backbone added there is taken here

    return f"one of {', '.join(BACKBONES)}", lambda x: x in BACKBONES


def _weights(x) -> bool:
    from cnncodes.pipeline.backbones import canonical_weights

    return isinstance(x, str) and x != "" and (canonical_weights(x) in ("imagenet", "none") or Path(x).is_file())


VALUE_RULES = {
    "C": _or_null(C_VALUE),
    "Cs": ("a non-empty list of positive numbers up to 1e6, e.g. [0.1,1]",  # or a 1-d numpy array (np.logspace)
           lambda x: not isinstance(x, str) and np.ndim(x) == 1 and len(x) > 0 and all(C_VALUE[1](c) for c in x)),
    "cv": _whole(2, MAX_WHOLE, "a whole number of at least 2"),  # and at most the smallest class: checked at fit
    "tol": _positive(MAX_TOL, "1"), "learning_rate": _positive(MAX_LEARNING_RATE, "10"),
    "max_iter": COUNT, "epochs": COUNT, "batch_size": COUNT, "limit": COUNT, "patience": COUNT,
    "hidden": _whole(1, MAX_HIDDEN), "width": _whole(1, MAX_WRN_WIDTH),
    "size": _whole(8, MAX_IMAGE_SIDE),
    "depth": ("a whole number 6n+4 from 10 to 1000, e.g. 28",
              lambda x: _integer(x) and 10 <= x <= MAX_WRN_DEPTH and (x - 4) % 6 == 0),
    "head_epochs": _whole(0, MAX_WHOLE), "seed": NATURAL, "random_state": _or_null(NATURAL),
    "verbose": ("true, false or a whole number of at least 0", lambda x: isinstance(x, bool) or NATURAL[1](x)),
    "dropout": FRACTION, "input_dropout": FRACTION, "label_smoothing": FRACTION,
    "validation_fraction": OPEN_FRACTION,
    "standardize": SWITCH, "probability": SWITCH,
    "optimizer": _one_of("adam", "sgd"), "precision": _one_of("fp32", "bf16", "fp16"),
    "backbone": _backbone(),
    "weights": ("imagenet, none or a weights file that exists", _weights),
    "unfreeze_from": ("a layer name", lambda x: isinstance(x, str) and x != ""),  # checked in the network: train.py
}
BASELINE_DEFAULTS = {"epochs", "patience", "limit", "learning_rate", "unfreeze_from"}  # null: the kind's default, or off


def value_problem(name: str, value, nullable: bool = False) -> str | None:
    """"NAME takes WHAT, not VALUE" when `value` breaks parameter `name`'s rule (a name without one takes
    anything), else None."""
    text, ok = VALUE_RULES.get(name, ("", lambda x: True))
    if nullable:
        text, ok = _or_null((text, ok))
    return None if ok(value) else f"{name} takes {text}, not {value!r}"


def check_value(head: str, name: str, value):
    """One error when `value` is not what parameter `name` takes."""
    problem = value_problem(name, value, nullable=head in BASELINES and name in BASELINE_DEFAULTS)
    if problem:
        raise BadParameter(f"head {head}: {problem}")


def check_values(head: str, params: dict):
    for name, value in params.items():
        check_value(head, name, value)


def resolve_params(heads: list[str], params: dict, epochs: int | None = None) -> dict[str, dict]:
    """{head: {parameter: value}} for every head in `heads`.

    Keys of `params`: `HEAD.KEY` for one head (HEAD must be requested and take KEY), or a bare `KEY` for
    every requested head that takes it (at least one must); {HEAD: {KEY: value}} is read as HEAD.KEY
    (what this function returns, so its answer can be given again). `epochs` goes to the heads that
    take it. A head's own HEAD.KEY wins over a bare KEY, which wins over `epochs`."""
    takes = {h: head_parameters(h) for h in heads}
    resolved = {h: {} for h in heads}
    if epochs is not None:
        _give_to_all(resolved, takes, "epochs", epochs, "--epochs")
    per_head = []
    for key, value in params.items():
        if isinstance(value, dict):  # no parameter takes a dict: this is {HEAD: {KEY: value}}
            per_head += [(key, name, v) for name, v in value.items()]
        elif "." in key:
            per_head.append((*key.split(".", 1), value))
        else:
            _give_to_all(resolved, takes, key, value, f"--param {key}")
    for head, name, value in per_head:
        if head not in takes:
            head_parameters(head)  # an unknown head: its own error
            raise UserError(f"--param {head}.{name} is for head {head}, which is not requested "
                            f"(heads: {', '.join(heads)}): add --head {head}, or drop the parameter")
        if name not in takes[head]:
            raise UserError(f"head {head} has no parameter {name!r}: it takes {', '.join(sorted(takes[head]))}")
        resolved[head][name] = value
    for head, given in resolved.items():
        check_values(head, given)
    return resolved


def _give_to_all(resolved: dict, takes: dict, name: str, value, option: str):
    takers = [h for h in resolved if name in takes[h]]
    if not takers and len(resolved) == 1:
        (head,) = resolved
        raise UserError(f"{option}: head {head} has no parameter {name!r}: it takes {', '.join(sorted(takes[head]))}")
    if not takers:
        raise UserError(f"{option}: no requested head ({', '.join(resolved)}) takes {name!r}; {_who_takes(name)}")
    for head in takers:
        resolved[head][name] = value


def _who_takes(name: str) -> str:
    from .heads import HEADS

    owners = [h for h in (*HEADS, *BASELINES) if name in head_parameters(h)]
    return f"{', '.join(owners)} take{'s' if len(owners) == 1 else ''} it" if owners else "no head takes it"
