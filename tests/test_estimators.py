"""The heads are scikit-learn estimators in full: scikit-learn's own estimator checks, through
parametrize_with_checks. Before issue 14, LinearSVM failed 19 of 55 and LogRegHead 15 (list labels,
a two-class decision_function of shape (n, 2), no n_features_in_, no input validation)."""
import os

import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from cnncodes.classifiers.heads.heads import DenseHead, GapHead, LogRegHead
from cnncodes.classifiers.heads.knn import KnnHead
from cnncodes.classifiers.heads.registry import HEADS
from cnncodes.classifiers.heads.svm import LinearSVM


def calibration_ranks_differently(estimator) -> dict:
    """The one check a calibrated SVM fails, as scikit-learn's SVC(probability=True) does: it asks that
    predict agree with the argmax of both decision_function and predict_proba, and the per-class sigmoids
    fitted on held-out scores may rank a few rows differently from the raw scores that predict uses."""
    if getattr(estimator, "probability", False):
        return {"check_classifiers_train": "Platt-scaled probabilities may disagree with the SVM's own argmax"}
    return {}


LINEAR_HEADS = [LinearSVM(), LinearSVM(probability=True), LogRegHead()]


@parametrize_with_checks(LINEAR_HEADS, expected_failed_checks=calibration_ranks_differently, xfail_strict=True)
def test_linear_head_passes_every_estimator_check(estimator, check):
    check(estimator)


# Tiny networks that still learn scikit-learn's small test problems in 5 epochs. With these settings the
# Keras heads pass all 55 checks (none is an expected failure: every draw comes from random_state, so
# even fit idempotence and subset invariance hold). The checks below train a network 3 to 8 times each
# (about 2 s apiece); they run when CNNCODES_ALL_CHECKS is set, the rest always.
KERAS_HEADS = [DenseHead(epochs=5, hidden=16, batch_size=32, learning_rate=1e-2, patience=2),
               GapHead(epochs=5, batch_size=32, learning_rate=5e-2, patience=2)]
SLOW_ON_A_NETWORK = {
    "check_classifiers_train", "check_classifiers_classes", "check_fit_score_takes_y", "check_estimators_dtypes",
    "check_methods_subset_invariance", "check_methods_sample_order_invariance", "check_supervised_y_2d",
    "check_pipeline_consistency", "check_fit_idempotent", "check_classifier_data_not_an_array",
    "check_n_features_in_after_fitting", "check_estimators_nan_inf", "check_estimators_overwrite_params",
    "check_estimators_fit_returns_self", "check_f_contiguous_array_estimator", "check_positive_only_tag_during_fit",
}


@parametrize_with_checks(KERAS_HEADS)
def test_keras_head_passes_the_estimator_checks(estimator, check):
    if getattr(check, "func", check).__name__ in SLOW_ON_A_NETWORK and not os.environ.get("CNNCODES_ALL_CHECKS"):
        pytest.skip("trains several networks: set CNNCODES_ALL_CHECKS=1 to run it")
    check(estimator)


# The knn head searches its training codes: each check takes milliseconds, so all of them always run.
SEARCH_HEADS = [KnnHead(), KnnHead(standardize=True)]


@parametrize_with_checks(SEARCH_HEADS)
def test_search_head_passes_every_estimator_check(estimator, check):
    check(estimator)


def test_every_registered_head_is_checked():
    assert {type(head) for head in LINEAR_HEADS + KERAS_HEADS + SEARCH_HEADS} == set(HEADS.values())
