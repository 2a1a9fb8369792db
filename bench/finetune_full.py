"""A full-network fine-tune of EfficientNet-Lite0 on the whole CIFAR-10 training split (issue 21), resumable.

    python bench/finetune_full.py --store /work/stores/cifar10 [--dataset folder:PATH] [--size 128] [--epochs 5]
                                  [--learning-rate 0.01] [--crop-area 0.6] [--batch-size 64] [--progressive 0:0]

Trains `cnncodes baseline finetune --unfreeze-from all` with settings fixed before any run (below), keeps the
epoch with the best accuracy on a 10% validation slice of the training split (`--patience`, set to the epoch
count so that no epoch is cut short), scores the test split once with that epoch's weights, and prints the
epoch curve, wall time, training images/s and the command that reproduces it, in Markdown for
bench/RESULTS.md. Every epoch ends in a checkpoint: run the same command again (from the same code: a run's
name hashes the source) and it goes on from the last finished epoch, across sessions.

The settings, fixed beforehand rather than tuned (nothing here looks at the test split): BiT's rule for
images under 96 px (Kolesnikov et al. 2020: fine-tune at 128, random crops of about 0.64 of the area, flips),
SGD with Nesterov momentum, one warm-up epoch then cosine decay, label smoothing 0.1, BatchNorm statistics
frozen, no head-only phase (the warm-up protects the backbone from the new head's first gradients).
"""
import argparse
import os
import shlex
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.classifiers.train import train_baseline  # noqa: E402
from cnncodes.features.provenance import code_version  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.ingest import IngestConfig, ingest  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--dataset", default="folder:../shared/data/cifar10-jpg.tar")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--learning-rate", type=float, default=0.01)
    p.add_argument("--crop-area", type=float, default=0.6)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--label-smoothing", type=float, default=0.1)
    p.add_argument("--progressive", default="0:0", help="SIDE:EPOCHS at a smaller side first (0:0: off)")
    p.add_argument("--limit", type=int, default=None, help="a stratified subset of N training photos (a quick try)")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": args.dataset, "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset), progress=False, log=lambda m: None)
    side, early = (int(v) for v in args.progressive.split(":"))
    config = BaselineConfig(
        "finetune", backbone="efficientnet_lite0", weights="imagenet", size=args.size, unfreeze_from="all",
        head_epochs=0, epochs=args.epochs, patience=args.epochs, optimizer="sgd", learning_rate=args.learning_rate,
        batch_size=args.batch_size, label_smoothing=args.label_smoothing, warmup_epochs=1, cosine=True,
        crop_area=args.crop_area, progressive_size=side or None, progressive_epochs=early, limit=args.limit)
    command = ("cnncodes baseline finetune --store " + shlex.quote(args.store) + " --backbone efficientnet_lite0"
               f" --size {args.size} --unfreeze-from all --head-epochs 0 --epochs {args.epochs} --patience {args.epochs}"
               f" --optimizer sgd --learning-rate {args.learning_rate} --batch-size {args.batch_size}"
               f" --label-smoothing {args.label_smoothing} --warmup-epochs 1 --cosine --crop-area {args.crop_area}"
               + (f" --progressive {side}:{early}" if side else "") + (f" --limit {args.limit}" if args.limit else ""))
    print(f"\nthe same run from the command line: {command}\n", flush=True)
    started = time.time()
    run, r = train_baseline(args.store, config, progress=True, log=print)
    history, chosen = r["history"], r["chosen"]
    rows = round(0.9 * (args.limit or FeatureStore.open(args.store).counts()["train"]))  # 10% validate, not train
    print(f"\nrun {run.name} (`code.commit` {(code_version()['commit'] or '?')[:7]}); this call {time.time() - started:.0f} s, "
          f"the run {r['fit_seconds']:.0f} s over {r['epochs']} epochs ({r['seconds_per_epoch']:.0f} s an epoch, about "
          f"{rows / r['seconds_per_epoch']:.1f} training images/s)\n")
    print("| epoch | train accuracy % (augmented, running) | validation accuracy % | loss |")
    print("| --- | --- | --- | --- |")
    for i, acc in enumerate(history.get("accuracy", [])):
        val = history.get("val_accuracy", [None] * (i + 1))[i]
        print(f"| {i + 1} | {100 * acc:.2f} | {'-' if val is None else f'{100 * val:.2f}'} | {history['loss'][i]:.4f} |")
    print(f"\nchosen on validation: epoch {chosen['best_epoch']} ({100 * r['validation_accuracy']:.2f}%); "
          f"test accuracy, scored once with its weights: **{100 * r['test_accuracy']:.2f}%**", flush=True)


if __name__ == "__main__":
    main()
