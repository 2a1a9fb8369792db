"""Evaluation from the store: fit a head, k-fold, sweep feature sets, label curves."""
