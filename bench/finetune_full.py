"""A full-network fine-tune of EfficientNet-Lite0 on the whole CIFAR-10 training split (issue 21), resumable.

    python bench/finetune_full.py --store /work/stores/cifar10 [--dataset folder:PATH] [--size 128] [--epochs 5]
                                  [--learning-rate 0.01] [--crop-area 0.6] [--batch-size 64] [--progressive 0:0]
                                  [--from-maps block5c_add --views 2] [--seeds 0,1,2]
                                  [--test-sides 176,192,208 --test-flip] [--record NAME]

The frozen recipe of the fine-tune headline (issue 38; designed in bench/HISTORY.md while the test split was
scored, then frozen at these settings and run for seeds 0, 1, 2):

    python bench/finetune_full.py --store bench/out/cifar10-full --size 160 --progressive 128:6 --epochs 10 \
        --test-sides 176,192,208 --test-flip --seeds 0,1,2 --record finetune/lite0/progressive-160

Trains `cnncodes baseline finetune --unfreeze-from all` with settings fixed before any run (below), keeps the
epoch with the best accuracy on a 10% validation slice of the training split (`--patience`, set to the epoch
count so that no epoch is cut short), scores the test split once with that epoch's weights, and prints the
epoch curve, wall time, training images/s and the command that reproduces it. With --test-sides/--test-flip
the test view (side, mirror averaging) is chosen on the same validation slice before the test split is scored.
Every epoch ends in a checkpoint: run the same command again (from the same code: a run's name hashes the
source) and it goes on from the last finished epoch, across sessions; seeds run one after the other, a finished
seed's run is found again (not scored again). With --record, a record (bench/records/) is written after each
seed with every seed finished so far: a run spanning several sessions publishes its seeds as they come.

The settings, fixed beforehand rather than tuned (nothing here looks at the test split): BiT's rule for
images under 96 px (Kolesnikov et al. 2020: fine-tune at 128, random crops of about 0.64 of the area, flips),
SGD with Nesterov momentum, one warm-up epoch then cosine decay, label smoothing 0.1, BatchNorm statistics
frozen, no head-only phase (the warm-up protects the backbone from the new head's first gradients).

With `--from-maps CUT`, the fine-tune beside it (issue 21, point 3): the maps at CUT of every image and of
--views K random-resized crops with flips of each training image (`cnncodes features --layer CUT --spatial
--views K`, resumable by chunk) are extracted once at the same --size, and every layer above the cut (from
the one right after it: block6a_expand_conv for block5c_add) trains on them with the same settings, each epoch drawing
an image's plain maps or one of its views' (crops of --crop-area to all of the area with flips, as the
fine-tune from pixels draws them on the device, but K fixed ones per image instead of new ones each epoch).
The maps cover the whole store, whatever --limit. Its record (the frontier's row; never the headline) counts the
maps' extraction once beside each seed's training:

    python bench/finetune_full.py --store bench/out/cifar10-full --from-maps block4c_add --views 4 --epochs 10 \
        --seeds 0,1,2 --record finetune/lite0/from-maps-block4c
"""
import argparse
import os
import shlex
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, bootstrap_interval, note_option, save  # noqa: E402
from cnncodes.classifiers.baselines.train import train_baseline  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.provenance import code_version  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extraction.augment import Augmentation  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="A full-network fine-tune of Lite0 on the store's training split")
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
    p.add_argument("--from-maps", metavar="CUT", help="train the layers above CUT on its cached maps instead")
    p.add_argument("--views", type=int, default=2, help="with --from-maps: cached views of each training image")
    p.add_argument("--seeds", default="0", help="comma-separated: one run a seed, one after the other")
    p.add_argument("--test-sides", default="", help="comma-separated sides the test view is chosen among")
    p.add_argument("--test-flip", action="store_true", help="also each view averaged with the mirror images")
    p.add_argument("--record", metavar="NAME", help="write bench/records/NAME.json (needs a clean tree)")
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run_info = begin(__file__, note=args.note) if args.record else None  # before any work: a dirty tree costs nothing
    seeds = [int(s) for s in args.seeds.split(",")]
    sides = [int(s) for s in args.test_sides.split(",") if s]
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": args.dataset, "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset), progress=False, log=lambda m: None)
    side, early = (int(v) for v in args.progressive.split(":"))
    maps = cached_maps(args) if args.from_maps else None
    config = BaselineConfig(
        "finetune", backbone="efficientnet_lite0", weights="imagenet", size=args.size,
        unfreeze_from=None if maps else "all", head_epochs=0, epochs=args.epochs, patience=args.epochs,
        optimizer="sgd", learning_rate=args.learning_rate, batch_size=args.batch_size,
        label_smoothing=args.label_smoothing, warmup_epochs=1, cosine=True, crop_area=1.0 if maps else args.crop_area,
        progressive_size=side or None, progressive_epochs=early, limit=args.limit, from_features=maps,
        test_sides=sides, test_flip=args.test_flip)
    command = ("cnncodes baseline finetune --store " + shlex.quote(args.store) + " --backbone efficientnet_lite0"
               f" --size {args.size}" + (f" --from-features {maps}" if maps else " --unfreeze-from all")
               + f" --head-epochs 0 --epochs {args.epochs} --patience {args.epochs}"
               f" --optimizer sgd --learning-rate {args.learning_rate} --batch-size {args.batch_size}"
               f" --label-smoothing {args.label_smoothing} --warmup-epochs 1 --cosine"
               + ("" if maps else f" --crop-area {args.crop_area}")
               + (f" --progressive {side}:{early}" if side else "") + (f" --limit {args.limit}" if args.limit else "")
               + (f" --test-sides {args.test_sides}" if sides else "") + (" --test-flip" if args.test_flip else ""))
    finished = []
    for seed in seeds:
        print(f"\nthe same run from the command line: {command} --seed {seed}\n", flush=True)
        run, r = one_seed(args, replace(config, seed=seed))
        finished.append((seed, run, r))
        if args.record:
            write_record(args, run_info, finished, command)


