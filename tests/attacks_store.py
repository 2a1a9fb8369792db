"""Hostile-input rows: store. Each row is an Attack (tests/hostile.py); test_hostile.py runs them."""
from hostile import Attack

STORE_ATTACKS = [
    Attack("unknown feature set", ("fit", "--store", "{store}", "--head", "logreg", "--features", "nosuch"),
           "no feature set 'nosuch'"),
]
