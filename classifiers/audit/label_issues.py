"""Likely wrong labels, from calibrated out-of-sample class probabilities ranked by cleanlab (confident learning,
Northcutt et al. 2021): a row is flagged when cleanlab finds its given label unlikely beyond what the class's
own confusion explains, and its calibrated probability is below LABEL_PROBABILITY; the model's most probable
class is the suggestion.

cleanlab alone flags every row its model gets wrong with some confidence: with a model right 72% of the time
out of fold, 258 rows among 3,000 for 90 planted wrong labels (F1 0.45; bench/HISTORY.md). A planted wrong
label is an image of one class filed as another, most often one its model finds all but impossible, while a
hard image keeps some probability on its class: the calibrated probability's floor is what tells them apart.
Calibration (one temperature, fitted on the out-of-fold probabilities) makes the floor mean the same for any
features and head.

Probabilities must come from models that never saw the row: training rows get theirs from the fold model
that left the row's fold out (the store's folds), test rows from a model of all training rows, which
never sees a test row either. The test split is judged on its own, so its per-class thresholds come from
probabilities of one kind (a model fitted on every training row is a little surer than a fold's)."""
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from threadpoolctl import threadpool_limits

from cnncodes.classifiers.heads.inputs import fit_standardizer, standardize
from cnncodes.features.errors import UserError
from cnncodes.pipeline.console import progress_bar

try:  # an optional extra: `pip install cnncodes[audit]`
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores
except ImportError:
    find_label_issues = get_label_quality_scores = None

# The fold models are standardised logistic regression (LogRegHead's model) at one C, not LogRegHead's
# holdout search over six: k + 1 fits instead of 7 (k + 1), the difference between minutes and most of an
# hour on 50,000 rows on two cores. C and the floor: the highest F1 for planted wrong labels on the design draw
# of bench/audit.py's planted photos (bench/HISTORY.md), measured on another draw.
LABEL_C = 0.003
LABEL_PROBABILITY = 0.01
MAX_ITER, TOL = 1000, 1e-4  # LogRegHead's
# lbfgs's many small products gain little from a second BLAS thread and lose much when the cores are busy:
# one fit on 40,000 x 1,280 codes took 16 s with one thread, 85 s with two beside a running benchmark
# (0.4 s against 14 s for the tests' whole audit), as kfold's fold tasks also found.
BLAS_THREADS = 1


def require_cleanlab():
    """One line naming the fix when cleanlab, an optional extra, is missing; before any work."""
    if find_label_issues is None:
        raise UserError("the audit's label check needs cleanlab, which is not installed: pip install cnncodes[audit]")


def fitted_model(X, y, C: float):
    """(scaler, model): standardised L2 multinomial logistic regression, as LogRegHead fits it."""
    scaler = fit_standardizer(X)
    return scaler, LogisticRegression(C=C, max_iter=MAX_ITER, tol=TOL).fit(standardize(scaler, X), y)


def probabilities(scaler, model, X, n_classes: int) -> np.ndarray:
    """(rows, n_classes) probabilities; a class the model never saw gets probability 0."""
    out = np.zeros((len(X), n_classes))
    out[:, model.classes_] = model.predict_proba(standardize(scaler, X))
    return out


def held_out_probabilities(X_train, y_train, folds, X_test, n_classes: int, C: float = LABEL_C,
                           progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(training rows' probabilities, each from the model fitted on every other fold; test rows' probabilities
    from the model fitted on every training row)."""
    train_probs = np.empty((len(y_train), n_classes))
    k = int(folds.max()) + 1
    with progress_bar(total=k + 1, desc="audit: label models", unit="fit", disable=not progress) as bar, \
            threadpool_limits(limits=BLAS_THREADS):
        for fold in range(k):
            held = folds == fold
            scaler, model = fitted_model(X_train[~held], y_train[~held], C)
            train_probs[held] = probabilities(scaler, model, X_train[held], n_classes)
            bar.update()
        test_probs = np.empty((0, n_classes))
        if len(X_test):
            scaler, model = fitted_model(X_train, y_train, C)
            test_probs = probabilities(scaler, model, X_test, n_classes)
        bar.update()
    return train_probs, test_probs


def fitted_temperature(probs: np.ndarray, labels: np.ndarray) -> float:
    """The temperature T that makes softmax(log p / T) fit the given labels best (least log loss): > 1 softens an
    overconfident model, < 1 sharpens a timid one (a strongly regularised one)."""
    if len(labels) == 0:
        return 1.0
    rows = np.arange(len(labels))
    return float(minimize_scalar(lambda t: -np.log(tempered(probs, t)[rows, labels] + 1e-12).mean(),
                                 bounds=(0.05, 20.0), method="bounded").x)


def tempered(probs: np.ndarray, temperature: float) -> np.ndarray:
    logits = np.log(np.clip(probs, 1e-12, 1.0)) / temperature
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return out / out.sum(axis=1, keepdims=True)


@dataclass
class LabelIssues:
    """Rows (positions in the labels given) whose label is likely wrong, most certain first."""
    rows: np.ndarray       # (issues,) int
    score: np.ndarray      # (issues,) 1 - cleanlab's self-confidence: the probability not on the given label
    suggested: np.ndarray  # (issues,) the most probable class


def label_issues(labels: np.ndarray, probs: np.ndarray, below: float = LABEL_PROBABILITY) -> LabelIssues:
    """cleanlab's issues (self-confidence below its class's threshold) of labels against calibrated
    out-of-sample probabilities, those whose given label's probability is below `below`."""
    require_cleanlab()
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return LabelIssues(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    with warnings.catch_warnings():  # a warning a class for small splits (a test split of a few images a class)
        warnings.filterwarnings("ignore", message="May not flag all label issues")
        flagged = find_label_issues(labels, probs, filter_by="low_self_confidence",
                                    return_indices_ranked_by="self_confidence", n_jobs=1)
    score = 1.0 - get_label_quality_scores(labels, probs, method="self_confidence")
    rows = np.asarray(flagged, np.int64)
    rows = rows[score[rows] > 1.0 - below]
    rows = rows[np.lexsort((rows, -score[rows]))]  # most certain first; ties in row order
    return LabelIssues(rows, score[rows], probs[rows].argmax(axis=1))
