"""The knn head on a store's codes: k chosen on a holdout of the training split, the test split scored once.

    python bench/knn.py [--store /work/stores/cifar10] [--features efficientnet_lite0-top_activation-224-imagenet-fp32]

Part 1 (what KnnHead's defaults rest on), on the head's own holdout of the training split (10%, seed 0) searched
among the other 90%: accuracy at each k for raw and standardised codes and three ways of weighting the votes
(a plain vote, the similarity itself clipped at 0, exp(similarity / T) for three temperatures T). The test
split plays no part.
Part 2: KnnHead() with its defaults fitted on the whole training split (fit seconds: the holdout search and the
copy of the codes), then the test split scored once (predict seconds: the search of every test row).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.heads.inputs import fit_standardizer, holdout, standardize  # noqa: E402
from cnncodes.classifiers.heads.knn import KnnHead  # noqa: E402
from cnncodes.classifiers.heads.neighbors import nearest  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402

KS = (1, 3, 5, 10, 20, 50)
WEIGHTS = {"plain vote": lambda s: np.ones_like(s), "similarity": lambda s: np.maximum(s, 0),
           **{f"exp(similarity / {T})": lambda s, T=T: np.exp((s - s[:, :1]) / T) for T in (0.03, 0.07, 0.1)}}


def accuracy(found, labels, truth, k, weigh, classes) -> float:
    votes = np.zeros((len(truth), classes))
    np.add.at(votes, (np.arange(len(truth))[:, None], labels[found.index[:, :k]]),
              weigh(found.similarity[:, :k].astype(np.float64)))
    return float(np.mean(votes.argmax(1) == truth))


def weighting_table(X, y):
    head = KnnHead()
    fit, val = holdout(y, head.validation_fraction, head.random_state)
    print(f"\nPart 1: the holdout ({len(val)} training rows) searched among the other {len(fit)}, accuracy %")
    print("| codes | votes | " + " | ".join(f"k={k}" for k in KS) + " | search s |")
    print("| --- | --- |" + " --- |" * (len(KS) + 1))
    medians = []
    for name in ("raw", "standardised"):
        Z = standardize(fit_standardizer(X[fit]), X) if name == "standardised" else X
        start = time.perf_counter()
        found = nearest(Z[val], Z[fit], max(KS))
        seconds = time.perf_counter() - start
        for votes, weigh in WEIGHTS.items():
            cells = [f"{100 * accuracy(found, y[fit], y[val], k, weigh, y.max() + 1):.2f}" for k in KS]
            print(f"| {name} | {votes} | " + " | ".join(cells) + f" | {seconds:.1f} |", flush=True)
        medians.append(f"{name} {np.median(found.similarity[:, 0]):.3f} and {np.median(found.similarity[:, -1]):.3f}")
    print(f"median similarity of the nearest and the {max(KS)}th neighbor: " + "; ".join(medians))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="/work/stores/cifar10")
    p.add_argument("--features", default="efficientnet_lite0-top_activation-224-imagenet-fp32")
    p.add_argument("--skip-weighting", action="store_true", help="part 2 only")
    args = p.parse_args()
    store = FeatureStore.open(args.store)
    name = store.feature_set(args.features).name
    X, y = store.features(name, split="train"), store.labels(split="train")
    X_test, y_test = store.features(name, split="test"), store.labels(split="test")
    print(conditions({"store": args.store, "features": f"{name}, {X.shape[1]} dims",
                      "rows": f"{len(X)} train, {len(X_test)} test"}))
    if not args.skip_weighting:
        weighting_table(X, y)

    start = time.perf_counter()
    head = KnnHead().fit(X, y)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    test_accuracy = head.score(X_test, y_test)
    predict_seconds = time.perf_counter() - start
    print(f"\nPart 2: KnnHead({', '.join(f'{k}={v}' for k, v in head.get_params().items())})")
    print("holdout accuracy % by k: " + ", ".join(f"{k}: {100 * s:.2f}" for k, s in head.scores_.items()))
    print(f"chosen k {head.k_}; fit {fit_seconds:.1f} s; test accuracy {100 * test_accuracy:.2f}% "
          f"({len(X_test)} rows, predicted in {predict_seconds:.1f} s)")


if __name__ == "__main__":
    main()
