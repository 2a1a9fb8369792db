"""The hostile-input table (issue 19): every attack on the store, the heads' parameters and the inputs,
one row each in tests/attacks_*.py, held to one promise (see tests/hostile.py)."""
import shutil

import pytest

from attacks_heads import HEADS_ATTACKS
from attacks_inputs import INPUTS_ATTACKS
from attacks_store import STORE_ATTACKS
from hostile import run_attack

ATTACKS = STORE_ATTACKS + HEADS_ATTACKS + INPUTS_ATTACKS


def test_attack_names_are_unique():
    names = [a.name for a in ATTACKS]
    assert len(names) == len(set(names))


@pytest.mark.parametrize("attack", ATTACKS, ids=str)
def test_attack_is_one_line_and_harms_nothing(attack, digits_store, tmp_path, monkeypatch):
    store = shutil.copytree(digits_store, tmp_path / "store")
    (tmp_path / "work").mkdir()
    monkeypatch.chdir(tmp_path / "work")  # nothing may be written where the user happens to stand
    run_attack(attack, store, tmp_path, monkeypatch)
    assert not any((tmp_path / "work").iterdir()), f"{attack.name} wrote into the current folder"
