"""The table the mission is about: heads on real ImageNet codes against the same heads on random codes.

    python bench/transfer.py [--store bench/out/cifar10-full] [--sets lite0-224,...] [--heads logreg,svm,dense,gap]
                             [--kfold-sets lite0-224,random-224] [-k 6] [--workers 2]

On the full shared CIFAR-10 (50,000 training / 10,000 test photos, ../shared/data/cifar10-jpg.tar):
every feature set below is extracted once (cached in the store), every head is fitted on the
training split and tested on the test split, and the chosen sets get k-fold cross-validation over
the training split. Everything is cached: extraction by fingerprint, fits by (head, features,
parameters) unless --refit, finished folds by their key, so a rerun redoes only what is missing.
Fits and folds are reused only when made by this code (the hash of cnncodes' source each run records):
after any change to the package, a rerun measures again instead of reprinting old figures.
Prints the tables in markdown, with the conditions, for bench/RESULTS.md.
"""
import argparse
import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.evaluation.fit import fit_head  # noqa: E402
from cnncodes.classifiers.evaluation.kfold import kfold_scores  # noqa: E402
from cnncodes.classifiers.heads.registry import HEADS  # noqa: E402
from cnncodes.classifiers.runs.records import all_runs  # noqa: E402
from cnncodes.features.provenance import made_by_this_code  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"  # spelled as the README's commands spell it, from ROOT
SETS = {
    "lite0-224": FeatureConfig("efficientnet_lite0", "imagenet", 224),
    "lite0-224-flip": FeatureConfig("efficientnet_lite0", "imagenet", 224, flip_average=True),
    "lite0-224-bf16": FeatureConfig("efficientnet_lite0", "imagenet", 224, precision="bf16"),
    "lite0-128": FeatureConfig("efficientnet_lite0", "imagenet", 128),
    "lite2-260": FeatureConfig("efficientnet_lite2", "imagenet", 260),
    "lite2-260-flip": FeatureConfig("efficientnet_lite2", "imagenet", 260, flip_average=True),
    "random-224": FeatureConfig("efficientnet_lite0", "none", 224),
}
quiet = dict(progress=False, log=lambda m: None)


def fitted(store, head, name, refit):
    """The latest fit of `head` on `name` with its default parameters made by this code, or a new one: a run
    of other code (or of a cnncodes that recorded none) is never reused, its figure belongs to that code."""
    defaults = json.loads(json.dumps({k: v for k, v in HEADS[head]().get_params().items() if k != "verbose"}))
    reusable = [r for r in all_runs(store)  # oldest first: run folders are named by their time
                if r.get("kind") == "fit" and r["head"] == head and r["features"] == name and made_by_this_code(r)
                and {k: v for k, v in r["params"].items() if k != "verbose"} == defaults]
    if reusable and not refit:
        return reusable[-1]
    return fit_head(store, head, features=name)[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-full")
    p.add_argument("--sets", default=",".join(SETS))
    p.add_argument("--heads", default="logreg,svm,dense,gap")
    p.add_argument("--kfold-sets", default="lite0-224,random-224")
    p.add_argument("-k", type=int, default=6)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--refit", action="store_true", help="fit every head again instead of reusing its last run")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": DATASET, "store": args.store}), flush=True)
    store = ingest(args.store, IngestConfig(DATASET), **quiet).path
    heads = args.heads.split(",")
    names, speed = {}, {}
    for key in args.sets.split(","):
        start = time.time()
        result = extract_features(store, SETS[key], **quiet)
        names[key] = result.name
        info = next(s for s in FeatureStore.open(store).feature_sets() if s.name == result.name)
        speed[key] = info.extra.get("images_per_second")
        print(f"{key}: {result.name} {result.status} in {time.time() - start:.0f} s "
              f"({speed[key]} images/s when extracted)", flush=True)

    print("\n| features | weights | size | " + " | ".join(f"{h} test %" for h in heads) + " | extraction img/s |")
    print("| --- | --- | --- |" + " --- |" * (len(heads) + 1))
    for key, name in names.items():
        config = SETS[key]
        cells = []
        for head in heads:
            if key.endswith("bf16") and head != "logreg":  # bf16 is measured against fp32 on one head
                cells.append("-")
                continue
            r = fitted(store, head, name, args.refit)
            cells.append(f"{100 * r['test_accuracy']:.2f}")
            print(f"  ({key} {head}: train {100 * r['train_accuracy']:.2f}%, fit {r['fit_seconds']:.0f} s, "
                  f"chosen {r.get('chosen') or r.get('epochs')})", file=sys.stderr, flush=True)
        label = name + (" (flip-averaged)" if config.flip_average else "")
        print(f"| {label} | {config.weights} | {config.size} | " + " | ".join(cells) + f" | {speed[key]} |", flush=True)

    for key in filter(None, args.kfold_sets.split(",")):
        table = kfold_scores(store, heads, k=args.k, features=names[key], workers=args.workers, progress=False)
        print(f"\n{args.k}-fold cross-validation on the training split, {names[key]} "
              f"(wall {table['wall_seconds']:.0f} s this run, {table['tasks_run']} fold tasks run)\n")
        print("| head | " + " | ".join(f"fold {i}" for i in range(args.k)) + " | mean ± std |")
        print("| --- |" + " --- |" * (args.k + 1))
        for r in table["rows"]:
            print(f"| {r['head']} | " + " | ".join(f"{100 * a:.2f}" for a in r["folds"])
                  + f" | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} |", flush=True)


if __name__ == "__main__":
    main()
