"""What cached augmented views and flip averaging cost and gain, by k-fold on the training split only (issue 20).

    python bench/views_gain.py [--store bench/out/cifar10-views] [--dataset folder:PATH] [--limit 5000|0]
                               [--backbone efficientnet_lite0] [--size 224] [--layers A,B,C] [--views 4]
                               [--flip-average [--one-pass]] [--heads logreg,dense] [-k 3] [--workers 2]

Ingests a stratified subset of the shared CIFAR-10 photos (--limit per split; 0: all of them), extracts the
backbone's pooled cuts (--layers, in one forward pass; default its last layer) with its ImageNet weights and
--views K augmented views of each training image (resumable, fingerprinted), then scores each head by k-fold
on the training split on the join of the cuts: trained on the plain codes (`--no-views`) and on the views.
With --flip-average, a set of the same cuts averaged over each image and its mirror image (every row, as
`cnncodes features --flip-average` makes it) is scored the same way. --one-pass makes the views in the flip
pass (flip-averaged plain codes with K views, one pass instead of two: on the full data set the passes are
what costs), so the columns become plain, flip-averaged, and flip-averaged with K views. Prints the cost
(each pass's seconds, and the views' share, timed apart by the extractor) and the means in Markdown, with
the commit, for bench/RESULTS.md. The test split is never read.
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
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_layers  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"
quiet = dict(progress=False, log=lambda m: None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-views")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--limit", type=int, default=5000, help="images per split (0: all)")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--layers", default=None,
                   help="comma-separated cuts, joined for the heads (default: the last layer)")
    p.add_argument("--views", type=int, default=4)
    p.add_argument("--flip-average", action="store_true", help="also score a flip-averaged set of the same cuts")
    p.add_argument("--one-pass", action="store_true", help="make the views in the flip-averaged pass")
    p.add_argument("--heads", default="logreg,dense")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    if args.one_pass and not args.flip_average:
        p.error("--one-pass makes the views in the flip-averaged pass: add --flip-average")
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    limit = args.limit or None
    print(conditions({"data": f"{args.dataset}, {limit or 'all'} images per split", "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset, limit=limit), **quiet)
    layers = args.layers.split(",") if args.layers else [None]

    def extracted(**options):
        """The joined name of the cuts' sets (made in one pass, or found cached) and the pass's sets."""
        config = FeatureConfig(args.backbone, "imagenet", args.size, **options)
        names = [r.name for r in extract_layers(args.store, config, layers, **quiet)]
        store = FeatureStore.open(args.store)
        return "+".join(names), store.feature_set(names[0])  # one pass: the first set carries its seconds

    plain, info = extracted(views=0 if args.one_pass else args.views)
    if args.one_pass:
        print(f"\nplain codes of every image: {info.seconds:.0f} s (one pass)", flush=True)
        viewed, info = extracted(views=args.views, flip_average=True)
        flipped = viewed
    else:
        viewed = plain
    views_seconds = info.extra["views_seconds"]  # the views' share of the pass, timed apart by the extractor
    print(f"\nextraction in one pass: {info.seconds:.0f} s, of which the {args.views} views of the "
          f"training images took {views_seconds:.0f} s and the {'flip-averaged ' if args.one_pass else ''}codes "
          f"of every image {info.seconds - views_seconds:.0f} s\n", flush=True)
    if args.flip_average and not args.one_pass:
        flipped, info = extracted(flip_average=True)
        print(f"flip-averaged codes of every image, another pass: {info.seconds:.0f} s\n", flush=True)

    def scored(head, features, views):
        table = kfold_scores(args.store, [head], k=args.k, features=features, workers=args.workers, progress=False,
                             views=views)
        row = next(r for r in table["rows"] if r["head"] == head and r["settings"] == {})
        return row["mean"], row["std"], row["folds"]

    if args.one_pass:
        columns = [("plain codes", plain, False), ("flip-averaged", flipped, False),
                   (f"flip-averaged with {args.views} views", viewed, True)]
    else:
        columns = [("plain codes", plain, False), (f"with {args.views} views", viewed, True)]
        columns += [("flip-averaged", flipped, False)] if args.flip_average else []
    print(f"features: {plain}\n\n{args.k}-fold on the training split, per fold % and mean ± std %; gains in "
          f"points against the plain codes\n\n| head | " + " | ".join(c[0] for c in columns) + " | " +
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
