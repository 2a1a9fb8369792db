"""What fine-tuning from cached maps saves per epoch (issue 21, point 2).

    python bench/cached_maps.py [--store bench/out/cifar10-maps] [--limit 1000] [--cut block5c_add]
                                [--epochs 2] [--batch-size 32]

Ingests a stratified subset of the shared CIFAR-10 photos (--limit per split), extracts the maps of
EfficientNet-Lite0 (ImageNet weights, 224) at --cut (the block output right below its default unfreeze point,
block6a_expand_conv), then fine-tunes the same model twice with the same seed, --head-epochs 0 (the layers from
block6a on and the head trained from the first epoch): from pixels, computing the frozen bottom every step,
and from the cached maps. Prints the extraction time, each run's seconds per epoch, the ratio, and both
runs' losses and test accuracies in Markdown with the commit, for bench/HISTORY.md. The runs differ by the
random flip, which a fine-tune from pixels draws and one from maps cannot (views of maps are not stored).
"""
import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.baselines.train import train_baseline  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"
quiet = dict(progress=False, log=lambda m: None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-maps")
    p.add_argument("--dataset", default=DATASET)
    p.add_argument("--limit", type=int, default=1000, help="images per split")
    p.add_argument("--cut", default="block5c_add")
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": f"{args.dataset}, {args.limit} images per split", "store": args.store}), flush=True)
    ingest(args.store, IngestConfig(args.dataset, limit=args.limit), **quiet)
    maps = extract_features(args.store, FeatureConfig("efficientnet_lite0", "imagenet", 224, layer=args.cut,
                                                      spatial=True), **quiet).name
    info = FeatureStore.open(args.store).feature_set(maps)
    print(f"\nmaps at {args.cut}: {info.spatial_shape[1:]} float16 an image, extracted for all "
          f"{info.n} images in {info.seconds:.0f} s\n", flush=True)
    base = dict(kind="finetune", backbone="efficientnet_lite0", weights="imagenet", size=224, epochs=args.epochs,
                head_epochs=0, batch_size=args.batch_size, learning_rate=1e-3)
    print("| fine-tune (Lite0 from block6a, 224) | s per epoch | loss per epoch | test accuracy % |")
    print("| --- | --- | --- | --- |")
    seconds = {}
    for source, extra in (("from pixels", {}), ("from cached maps", {"from_features": maps})):
        _, r = train_baseline(args.store, BaselineConfig(**base, **extra), **quiet)
        seconds[source] = r["seconds_per_epoch"]
        print(f"| {source} | {r['seconds_per_epoch']:.1f} | {', '.join(f'{v:.3f}' for v in r['history']['loss'])} "
              f"| {100 * r['test_accuracy']:.2f} |", flush=True)
    print(f"\nspeed-up per epoch: {seconds['from pixels'] / seconds['from cached maps']:.1f}x "
          f"(the maps' extraction, {info.seconds:.0f} s, is paid once)")


if __name__ == "__main__":
    main()
