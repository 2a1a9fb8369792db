"""Hostile-input rows: inputs. Each row is an Attack (tests/hostile.py); test_hostile.py runs them."""
from hostile import Attack

INPUTS_ATTACKS = [
]
