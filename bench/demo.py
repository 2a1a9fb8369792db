"""What `make demo` prints on this code, for the README: runs it on a fresh store and records it.

    python bench/demo.py

Runs `make demo` exactly as a user does (its own commands, a store in a new temporary folder, so no
earlier run is reused), prints its output under the conditions and the commit it ran at, and writes the two
fits' records (ImageNet codes, random codes) to bench/records/ for `make results`.
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, bootstrap_interval, save  # noqa: E402

ROWS = {"imagenet": "Lite0 (224) codes, ImageNet weights, logreg", "none": "Lite0 (224) codes, random weights, logreg"}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Runs `make demo` on a new store and records what it printed")
    p.add_argument("--note", default="", help="the conditions the record should carry (e.g. another job beside it)")
    return p


def main():
    args = parser().parse_args()
    run = begin(__file__)  # a clean commit, before any work
    print(conditions(), flush=True)
    with tempfile.TemporaryDirectory() as store:
        start = time.time()
        done = subprocess.run(["make", "-s", "demo", f"STORE={store}"], cwd=ROOT, capture_output=True, text=True,
                              env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
        print(f"make demo: exit {done.returncode}, {time.time() - start:.0f} s\n")
        print("\n".join("    " + line for line in done.stdout.splitlines()))
        if done.returncode:
            print(done.stderr[-3000:], file=sys.stderr)
            sys.exit(done.returncode)
        record(run, Path(store) / "demo", done.stdout, time.time() - start, args.note)


def record(run: dict, store: Path, output: str, seconds: float, note: str):
    """One record per fit: its test accuracy on the demo's 1,000 test photos, with the printed table."""
    from cnncodes.classifiers.runs.records import all_runs
    from cnncodes.features.store import FeatureStore

    truth = FeatureStore.open(store).labels(split="test")
    for r in all_runs(store):
        weights = r["feature_config"]["weights"]
        correct = np.asarray(r["test_predictions"]) == truth
        save(run, f"demo/{weights}", table="demo", row=ROWS[weights], family="demo", seeds=[0],
             test_accuracy=[r["test_accuracy"]], validation_accuracy=[r.get("validation_accuracy")],
             test_interval=bootstrap_interval(correct[None]), headline=False,
             weights="ImageNet (EfficientNet-Lite0, published)" if weights == "imagenet" else "random (seed 0)",
             wall_seconds=round(seconds, 1), output=output,
             note="; ".join(filter(None, ["the whole `make demo`, both extractions included", note])))


if __name__ == "__main__":
    main()