def one_seed(args, config):
    started = time.time()
    run, r = train_baseline(args.store, config, progress=True, log=print)
    history, chosen = r["history"], r["chosen"]
    rows = round(0.9 * (args.limit or FeatureStore.open(args.store).counts()["train"]))  # 10% validate, not train
    print(f"\nrun {run.name} (`code.commit` {(code_version()['commit'] or '?')[:7]}); "
          f"this call {time.time() - started:.0f} s, "
          f"the run {r['fit_seconds']:.0f} s over {r['epochs']} epochs ({r['seconds_per_epoch']:.0f} s an epoch, about "
          f"{rows / r['seconds_per_epoch']:.1f} training images/s)\n")
    print("| epoch | train accuracy % (augmented, running) | validation accuracy % | loss |")
    print("| --- | --- | --- | --- |")
    for i, acc in enumerate(history.get("accuracy", [])):
        val = history.get("val_accuracy", [None] * (i + 1))[i]
        print(f"| {i + 1} | {100 * acc:.2f} | {'-' if val is None else f'{100 * val:.2f}'} | "
              f"{history['loss'][i]:.4f} |")
    view = f", test view side {chosen.get('test_size', config.size)}" + (" flip-averaged" if chosen.get("test_flip")
                                                                         else "")
    print(f"\nchosen on validation: epoch {chosen['best_epoch']} ({100 * r['validation_accuracy']:.2f}%){view}; "
          f"test accuracy, scored once with its weights: **{100 * r['test_accuracy']:.2f}%**", flush=True)
    return run, r


def write_record(args, run_info: dict, finished: list, command: str):
    """The record of every seed finished so far; a seed's run scored the test split once, when it finished
    (a finished run found again is not scored again: `runs` lets the record it replaces say so)."""
    import numpy as np

    store = FeatureStore.open(args.store)
    truth = np.asarray(store.labels(finished[0][2]["label"]))[store.split == 1]
    correct = np.array([np.asarray(r["test_predictions"]) == truth for _, _, r in finished])
    assert np.allclose(correct.mean(1), [r["test_accuracy"] for _, _, r in finished])
    chosen = [r["chosen"] for _, _, r in finished]
    maps = store.feature_set(finished[0][2]["params"]["from_features"]) if args.from_maps else None
    what = (f"every layer above {args.from_maps} from its cached maps ({args.views} views an image)" if maps
            else "every layer")
    save(run_info, args.record, table="finetune", family="finetune-lite0", headline=len(finished) >= 3 and not maps,
         row=f"Lite0 fine-tuned, {what}, side {args.size}" + (f" after {args.progressive.split(':')[1]} epochs "
             f"at {args.progressive.split(':')[0]}" if args.progressive != "0:0" else "") + f", {args.epochs} epochs",
         extraction_seconds=round(maps.seconds, 1) if maps else None,  # the maps, once: the frontier counts them
         weights="EfficientNet-Lite0 ImageNet (published)", seeds=[s for s, _, _ in finished],
         test_accuracy=[r["test_accuracy"] for _, _, r in finished], test_interval=bootstrap_interval(correct),
         validation_accuracy=[r["validation_accuracy"] for _, _, r in finished],
         best_epochs=[c["best_epoch"] for c in chosen],
         test_views=[[c.get("test_size", args.size), bool(c.get("test_flip"))] for c in chosen],
         wall_seconds=[r["fit_seconds"] for _, _, r in finished], runs=[run.name for _, run, _ in finished],
         cli_command=command, store=args.store)


def cached_maps(args) -> str:
    """The name of the set of maps (with views) at --from-maps, extracted (or resumed, or found) here."""
    config = FeatureConfig("efficientnet_lite0", "imagenet", args.size, layer=args.from_maps, spatial=True,
                           views=args.views, augmentation=Augmentation(scale=(args.crop_area, 1.0)))
    print(f"the maps: `cnncodes features --store {shlex.quote(args.store)} --backbone efficientnet_lite0 --size "
          f"{args.size} --layer {args.from_maps} --spatial --views {args.views} --view-area {args.crop_area}`",
          flush=True)
    result = extract_features(args.store, config, progress=True, log=print)
    info = FeatureStore.open(args.store).feature_set(result.name)
    print(f"maps at {args.from_maps}: {tuple(info.spatial_shape[1:])} float16 an image and view; {info.views} views "
          f"of each training image; extraction {info.seconds:.0f} s over every pass that made it (the views' share "
          f"{info.extra.get('views_seconds', 0):.0f} s)", flush=True)
    return result.name


if __name__ == "__main__":
    main()
