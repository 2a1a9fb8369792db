"""Head parameters as a user gives them (`--param KEY=VALUE`, `--param HEAD.KEY=VALUE`, `--epochs`), checked
and sent to the heads they belong to: the CLI and the Python API (fit_head, kfold_scores) share this one
reading, so a parameter is never dropped or refused in one and not the other."""
import numbers

import numpy as np

from cnncodes.features.errors import BadParameter, UserError

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
def _number(x) -> bool:
    return isinstance(x, numbers.Real) and not isinstance(x, bool)


def _integer(x) -> bool:
    return isinstance(x, numbers.Integral) and not isinstance(x, bool)


POSITIVE_NUMBER = ("a positive number", lambda x: _number(x) and x > 0)
FRACTION = ("a number from 0 to below 1", lambda x: _number(x) and 0 <= x < 1)
OPEN_FRACTION = ("a number between 0 and 1", lambda x: _number(x) and 0 < x < 1)
COUNT = ("a whole number of at least 1", lambda x: _integer(x) and x >= 1)
NATURAL = ("a whole number of at least 0", lambda x: _integer(x) and x >= 0)
SWITCH = ("true or false", lambda x: isinstance(x, bool))


def _or_null(rule):
    text, ok = rule
    return f"{text}, or null", lambda x: x is None or ok(x)


def _one_of(*names):
    return f"one of {', '.join(names)}", lambda x: x in names


VALUE_RULES = {
    "C": _or_null(POSITIVE_NUMBER),
    "Cs": ("a non-empty list of positive numbers, e.g. [0.1,1]",  # or a 1-d numpy array, as np.logspace gives
           lambda x: not isinstance(x, str) and np.ndim(x) == 1 and len(x) > 0 and all(POSITIVE_NUMBER[1](c) for c in x)),
    "cv": ("a whole number of at least 2", lambda x: _integer(x) and x >= 2),
    "tol": POSITIVE_NUMBER, "learning_rate": POSITIVE_NUMBER,
    "max_iter": COUNT, "hidden": COUNT, "epochs": COUNT, "batch_size": COUNT, "limit": COUNT,
    "width": COUNT, "size": ("a whole number from 8 to 1024", lambda x: _integer(x) and 8 <= x <= 1024),
    "depth": ("a whole number 6n+4 of at least 10, e.g. 28", lambda x: _integer(x) and x >= 10 and (x - 4) % 6 == 0),
    "patience": COUNT, "head_epochs": NATURAL, "seed": NATURAL, "random_state": _or_null(NATURAL),
    "verbose": ("true, false or a whole number of at least 0", lambda x: isinstance(x, bool) or NATURAL[1](x)),
    "dropout": FRACTION, "input_dropout": FRACTION, "label_smoothing": FRACTION,
    "validation_fraction": OPEN_FRACTION,
    "standardize": SWITCH, "probability": SWITCH,
    "optimizer": _one_of("adam", "sgd"), "precision": _one_of("fp32", "bf16", "fp16"),
    "backbone": ("a backbone name", lambda x: isinstance(x, str) and x != ""),
    "weights": ("imagenet, none or a weights file", lambda x: isinstance(x, str) and x != ""),
    "unfreeze_from": ("a layer name", lambda x: isinstance(x, str) and x != ""),
}
BASELINE_DEFAULTS = {"epochs", "patience", "limit", "learning_rate", "unfreeze_from"}  # null: the kind's default, or off


def check_value(head: str, name: str, value):
    """One error when `value` is not what parameter `name` takes (a name without a rule takes anything)."""
    text, ok = VALUE_RULES.get(name, ("", lambda x: True))
    if head in BASELINES and name in BASELINE_DEFAULTS:
        text, ok = _or_null((text, ok))
    if not ok(value):
        raise BadParameter(f"head {head}: {name} takes {text}, not {value!r}")


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
