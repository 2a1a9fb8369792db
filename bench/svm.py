"""The svm head against scikit-learn's LinearSVC (liblinear): same features, same C, same standardisation.

    python bench/svm.py [--store bench/out/cifar10] [--synthetic-n 50000]

Part 1, real codes: a stored feature set (the ResNet50 codes of the shared CIFAR-10 images).
Part 2, CIFAR-100's shape: 50,000 x 2,048 synthetic features, 100 classes. LinearSVC is timed on a
10,000-row subset (on all rows it takes far longer than a benchmark should); ours on both.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.heads.svm import LinearSVM  # noqa: E402


def compare(name, X, y, Xt, yt, C):
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import LinearSVC

    t = time.perf_counter()
    ours = LinearSVM(C=C).fit(X, y)
    t_ours = time.perf_counter() - t
    scaler = StandardScaler().fit(X)
    t = time.perf_counter()
    ref = LinearSVC(C=C, tol=1e-4, max_iter=1000).fit(scaler.transform(X), y)
    t_ref = time.perf_counter() - t
    a_ours, a_ref = ours.score(Xt, yt), ref.score(scaler.transform(Xt), yt)
    print(f"| {name} | {X.shape[0]}x{X.shape[1]}, {len(np.unique(y))} classes | {C} | {100 * a_ours:.2f} | "
          f"{100 * a_ref:.2f} | {100 * (a_ours - a_ref):+.2f} | {t_ours:.1f} | {t_ref:.1f} | {t_ref / t_ours:.1f}x |",
          flush=True)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10")
    p.add_argument("--features")
    p.add_argument("--synthetic-n", type=int, default=50000)
    p.add_argument("--sklearn-n", type=int, default=10000)
    args = p.parse_args()
    print(conditions({"threads": "all cores for both solvers (BLAS / liblinear is single-threaded)"}))
    print("\n| features | shape | C | ours % | LinearSVC % | diff | ours s | LinearSVC s | speed-up |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    if Path(args.store, "data.h5").exists():
        from cnncodes.features.store import FeatureStore
        s = FeatureStore.open(args.store)
        name = s.feature_set(args.features).name
        X, y = s.features(name, "train"), s.labels(split="train")
        Xt, yt = s.features(name, "test"), s.labels(split="test")
        t = time.perf_counter()
        chosen = LinearSVM().fit(X, y)
        print(f"(ours, C chosen by 3-fold CV over 0.01..100 in {time.perf_counter() - t:.1f} s: C={chosen.C_}, "
              f"test {100 * chosen.score(Xt, yt):.2f}%)", flush=True)
        compare(f"{name} ({args.store})", X, y, Xt, yt, chosen.C_)

    from sklearn.datasets import make_classification
    n = args.synthetic_n
    X, y = make_classification(n + 10000, 2048, n_informative=128, n_redundant=0, n_classes=100,
                               n_clusters_per_class=1, class_sep=2.0, random_state=0)
    X, Xt, y, yt = X[:n].astype(np.float32), X[n:].astype(np.float32), y[:n], y[n:]
    m = args.sklearn_n
    compare("synthetic, CIFAR-100 shape (subset)", X[:m], y[:m], Xt, yt, 0.01)
    t = time.perf_counter()
    full = LinearSVM().fit(X, y)
    print(f"\nours on all {n}x2048, 100 classes, C by 3-fold CV over 0.01..100 (16 fits): "
          f"{time.perf_counter() - t:.1f} s, C={full.C_}, test {100 * full.score(Xt, yt):.2f}%")


if __name__ == "__main__":
    main()
