"""What cached augmented views and flip averaging cost and gain, by k-fold on the training split only (issue 20).

    python bench/views_gain.py [--store bench/out/cifar10-views] [--limit 5000] [--size 224] [--views 4]
                               [--flip-average] [--heads logreg,dense] [-k 3] [--workers 2]

Ingests a stratified subset of the shared CIFAR-10 photos (--limit per split), extracts Lite0's pooled last
layer with its ImageNet weights and --views K augmented views of each training image in one pass (resumable,
fingerprinted), then scores each head by k-fold on the training split twice: trained on the plain codes
(`--no-views`) and on the views. With --flip-average, a second set of the same layer averaged over each
image and its mirror image (every row, as `cnncodes features --flip-average` makes it) is scored the same
way. Prints the cost (each pass's seconds, and the views' share, timed apart by the extractor) and the means
in Markdown, with the commit, for bench/RESULTS.md. The test split is never read.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.kfold import kfold_scores  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extract import FeatureConfig, extract_features  # noqa: E402
from cnncodes.pipeline.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"
quiet = dict(progress=False, log=lambda m: None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-views")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--limit", type=int, default=5000, help="images per split")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--flip-average", action="store_true", help="also score a flip-averaged set of the same layer")
    p.add_argument("--heads", default="logreg,dense")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": f"{args.dataset}, {args.limit} images per split", "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset, limit=args.limit), **quiet)
    config = FeatureConfig("efficientnet_lite0", "imagenet", args.size, views=args.views)
    name = extract_features(args.store, config, **quiet).name  # a rerun finds it cached, with its seconds
    info = FeatureStore.open(args.store).feature_set(name)
    views_seconds = info.extra["views_seconds"]  # the views' share of the pass, timed apart by the extractor
    print(f"\nextraction in one pass: {info.seconds:.0f} s, of which the {args.views} views of the "
          f"{args.limit} training images took {views_seconds:.0f} s and the plain codes of every image "
          f"{info.seconds - views_seconds:.0f} s\n", flush=True)
    flipped = None
    if args.flip_average:
        flipped = extract_features(args.store, FeatureConfig("efficientnet_lite0", "imagenet", args.size,
                                                             flip_average=True), **quiet).name
        print(f"flip-averaged codes of every image, another pass: "
              f"{FeatureStore.open(args.store).feature_set(flipped).seconds:.0f} s\n", flush=True)

    def scored(head, features, views):
        table = kfold_scores(args.store, [head], k=args.k, features=features, workers=args.workers, progress=False,
                             views=views)
        row = next(r for r in table["rows"] if r["head"] == head and r["settings"] == {})
        return row["mean"], row["std"], row["folds"]

    columns = [("plain codes", name, False), (f"with {args.views} views", name, True)]
    columns += [("flip-averaged", flipped, False)] if flipped else []
    print(f"{args.k}-fold on the training split, per fold % and mean ± std %; gains in points against the plain "
          f"codes\n\n| head | " + " | ".join(c[0] for c in columns) + " | " +
          " | ".join(f"gain: {c[0]}" for c in columns[1:]) + " |")
    print("| --- " * (2 * len(columns)) + "|")
    for head in args.heads.split(","):
        results = [scored(head, features, views) for _, features, views in columns]
        cells = [f"{' / '.join(f'{100 * a:.2f}' for a in folds)} ({100 * m:.2f} ± {100 * s:.2f})"
                 for m, s, folds in results]
        gains = [f"{100 * (m - results[0][0]):+.2f}" for m, _, _ in results[1:]]
        print(f"| {head} | " + " | ".join(cells + gains) + " |", flush=True)


if __name__ == "__main__":
    main()
