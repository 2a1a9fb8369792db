"""Does `--precision bf16` pay for a full-network fine-tune on this CPU? (issue 21, point 1)

    python bench/train_precision.py --store /work/stores/cifar10 [--size 128] [--batch-size 64] [--steps 8] [--rounds 3]

Builds `cnncodes baseline finetune --unfreeze-from all --crop-area 0.6`'s model (EfficientNet-Lite0, ImageNet
weights, SGD with the warm-up and cosine schedule, label smoothing) twice in one process, once in float32 and
once with Keras's mixed_bfloat16 policy (bfloat16 arithmetic, float32 master weights), and times training
steps on the same batches of the store's training images, the two alternating round by round (after an untimed round)
so that the machine's noise falls on both alike; then the inference forward pass the same way. Prints images/s per
precision and round and the ratio bf16 / fp32 of the medians. Only speed: the accuracy of a bf16 run is a run
of its own.
"""
import argparse
import os
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.baselines.train import build, compile_phase  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="timed training steps per precision and round")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    import keras
    import numpy as np

    print(conditions({"store": args.store, "size": args.size, "batch": args.batch_size}), flush=True)
    store = FeatureStore.open(args.store)
    n = args.batch_size * args.steps
    images = np.asarray(store.images("train", lazy=True)[:n])  # any real images time alike
    labels = np.asarray(store.labels(split="train")[:n])
    n_classes = len(store.class_names())
    config = BaselineConfig("finetune", backbone="efficientnet_lite0", weights="imagenet", size=args.size,
                            unfreeze_from="all", head_epochs=0, epochs=10, optimizer="sgd", learning_rate=0.01,
                            batch_size=args.batch_size, label_smoothing=0.1, warmup_epochs=1, cosine=True,
                            crop_area=0.6)
    models = {}
    for precision in PRECISIONS:
        built = build(replace(config, precision=precision), images.shape[1:], n_classes)
        compile_phase(built, replace(config, precision=precision), 2, steps_per_epoch=700)
        models[precision] = built.model
        convs = {l.compute_dtype for l in built.backbone.layers if isinstance(l, keras.layers.Conv2D)}
        print(f"{precision}: built; the backbone's convolutions compute in {', '.join(sorted(convs))}", flush=True)
    train = {p: [] for p in PRECISIONS}
    forward = {p: [] for p in PRECISIONS}
    for r in range(-1, args.rounds):  # round 0 (printed, not counted): every batch shape traced, caches warm
        for precision in PRECISIONS if r % 2 else PRECISIONS[::-1]:
            model = models[precision]
            start = time.perf_counter()
            for i in range(args.steps):
                batch = slice(i * args.batch_size, (i + 1) * args.batch_size)
                model.train_on_batch(images[batch], labels[batch])
            trained = n / (time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(images, batch_size=args.batch_size, verbose=0)
            inferred = n / (time.perf_counter() - start)
            if r >= 0:
                train[precision].append(trained)
                forward[precision].append(inferred)
            print(f"round {r + 1}{' (warm-up)' if r < 0 else ''} {precision}: training {trained:.1f} images/s, "
                  f"inference {inferred:.1f} images/s", flush=True)
    print(f"\n| precision | training images/s (median of {args.rounds} rounds of {n}) | inference images/s |")
    print("| --- | --- | --- |")
    for precision in PRECISIONS:
        print(f"| {precision} | {statistics.median(train[precision]):.1f} | "
              f"{statistics.median(forward[precision]):.1f} |")
    print(f"\nbf16 / fp32: training {statistics.median(train['bf16']) / statistics.median(train['fp32']):.2f}x, "
          f"inference {statistics.median(forward['bf16']) / statistics.median(forward['fp32']):.2f}x "
          f"(keras {keras.__version__}, backend {keras.backend.backend()})")


if __name__ == "__main__":
    main()
