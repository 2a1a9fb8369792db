"""Does `--precision bf16` pay for a full-network fine-tune, or for airbench from scratch, on this CPU? (issue 21,
point 1; issue 39, point 2)

    python bench/train_precision.py --store /work/stores/cifar10 [--kind finetune|airbench] [--size 128]
                                    [--batch-size 64] [--steps 8] [--rounds 3] [--record]

With --kind airbench: `cnncodes baseline airbench`'s model and optimizer (its whitening fitted on the timed
images), at the images' own side, instead of the fine-tune's. With --record (a clean tree), a record of the
ratio (bench/records/precision--KIND.json; no test split is read).

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
from bench.records import begin, note_option, save  # noqa: E402
from cnncodes.classifiers.baselines.train import build, compile_phase  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402

PRECISIONS = ("fp32", "bf16")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="training and inference images/s in fp32 and bf16, alternating")
    p.add_argument("--store", required=True)
    p.add_argument("--kind", default="finetune", choices=("finetune", "airbench"))
    p.add_argument("--record", action="store_true", help="write bench/records/precision--KIND.json")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--steps", type=int, default=8, help="timed training steps per precision and round")
    p.add_argument("--rounds", type=int, default=3)
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run_info = begin(__file__, note=args.note) if args.record else None
    import keras
    import numpy as np

    print(conditions({"store": args.store, "size": args.size, "batch": args.batch_size}), flush=True)
    store = FeatureStore.open(args.store)
    n = args.batch_size * args.steps
    images = np.asarray(store.images("train", lazy=True)[:n])  # any real images time alike
    labels = np.asarray(store.labels(split="train")[:n])
    n_classes = len(store.class_names())
    if args.kind == "airbench":
        config = BaselineConfig("airbench", batch_size=args.batch_size, epochs=10)
    else:
        config = BaselineConfig("finetune", backbone="efficientnet_lite0", weights="imagenet", size=args.size,
                                unfreeze_from="all", head_epochs=0, epochs=10, optimizer="sgd", learning_rate=0.01,
                                batch_size=args.batch_size, label_smoothing=0.1, warmup_epochs=1, cosine=True,
                                crop_area=0.6)
    models = {}
    for precision in PRECISIONS:
        built = build(replace(config, precision=precision), images.shape[1:], n_classes)
        if args.kind == "airbench":
            from cnncodes.classifiers.baselines.airbench import fit_to_data

            fit_to_data(built.model, images, 0)
        compile_phase(built, replace(config, precision=precision), 2, steps_per_epoch=700)
        models[precision] = built.model
        layers = built.backbone.layers if built.backbone else built.model.layers
        convs = {l.compute_dtype for l in layers if isinstance(l, keras.layers.Conv2D)}
        print(f"{precision}: built; the convolutions compute in {', '.join(sorted(convs))}", flush=True)
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
    ratio = {name: statistics.median(t["bf16"]) / statistics.median(t["fp32"])
             for name, t in (("training", train), ("inference", forward))}
    print(f"\nbf16 / fp32: training {ratio['training']:.2f}x, inference {ratio['inference']:.2f}x "
          f"(keras {keras.__version__}, backend {keras.backend.backend()})")
    if args.record:
        save(run_info, f"precision/{args.kind}", table="precision", headline=False, seeds=[],
             family={"finetune": "finetune-lite0"}.get(args.kind, args.kind),
             row=f"{args.kind}: bf16 against fp32, batches of {args.batch_size}", test_accuracy=None,
             weights="ImageNet (EfficientNet-Lite, published)" if args.kind == "finetune" else "none (from scratch)",
             training_images_per_second={p: round(statistics.median(train[p]), 1) for p in PRECISIONS},
             inference_images_per_second={p: round(statistics.median(forward[p]), 1) for p in PRECISIONS},
             bf16_over_fp32=ratio, rounds=args.rounds, images=n)


if __name__ == "__main__":
    main()
