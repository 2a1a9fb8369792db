"""Which heads exist: the heads over CNN codes, by name, and the pixel baselines that kfold also runs as
heads. Everything that lists or makes heads (parameters, saved models, kfold, the CLI's choices, the tests)
reads them here, so a head registered here is taken everywhere."""
from dataclasses import fields

from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features.errors import UserError

from .heads import DenseHead, GapHead, LogRegHead
from .knn import KnnHead
from .names import BASELINE_NAMES, HEAD_NAMES
from .svm import LinearSVM

HEADS = {"dense": DenseHead, "gap": GapHead, "svm": LinearSVM, "logreg": LogRegHead, "knn": KnnHead}
BASELINES = BASELINE_NAMES
if tuple(HEADS) != HEAD_NAMES:  # the command line offers names.py's list before this module loads
    raise ImportError(f"names.py lists the heads {HEAD_NAMES}, the registry {tuple(HEADS)}: make them the same")
NOT_BASELINE_PARAMS = {"kind", "label", "fold", "k", "extra"}  # set by kfold itself, or not an option


def make_head(name: str, **params):
    if name not in HEADS:
        raise UserError(f"unknown head {name!r}: use one of {', '.join(HEADS)}")
    return HEADS[name](**params)


def head_parameters(head: str) -> set[str]:
    """The parameters `head` takes; an unknown head is one UserError listing the heads."""
    if head in HEADS:
        return set(HEADS[head]().get_params())
    if head in BASELINES:
        return {f.name for f in fields(BaselineConfig)} - NOT_BASELINE_PARAMS
    raise UserError(f"unknown head {head!r}: use one of {', '.join(HEADS)} (or, in kfold, {', '.join(BASELINES)})")
