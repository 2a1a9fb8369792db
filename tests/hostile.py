"""The hostile-input table's harness. An attack is one row: what is done to a store or to the input
before, the command a user then runs, and the one line that must answer it. Adding an attack is adding
a row to one of the lists in tests/attacks_*.py; `test_hostile.py` runs them all.

Every attack is held to the same promise: a non-zero exit, exactly one line on stderr that starts with
`error:` and matches the row's pattern, no traceback, no terminal control characters, and nothing the
store held before changed or added (lock files aside)."""
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # what a terminal acts on: ESC, BEL, CSI, ...


@dataclass
class Attack:
    name: str
    args: tuple                      # the command after `cnncodes`; "{store}" and "{tmp}" are filled in
    says: str                        # a regular expression the error line must match (re.search)
    prepare: Callable | None = None  # (store: Path, tmp: Path) -> None: the damage done before the command
    code: int = 1                    # 1: refused by cnncodes; 2: refused by the option parser
    store_changes: bool = False      # the attack's command may rightly add files to the store (a rebuild)

    def __str__(self):
        return self.name


def snapshot(folder: Path) -> dict[str, str]:
    """relative path -> sha256 of every file under `folder` but lock files."""
    if not folder.exists():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.name.endswith(".lock")}


def fill(value, store: Path, tmp: Path) -> str:
    return str(value).replace("{store}", str(store)).replace("{tmp}", str(tmp))


def run_attack(attack: Attack, store: Path, tmp: Path, monkeypatch):
    """Runs the attack's command in this process (as the CLI does, without the native-stderr filter, which
    would take the test's stderr) and checks the promise; returns click's result."""
    from click.testing import CliRunner

    from cnncodes.cli import cli
    from cnncodes.pipeline import console

    monkeypatch.setattr(console, "_installed", True)
    if attack.prepare is not None:
        attack.prepare(store, tmp)
    before = snapshot(store)
    result = CliRunner().invoke(cli, [fill(a, store, tmp) for a in attack.args])
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"{attack.name}: a traceback, not one line") from result.exception
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.exit_code == attack.code, (attack.name, result.exit_code, result.output)
    assert len(lines) == 1 and lines[0].startswith("error: "), (attack.name, lines)
    assert re.search(attack.says, lines[0]), (attack.name, lines[0])
    assert not CONTROL.search(result.output), (attack.name, result.output)
    after = snapshot(store)
    if attack.store_changes:
        after = {k: v for k, v in after.items() if k in before}
    assert after == before, (attack.name, "changed the store",
                             sorted(set(after.items()) ^ set(before.items())))
    return result
