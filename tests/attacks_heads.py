"""Hostile-input rows: heads. Each row is an Attack (tests/hostile.py); test_hostile.py runs them."""
from hostile import Attack

HEADS_ATTACKS = [
]
