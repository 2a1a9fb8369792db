"""What a fitted head says about rows beyond its class: its scores, and how sure it is of the class it gives.
Light on purpose (numpy only): fit, the baselines, predict and the report all read scores through here."""
import numpy as np


def scores(model, X) -> np.ndarray:
    """Class probabilities for heads that have them; the decision scores (margins) of those that do
    not (the SVM), which are not probabilities and are never shown as such."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    z = np.asarray(model.decision_function(X))
    return np.column_stack([-z, z]) if z.ndim == 1 else z  # two classes: one margin, for the second


def score_kind(model) -> str:
    return "probability" if hasattr(model, "predict_proba") else "decision score"


def predicted_with_confidence(model, X) -> tuple[np.ndarray, np.ndarray]:
    """(the classes `model.predict` gives, each one's score): the report orders wrong answers by it, surest first."""
    predicted = np.asarray(model.predict(X))
    columns = np.searchsorted(model.classes_, predicted)
    return predicted, np.take_along_axis(scores(model, X), columns[:, None], axis=1)[:, 0]
