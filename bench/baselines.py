"""Seconds per epoch of each pixel baseline at its default size, on the shared CIFAR-10 images.

    python bench/baselines.py [--store bench/out/cifar10-full]

Each baseline trains 2 epochs on a subset; the second epoch (compiled, warm) is timed and scaled
to the 50,000 training images. Defaults: cnn at 32x32 (batch 128), wrn 28-10 at 32x32 (batch 128),
finetune ResNet50 at 224x224 with the last stage unfrozen (phase 2, batch 32).
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
from cnncodes.classifiers.baselines.train import build, compile_phase  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar"


def seconds_per_epoch(store, config, phase, rows, full_rows):
    import keras

    s = FeatureStore.open(store)
    X, y = s.images(split="train")[:rows], s.labels(split="train")[:rows]
    built = build(config, s.image_shape, 10)
    compile_phase(built, config, phase)
    model = built.model
    times = []

    class Clock(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    model.fit(X, y, batch_size=config.batch_size, epochs=2, verbose=0, callbacks=[Clock()])
    return times[1] * full_rows / rows, rows / times[1]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-full")
    args = p.parse_args()
    import keras  # noqa: F401

    from cnncodes.pipeline.extraction.device import describe_device
    if not Path(args.store, "data.h5").exists():
        ingest(args.store, IngestConfig(f"folder:{SHARED}"), progress=False, log=print)
    full = FeatureStore.open(args.store).counts()["train"]
    print(conditions({"device": describe_device(), "store": args.store, "training images": full}))
    print("\n| baseline | input | batch | timed on | images/s | s/epoch (50,000 images) |")
    print("| --- | --- | --- | --- | --- | --- |", flush=True)
    for name, config, phase, rows in [
        ("cnn", BaselineConfig("cnn"), 1, 4096),
        ("wrn 28-10 (sgd)", BaselineConfig("wrn"), 1, 256),
        ("finetune resnet50, phase 2", BaselineConfig("finetune", weights="none", batch_size=32), 2, 128),
    ]:
        spe, rate = seconds_per_epoch(args.store, config, phase, rows, full)
        size = config.size if config.kind == "finetune" else 32
        print(f"| {name} | {size}x{size} | {config.batch_size} | {rows} images | {rate:.1f} | {spe:.0f} |", flush=True)


if __name__ == "__main__":
    main()
