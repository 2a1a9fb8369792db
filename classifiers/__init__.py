"""Heads, image baselines and evaluation over the feature store."""
