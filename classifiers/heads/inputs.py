"""What every head does to its data before it learns, each in one place: input validation (scikit-learn's
own), label encoding, standardisation and the holdout slice."""
import numpy as np
from sklearn.preprocessing import LabelEncoder, StandardScaler
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data

from cnncodes.features.errors import UserError
from cnncodes.features.folds import stratified_subset

from .value_rules import check_values

# A feature whose spread is below this fraction of the features' mean spread counts as constant. A nearly
# dead ReLU channel (train std 4e-6) divided by its own std turned a test activation of 0.5 into 1e5,
# and one test accuracy from 0.995 into 0.496; StandardScaler alone only catches exactly constant ones.
NEGLIGIBLE_SPREAD = 1e-3
CHUNK_ROWS = 65536  # rows per standardisation pass: memory stays flat on spatial maps


def training_data(head, X, y):
    """(X as float32, y as class codes 0..K-1): validated as scikit-learn does, which also refuses NaN and
    inf; spatial maps (n, h, w, c) are allowed. Sets n_features_in_ and classes_. The head's parameters
    are checked first, by the rules the command line uses, then against the data (head.check_data)."""
    check_values(type(head).__name__, head.get_params())
    X, y = validate_data(head, X, y, allow_nd=True, dtype=np.float32)
    check_classification_targets(y)
    encoder = LabelEncoder().fit(y)
    if len(encoder.classes_) < 2:
        raise ValueError(f"{type(head).__name__} needs samples of at least 2 classes; the data has 1 class")
    codes = encoder.transform(y)
    head.check_data(X.shape[1:], np.bincount(codes))
    head.classes_ = encoder.classes_
    return X, codes


def new_data(head, X):
    """X to predict on, checked against what the head was fitted on."""
    check_is_fitted(head)
    return validate_data(head, X, reset=False, allow_nd=True, dtype=np.float32)


def as_vectors(X) -> np.ndarray:
    """float32 rows; spatial maps (n, h, w, c) are averaged to their pooled vectors (n, c)."""
    X = np.asarray(X, dtype=np.float32)
    return X.mean(axis=tuple(range(1, X.ndim - 1))) if X.ndim > 2 else X


def fit_standardizer(X) -> StandardScaler:
    """A StandardScaler per channel (the last axis: over samples and, on spatial maps, positions) in which
    features of negligible spread are constant: scale 1, as StandardScaler gives exactly constant ones."""
    rows = X.reshape(-1, X.shape[-1])
    scaler = StandardScaler()
    for start in range(0, len(rows), CHUNK_ROWS):
        scaler.partial_fit(rows[start:start + CHUNK_ROWS])
    spread = np.sqrt(scaler.var_)
    scaler.scale_[spread < NEGLIGIBLE_SPREAD * spread.mean()] = 1.0
    return scaler


def standardize(scaler: StandardScaler | None, X) -> np.ndarray:
    """X standardised per channel by a fitted scaler (None: unchanged), float32, any number of axes."""
    if scaler is None:
        return X
    return scaler.transform(X.reshape(-1, X.shape[-1])).reshape(X.shape).astype(np.float32, copy=False)


def holdout(y, fraction, seed):
    """(fit rows, validation rows): a seeded stratified slice that works for any class count,
    even when the slice is smaller than the number of classes."""
    held = max(1, int(round(fraction * len(y))))
    if held >= len(y):
        raise UserError(f"validation_fraction {fraction:g} of {len(y)} training rows holds out every one, leaving "
                        f"none to train on: give a smaller validation_fraction")
    val = np.zeros(len(y), bool)
    val[stratified_subset(np.asarray(y), held, seed)] = True
    return np.flatnonzero(~val), np.flatnonzero(val)
