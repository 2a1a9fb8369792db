"""The dense and GAP heads' defaults, chosen by k-fold cross-validation on the training split only.

    python bench/choose_defaults.py --store STORE --features SET [-k 3] [--workers 2] [--heads dense,gap]

Each candidate setting is scored by k-fold over the training rows (`kfold_scores`: folds are kept, so a
killed run resumes and a rerun of the same code recomputes nothing); the test split is never read. Prints
the candidates with their cross-validated means, the winner per head, and the conditions, in Markdown
for bench/RESULTS.md. The winner becomes the head's default in classifiers/heads.py by hand.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.evaluation.kfold import kfold_scores  # noqa: E402

# One change at a time from the reference head (Adam 1e-3, no input dropout, no label smoothing), then the
# combinations the single changes point to.
CANDIDATES = {
    "dense": [
        {"input_dropout": 0.0, "label_smoothing": 0.0, "learning_rate": 1e-3},  # the reference work's head
        {"input_dropout": 0.2, "label_smoothing": 0.0, "learning_rate": 1e-3},
        {"input_dropout": 0.0, "label_smoothing": 0.1, "learning_rate": 1e-3},
        {"input_dropout": 0.0, "label_smoothing": 0.0, "learning_rate": 3e-4},
        {"input_dropout": 0.2, "label_smoothing": 0.1, "learning_rate": 3e-4},
        {"input_dropout": 0.5, "label_smoothing": 0.1, "learning_rate": 3e-4},
    ],
    "gap": [
        {"learning_rate": 1e-3, "label_smoothing": 0.0},
        {"learning_rate": 3e-4, "label_smoothing": 0.0},
        {"learning_rate": 1e-3, "label_smoothing": 0.1},
    ],
}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--features", required=True)
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--heads", default="dense,gap")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    print(conditions({"store": args.store, "features": args.features}), flush=True)
    for head in args.heads.split(","):
        print(f"\n{head}: {args.k}-fold on the training split of {args.features}\n")
        print("| setting | " + " | ".join(f"fold {i}" for i in range(args.k))
              + " | mean ± std % | best epoch per fold |")
        print("| --- |" + " --- |" * (args.k + 2))
        results = []
        for setting in CANDIDATES[head]:
            table = kfold_scores(args.store, [head], k=args.k, features=args.features, params={head: setting},
                                 workers=args.workers, progress=False)
            row = next(r for r in table["rows"] if r["head"] == head and r["settings"] == setting)
            results.append((row["mean"], setting))
            label = ", ".join(f"{k} {v}" for k, v in setting.items())
            epochs = ", ".join(map(str, row["chosen"].get("best_epoch", ["-"])))  # per fold: the epoch kept
            print(f"| {label} | " + " | ".join(f"{100 * a:.2f}" for a in row["folds"])
                  + f" | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {epochs} |", flush=True)
        best = max(results, key=lambda r: r[0])
        print(f"\nchosen for {head} (highest cross-validated mean): "
              + ", ".join(f"{k} {v}" for k, v in best[1].items()), flush=True)


if __name__ == "__main__":
    main()
