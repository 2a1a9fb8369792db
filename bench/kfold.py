"""kfold wall time with 2 local worker processes against 1, and the 6-fold table on the CIFAR-10 codes.

    python bench/kfold.py [--store bench/out/cifar10]

The speed-up run uses fixed hyper-parameters (svm C=0.01, logreg C=0.1) so that it measures the
scheduling, not the grid search; the table run uses each head's defaults. Fold results are
deleted before each timed run so nothing is reused.
"""
import argparse
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.evaluation.kfold import format_table, kfold_scores  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402


def timed(store, heads, params, workers, k):
    name = FeatureStore.open(store).feature_set().name
    shutil.rmtree(Path(store) / "runs" / f"kfold-{name}-k{k}-train", ignore_errors=True)
    t = time.perf_counter()
    table = kfold_scores(store, heads, k=k, params=params, workers=workers, progress=False)
    return time.perf_counter() - t, table


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10")
    p.add_argument("-k", type=int, default=6)
    args = p.parse_args()
    print(conditions({"store": args.store, "features": FeatureStore.open(args.store).feature_set().name}))
    fixed = {"svm": {"C": 0.01}, "logreg": {"Cs": [0.1]}}
    one, t1 = timed(args.store, ["svm", "logreg"], fixed, 1, args.k)
    two, t2 = timed(args.store, ["svm", "logreg"], fixed, 2, args.k)
    assert [r["folds"] for r in t1["rows"]] == [r["folds"] for r in t2["rows"]], "tables differ"
    print(f"\nsvm + logreg, {args.k} folds, fixed C: 1 worker {one:.1f} s, 2 workers {two:.1f} s, "
          f"speed-up {one / two:.2f}x (tables identical)\n")
    wall, table = timed(args.store, ["dense", "svm", "logreg"], {}, 2, args.k)
    print(format_table(table))
    print(f"wall time {wall:.1f} s on 2 local workers")


if __name__ == "__main__":
    main()
