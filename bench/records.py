"""Bench records: every published figure is one JSON file in bench/records/, written by the bench script that
measured it, at a clean commit, with the script's hash, the exact command and the seeds; `make results`
(bench/results.py) builds the README's results and bench/RESULTS.md from these files alone.

A record says how often the test split has been scored for its configuration's family (`test_scorings`), up
to and including its own run: the scorings bench/scorings.json lists from the history before records were kept,
plus those of every record of the family on file, and of the records a record measured again replaced."""
import hashlib
import json
import os
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
RECORDS = ROOT / "bench" / "records"
SCORINGS = ROOT / "bench" / "scorings.json"
BOOTSTRAP_DRAWS = 2000


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True).stdout.strip()


def clean_commit() -> str:
    """The commit the tree is at; refuses (one line, exit 2) a tree with changes to tracked files: a figure
    names the code that made it, and uncommitted code has no name. New records do not count as changes."""
    changed = git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/records")
    if changed:
        first = changed.splitlines()[0].split(maxsplit=1)[1]
        raise SystemExit(f"bench: the tree has uncommitted changes ({first}, ...): commit them, then run again; "
                         f"a record names the commit that made its figures")
    return git("rev-parse", "HEAD")


def command_line(argv: list[str] | None = None) -> str:
    """The command as run from the repository root."""
    argv = sys.argv if argv is None else argv
    script = os.path.relpath(Path(argv[0]).resolve(), ROOT)
    return shlex.join(["python", script, *argv[1:]])


def note_option(p):
    """--note: the conditions a record should carry that the machine does not show (another job beside it)."""
    p.add_argument("--note", default="", help="the conditions the records should carry (e.g. another job beside it)")


def begin(script: str, argv: list[str] | None = None, note: str = "") -> dict:
    """What every record of this run shares: the commit (clean), the script and its hash at that commit, the
    command, the machine, and the --note given. Call it first, before any work, so a dirty tree costs nothing."""
    from bench.conditions import cpu_model, vector_units

    commit = clean_commit()
    path = Path(script).resolve().relative_to(ROOT).as_posix()
    source = subprocess.run(["git", "show", f"{commit}:{path}"], cwd=ROOT, capture_output=True, check=True).stdout
    return {"commit": commit, "script": path, "script_sha256": hashlib.sha256(source).hexdigest(),
            "command": command_line(argv), "machine": f"{cpu_model()} ({vector_units()}), {os.cpu_count()} cores",
            "date": time.strftime("%Y-%m-%d"), **({"note": note} if note else {})}


def save(run: dict, name: str, **fields) -> Path:
    """Writes bench/records/NAME.json: the run's shared fields, these, and `test_scorings` counted over the
    family. Keys: name, table, row, family, seeds, test_accuracy (one per seed, or None: the test split not
    scored), headline, weights, and what the table shows."""
    from cnncodes.features.outputs import write_atomically

    record = {**run, "name": name, **fields}
    missing = {"table", "row", "family", "seeds", "test_accuracy", "headline", "weights"} - set(record)
    if missing:
        raise ValueError(f"record {name} lacks {sorted(missing)}")
    path = RECORDS / f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', name.replace('/', '--'))}.json"
    if path.exists():  # a record measured again: the scorings of the one it replaces still happened
        old = json.loads(path.read_text())
        if "runs" in record:  # one scoring a run: a run found again was not scored again
            record["scored_runs"] = sorted(set(record["runs"]) | set(old.get("scored_runs") or old.get("runs") or []))
            record["earlier_scorings"] = old.get("earlier_scorings", 0)
        else:
            record["earlier_scorings"] = old.get("earlier_scorings", 0) + scored(old)
    record["test_scorings"] = (family_scorings(record["family"], exclude=name) + record.get("earlier_scorings", 0)
                               + scored(record))
    path.parent.mkdir(exist_ok=True)
    write_atomically(path, json.dumps(plain(record), indent=1, sort_keys=True) + "\n")
    print(f"record: {os.path.relpath(path, ROOT)}", flush=True)
    return path


def scored(record: dict, family: str | None = None) -> int:
    """How many times this record's run scored the test split for `family` (its own by default): once a seed
    (or, for a record of several runs, once each run it ever held: `scored_runs`), plus `other_scorings` it
    names for a family (a head fitted on the way, whose fit scored it)."""
    runs = record.get("scored_runs") or record["test_accuracy"] or []
    own = len(runs) if family in (None, record["family"]) else 0
    return own + (record.get("other_scorings") or {}).get(family or record["family"], 0)


def load_records() -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(RECORDS.glob("*.json"))]


def family_scorings(family: str, exclude: str | None = None) -> int:
    """Test scorings of a family before records were kept (bench/scorings.json) plus those of its records."""
    history = json.loads(SCORINGS.read_text())[family]["before_records"]
    return history + sum(scored(r, family) + (r.get("earlier_scorings", 0) if r["family"] == family else 0)
                         for r in load_records() if r["name"] != exclude)


def bootstrap_interval(correct: np.ndarray, draws: int = BOOTSTRAP_DRAWS, seed: int = 0) -> list[float]:
    """The 95% interval of the mean accuracy over seeds when the test images are drawn again with replacement:
    `correct` is (seeds, test images) of 0/1. The same draw of images serves every seed."""
    correct = np.atleast_2d(np.asarray(correct, dtype=np.float64))
    rng = np.random.default_rng(seed)
    n = correct.shape[1]
    means = np.array([correct[:, rng.integers(0, n, n)].mean() for _ in range(draws)])
    return [round(float(np.percentile(means, 2.5)), 5), round(float(np.percentile(means, 97.5)), 5)]


def plain(o):
    if isinstance(o, dict):
        return {str(k): plain(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [plain(v) for v in o]
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, float):
        return round(o, 6)
    return o
