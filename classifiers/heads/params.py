"""Head parameters as a user gives them (`--param KEY=VALUE`, `--param HEAD.KEY=VALUE`, `--epochs`), checked
and sent to the heads they belong to: the CLI and the Python API (fit_head, kfold_scores) share this one
reading, so a parameter is never dropped or refused in one and not the other."""
from cnncodes.classifiers.training.baseline_config import NULL_MEANS_DEFAULT
from cnncodes.features.errors import UserError

from . import value_rules
from .registry import BASELINES, HEADS, head_parameters


def check_values(head: str, params: dict):
    """One error for the first value that is not what its parameter takes (value_rules.py's rules); a
    baseline's settings whose null means the kind's default may be null."""
    value_rules.check_values(head, params, nullable=NULL_MEANS_DEFAULT if head in BASELINES else ())


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
    owners = [h for h in (*HEADS, *BASELINES) if name in head_parameters(h)]
    return f"{', '.join(owners)} take{'s' if len(owners) == 1 else ''} it" if owners else "no head takes it"
