"""The Keras heads' early-stopping rule, re-chosen by k-fold on the training split (issue 38): which epoch to keep
(the best validation accuracy, or the lowest validation loss) and how long to wait for a better one.

    python bench/choose_early_stopping.py [--store bench/out/cifar10-full] [--backbone efficientnet_lite0]
                                          [--head dense] [-k 3] [--workers 1]

The store is the full CIFAR-10 that bench/anchors.py ingests (made here when missing), the codes the backbone's
last layer at its native size with its published ImageNet weights. Every candidate is scored by k-fold over the
training rows (`kfold_scores`: finished folds are kept, so a killed run resumes); the test split is never read.
Writes one record per candidate to bench/records/ (the table of candidates) and prints the winner.
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.anchors import CUTS, DATASET  # noqa: E402
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, note_option, save  # noqa: E402
from cnncodes.classifiers.evaluation.kfold import kfold_scores  # noqa: E402
from cnncodes.pipeline.backbones import get_backbone  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_layers  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

# The rule in use (accuracy, patience 10) was set in 7fc6eb2 while the test split was scored; these are it and
# its neighbours, fixed before this run.
CANDIDATES = [{"monitor": m, "patience": p} for m in ("accuracy", "loss") for p in (5, 10, 20)]
quiet = dict(progress=False, log=lambda m: None)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The Keras heads' early-stopping rule, by k-fold on the training "
                                            "split; writes records to bench/records/")
    p.add_argument("--store", default="bench/out/cifar10-full")
    p.add_argument("--backbone", default="efficientnet_lite0")
    p.add_argument("--head", default="dense", choices=["dense", "gap"])
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--workers", type=int, default=1)
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run = begin(__file__, note=args.note)  # a clean commit, before any work
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"store": args.store}), flush=True)
    store = ingest(args.store, IngestConfig(DATASET), **quiet).path
    config = FeatureConfig(args.backbone, "imagenet", get_backbone(args.backbone).native_size)
    (features,) = [r.name for r in extract_layers(store, config, CUTS[:1], **quiet)]
    print(f"\n{args.head}: {args.k}-fold on the training split of {features}\n\n| monitor | patience | folds % | "
          f"mean ± std % | best epoch per fold |\n| --- | --- | --- | --- | --- |", flush=True)
    scored = []
    for setting in CANDIDATES:
        table = kfold_scores(store, [args.head], k=args.k, features=features, params={args.head: setting},
                             workers=args.workers, progress=False)
        row = next(r for r in table["rows"] if r["head"] == args.head and
                   all(r["settings"].get(k) == v for k, v in setting.items()))
        epochs = row["chosen"].get("best_epoch", [])
        scored.append((row["mean"], setting, row, epochs))
        print(f"| {setting['monitor']} | {setting['patience']} | {' / '.join(f'{100 * a:.2f}' for a in row['folds'])}"
              f" | {100 * row['mean']:.2f} ± {100 * row['std']:.2f} | {', '.join(map(str, epochs))} |", flush=True)
    best = max(scored, key=lambda s: s[0])[1]
    print(f"\nchosen (highest k-fold mean): monitor {best['monitor']}, patience {best['patience']}", flush=True)
    for mean, setting, row, epochs in scored:
        label = f"{args.head} on Lite0's last layer, keep the best {setting['monitor']}, patience {setting['patience']}"
        save(run, f"early-stopping/{args.head}/{setting['monitor']}-{setting['patience']}", table="early-stopping",
             row=label + (" (chosen)" if setting == best else ""), family="fixed-codes", seeds=[0],
             test_accuracy=None, headline=False, weights="ImageNet (EfficientNet-Lite0, published)",
             kfold_accuracy=row["folds"], k=args.k, best_epochs=epochs, features=features, head=args.head,
             params=setting, wall_seconds=round(row["seconds"], 1))


if __name__ == "__main__":
    main()
