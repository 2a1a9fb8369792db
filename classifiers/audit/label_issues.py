"""Likely wrong labels, from out-of-sample class probabilities ranked by cleanlab (confident learning,
Northcutt et al. 2021): a row whose given label its held-out model finds unlikely, beyond what the class's
own confusion explains, is an issue; the model's most probable class is the suggestion.

Probabilities must come from models that never saw the row: training rows get theirs from the fold model
that left the row's fold out (the store's folds), test rows from a model of all training rows, which
never sees a test row either. The test split is judged on its own, so its per-class thresholds come from
probabilities of one kind (a model fitted on every training row is a little surer than a fold's)."""
import warnings
from dataclasses import dataclass

import numpy as np
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
# hour on 50,000 rows on two cores. C: the highest F1 for 60 moved labels among 2,000 CIFAR-10 photos
# (bench/audit.py, bench/HISTORY.md), where F1 varied little (0.28-0.29 for C 0.0003-0.003, 0.22 at 0.1).
LABEL_C = 0.0003
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


@dataclass
class LabelIssues:
    """Rows (positions in the labels given) whose label is likely wrong, most certain first."""
    rows: np.ndarray       # (issues,) int
    score: np.ndarray      # (issues,) 1 - cleanlab's self-confidence: the probability not on the given label
    suggested: np.ndarray  # (issues,) the most probable class


def label_issues(labels: np.ndarray, probs: np.ndarray) -> LabelIssues:
    """cleanlab's issues (pruned by noise rate) of labels against out-of-sample probabilities."""
    require_cleanlab()
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) == 0:
        return LabelIssues(np.empty(0, np.int64), np.empty(0), np.empty(0, np.int64))
    with warnings.catch_warnings():  # a warning a class for small splits (a test split of a few images a class)
        warnings.filterwarnings("ignore", message="May not flag all label issues")
        flagged = find_label_issues(labels, probs, return_indices_ranked_by="self_confidence", n_jobs=1)
    score = 1.0 - get_label_quality_scores(labels, probs, method="self_confidence")
    rows = np.asarray(flagged, np.int64)
    rows = rows[np.lexsort((rows, -score[rows]))]  # most certain first; ties in row order
    return LabelIssues(rows, score[rows], probs[rows].argmax(axis=1))
