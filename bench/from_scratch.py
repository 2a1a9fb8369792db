"""The from-scratch baseline worth beating (issue 39): `cnncodes baseline airbench` on the whole CIFAR-10 training
split, one run a seed, each scored on the test split once, with its training wall time and images/s.

    python bench/from_scratch.py --store bench/out/cifar10-full [--seeds 0,1,2] [--precision fp32]
                                 [--limit N] [--record NAME] [--baseline cnn]

`--baseline cnn` runs the reference's basic CNN instead, at cnncodes' defaults for it (the reference's recipe:
RMSprop 1e-4, 100 epochs, batch 128, shifts and flips), for the frontier's row (never a headline):

    python bench/from_scratch.py --store bench/out/cifar10-full --baseline cnn --seeds 0,1,2 \
        --record from-scratch/basic-cnn

The recipe is airbench94's (classifiers/baselines/airbench.py lists it), fixed before any run: nothing here looks
at the test split before a seed's run has finished, and no setting is chosen on it. Runs resume from their last
epoch (run the same command again, from the same code); seeds run one after the other, a finished seed's run is
found again (not scored again). With --record a record is written after each seed with every seed so far.
The store is made from the shared CIFAR-10 if it is not there (`--dataset`), as `cnncodes features --dataset
folder:../shared/data/cifar10-jpg.tar --store bench/out/cifar10-full --ingest-only` would.
"""
import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, bootstrap_interval, note_option, save  # noqa: E402
from cnncodes.classifiers.baselines.train import train_baseline  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="airbench from scratch on the store's training split, a run a seed")
    p.add_argument("--store", required=True)
    p.add_argument("--dataset", default="folder:../shared/data/cifar10-jpg.tar")
    p.add_argument("--baseline", choices=("airbench", "cnn"), default="airbench")
    p.add_argument("--seeds", default="0", help="comma-separated: one run a seed, one after the other")
    p.add_argument("--precision", choices=("fp32", "bf16"), help="[the product's: bf16 where native]")
    p.add_argument("--limit", type=int, default=None, help="a stratified subset of N training photos (a quick try)")
    p.add_argument("--record", metavar="NAME", help="write bench/records/NAME.json (needs a clean tree)")
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run_info = begin(__file__, note=args.note) if args.record else None  # before any work: a dirty tree costs nothing
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": args.dataset, "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset), progress=False, log=lambda m: None)
    finished = []
    for seed in (int(s) for s in args.seeds.split(",")):
        config = BaselineConfig(args.baseline, seed=seed, precision=args.precision, limit=args.limit)
        print(f"\nthe same run from the command line: cnncodes baseline {args.baseline} --store {args.store} "
              f"--seed {seed}"
              + (f" --precision {args.precision}" if args.precision else "")
              + (f" --limit {args.limit}" if args.limit else ""), flush=True)
        started = time.time()
        run, r = train_baseline(args.store, config, progress=True, log=print)
        rows = r["epochs"] * trained_rows(args, r["params"]["batch_size"])
        print(f"\nrun {run.name}: {r['fit_seconds']:.0f} s of training over {r['epochs']} epochs "
              f"({rows / r['fit_seconds']:.1f} training images/s), this call {time.time() - started:.0f} s; "
              f"test accuracy, scored once: **{100 * r['test_accuracy']:.2f}%**", flush=True)
        finished.append((seed, run, r, rows / r["fit_seconds"]))
        if args.record:
            write_record(args, run_info, finished)


def trained_rows(args, batch_size: int) -> int:
    """Images an epoch trains on: full batches of the training split (or --limit), as airbench drops the rest."""
    n = args.limit or FeatureStore.open(args.store).counts()["train"]
    return n // batch_size * batch_size


def write_record(args, run_info: dict, finished: list):
    import numpy as np

    store = FeatureStore.open(args.store)
    truth = np.asarray(store.labels(finished[0][2]["label"]))[store.split == 1]
    correct = np.array([np.asarray(r["test_predictions"]) == truth for _, _, r, _ in finished])
    airbench = args.baseline == "airbench"
    recipe = ("airbench94's recipe from scratch" if airbench
              else "the reference's basic CNN (4 convolutions) from scratch, RMSprop 1e-4")
    save(run_info, args.record, table="from-scratch", family="airbench" if airbench else "basic-cnn",
         headline=airbench and len(finished) >= 3,
         row=f"{recipe}, {finished[0][2]['epochs']} epochs, {finished[0][2]['params']['precision']}"
             + (f", {args.limit} training photos" if args.limit else ""),
         weights="none (trained from scratch)", seeds=[s for s, _, _, _ in finished],
         test_accuracy=[r["test_accuracy"] for _, _, r, _ in finished], test_interval=bootstrap_interval(correct),
         wall_seconds=[r["fit_seconds"] for _, _, r, _ in finished],
         images_per_second=[round(speed, 1) for _, _, _, speed in finished],
         train_accuracy=[r["train_accuracy"] for _, _, r, _ in finished],
         runs=[run.name for _, run, _, _ in finished], precision=finished[0][2]["params"]["precision"],
         store=args.store)


if __name__ == "__main__":
    main()
