"""Heads on cached codes (sklearn estimators), their registry, parameter rules and the inputs they learn from."""
