"""Extraction speed against the reference method and the hardware's ceiling, in one run.

    python bench/extract.py [--backbones resnet50,efficientnet_lite0] [--sizes 224,96] [--precisions fp32,bf16]
                            [--parts speed,fold,bf16,memory,workers] [--head-size 224] [--head-limit 2000]

For each backbone, size and precision, on real images from ../shared/data/cifar10-jpg.tar (digits if absent):
  (a) the reference method: per-image cv2.resize(INTER_CUBIC) in Python, float32 preprocess_input,
      model.predict on batches of 16 (fp32 only, as the reference ran);
  (b) `cnncodes features` end to end: stored uint8 images read, resized and run on the device,
      pooled codes committed and the feature set written (the model build is not timed);
  (c) the bare Keras backbone forward on random input, same size and batch: the issue's ceiling;
  (d) the same forward with its BatchNorms folded into the convolutions, as (b) runs it: our ceiling.
Then: the bare forward with and without BatchNorm folding, interleaved; bf16 codes against fp32
(relative L2 error, and a logreg head's test accuracy); peak RSS of extracting 20,000 images against
2,000; 2 Dask workers against 1.
ResNet50 runs with --weights none (random weights cost the same FLOPs as ImageNet's), EfficientNet-Lite0
with its published ImageNet weights. The parts after speed use ResNet50.
"""
import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
import numpy as np  # noqa: E402

from bench.conditions import conditions  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

SHARED = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar"
DATASET = f"folder:{SHARED}" if SHARED.exists() else "digits"
quiet = dict(progress=False, log=lambda m: None)


def weights_of(backbone):
    """Random weights cost the same FLOPs as ImageNet's; EfficientNet-Lite's real ones are at hand."""
    return "imagenet" if backbone.startswith("efficientnet_lite") else "none"


def reference_method(images, size, backbone="resnet50"):
    """What the reference work did: OpenCV per image in a Python loop, float32 preprocessing in numpy,
    the plain Keras model (BatchNorms unfolded) with average pooling, predict on batches of 16."""
    import cv2
    import keras

    from cnncodes.pipeline.backbones import build_backbone, get_backbone

    base = build_backbone(backbone, weights_of(backbone), size)
    model = keras.Model(base.input, keras.layers.GlobalAveragePooling2D()(base.output))
    mode = get_backbone(backbone).preprocessing
    preprocess = {"caffe": keras.applications.resnet50.preprocess_input, "tf": lambda x: x / 127.5 - 1,
                  "lite": lambda x: (x - 127) / 128}[mode]
    model.predict(np.zeros((16, size, size, 3), np.float32), verbose=0)  # warm up, as (b) and (c) are
    start = time.perf_counter()
    for lo in range(0, len(images), 16):
        batch = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) for im in images[lo:lo + 16]])
        model.predict(preprocess(batch.astype("float32")), verbose=0)
    return len(images) / (time.perf_counter() - start)


def bare_forward(size, precision, batch, n, folded=False, backbone="resnet50"):
    from cnncodes.pipeline.backbones import build_backbone
    from cnncodes.pipeline.extraction.fold import fold_batch_norms

    model = build_backbone(backbone, weights_of(backbone), size, precision=precision)
    if folded:
        model = fold_batch_norms(model)
    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32")
    model.predict_on_batch(x)
    batches = max(1, n // batch)
    return batches * batch / forward_seconds(model, x, batches)


def forward_seconds(model, x, batches):
    start = time.perf_counter()
    for _ in range(batches):
        model.predict_on_batch(x)
    return time.perf_counter() - start


def ours(store, size, precision, batch, backbone="resnet50", **kw):
    shutil.rmtree(Path(store) / "features", ignore_errors=True)
    config = FeatureConfig(backbone, weights_of(backbone), size=size, precision=precision)
    result = extract_features(store, config, batch_size=batch, **kw, **quiet)
    return result.images_per_second, FeatureStore.open(store).features(result.name)


def peak_rss_mb(args):
    """Peak RSS of one `cnncodes` process, reported by itself (RUSAGE_CHILDREN would also count
    earlier children, such as Dask workers)."""
    probe = ("import resource, runpy, sys\nsys.argv = sys.argv[1:]\ntry:\n"
             "    runpy.run_path(sys.argv[0], run_name='__main__')\n"
             "finally:\n    print('maxrss', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr)")
    r = subprocess.run([sys.executable, "-c", probe, str(ROOT / "cli.py"), *map(str, args), "--quiet"], cwd=ROOT,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"cnncodes {' '.join(map(str, args))} failed: {r.stderr.strip().splitlines()[-2:]}")
    return int(r.stderr.strip().splitlines()[-1].split()[1]) / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--backbones", default="resnet50,efficientnet_lite0", help="speed part: compared in one run")
    p.add_argument("--sizes", default="224,96")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--parts", default="speed,fold,bf16,memory,workers", help="which measurements to run")
    p.add_argument("--head-size", type=int, default=224, help="bf16 part: image size of the head comparison")
    p.add_argument("--head-limit", type=int, default=2000, help="bf16 part: training (and test) images")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    from cnncodes.pipeline.extraction.device import describe_device
    print(conditions({"device": describe_device(), "data": DATASET, "batch": args.batch}), flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="cnncodes-bench-"))
    parts = args.parts.split(",")
    if "speed" in parts:
        speed(args, tmp)
    if "fold" in parts:
        fold_gain(args.batch)
    if "bf16" in parts:
        bf16_head(tmp, args.head_size, args.head_limit)
    if "memory" in parts and DATASET != "digits":
        small = peak_rss_mb(["features", "--dataset", DATASET, "--store", tmp / "m2k", "--limit", 1000,
                             "--size", 32, "--weights", "none"])
        large = peak_rss_mb(["features", "--dataset", DATASET, "--store", tmp / "m20k", "--limit", 10000,
                             "--size", 32, "--weights", "none"])
        print(f"\npeak RSS of one process, ingest + extraction at 32: 2,000 images {small:.1f} MB, "
              f"20,000 images {large:.1f} MB, ratio {large / small:.3f}", flush=True)
    if "workers" in parts:
        store = tmp / "w96"
        ingest(store, IngestConfig(DATASET, limit=512), **quiet)
        one, _ = ours(store, 96, "fp32", args.batch)
        two, _ = ours(store, 96, "fp32", args.batch, workers=2, chunk_size=128)
        print(f"\nDask LocalCluster at 96, fp32: 1 process {one:.1f} img/s, 2 worker processes {two:.1f} img/s, "
              f"speed-up {two / one:.2f}x (worker start-up and model build included)", flush=True)
    shutil.rmtree(tmp, ignore_errors=True)


def speed(args, tmp):
    print("\n| backbone | size | precision | images | (a) reference img/s | (b) cnncodes img/s "
          "| (c) bare Keras forward img/s | (d) bare folded forward img/s | b/a | b/c | b/d |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)
    codes, rates = {}, {}
    for size in map(int, args.sizes.split(",")):
        n = 512 if size >= 160 else 1024
        store = tmp / f"s{size}"
        ingest(store, IngestConfig(DATASET, limit=n // 2), **quiet)
        images = FeatureStore.open(store).images()
        for backbone in args.backbones.split(","):
            ref = reference_method(images, size, backbone)
            for precision in args.precisions.split(","):
                key = backbone, size, precision
                rate, codes[key] = ours(store, size, precision, args.batch, backbone)
                rates[key] = rate
                keras_ceiling = bare_forward(size, precision, args.batch, n, backbone=backbone)
                folded_ceiling = bare_forward(size, precision, args.batch, n, folded=True, backbone=backbone)
                a = f"{ref:.1f}" if precision == "fp32" else "-"
                ba = f"{rate / ref:.2f}" if precision == "fp32" else f"{rate / ref:.2f} (vs fp32 a)"
                print(f"| {backbone} | {size} | {precision} | {n} | {a} | {rate:.1f} | {keras_ceiling:.1f} "
                      f"| {folded_ceiling:.1f} | {ba} | {rate / keras_ceiling:.2f} | {rate / folded_ceiling:.2f} |",
                      flush=True)
    for (backbone, size, precision), rate in rates.items():
        if precision == "bf16" and (backbone, size, "fp32") in codes:
            f32, b16 = codes[backbone, size, "fp32"], codes[backbone, size, "bf16"]
            print(f"\n{backbone} at {size}: bf16 end to end {rate / rates[backbone, size, 'fp32']:.2f}x fp32; "
                  f"pooled codes relative L2 error {np.linalg.norm(b16 - f32) / np.linalg.norm(f32):.4f}", flush=True)
    lite, resnet = "efficientnet_lite0", "resnet50"
    for size in map(int, args.sizes.split(",")):
        for precision in args.precisions.split(","):
            if (lite, size, precision) in rates and (resnet, size, precision) in rates:
                ratio = rates[lite, size, precision] / rates[resnet, size, precision]
                print(f"\nat {size} {precision}: {lite} extracts {ratio:.2f}x as many images/s as {resnet}", flush=True)


def fold_gain(batch, size=224, rounds=4, batches=4):
    """The bare forward with and without BatchNorm folding, interleaved round by round (a noisy machine)."""
    from cnncodes.pipeline.backbones import build_backbone
    from cnncodes.pipeline.extraction.fold import fold_batch_norms

    x = np.random.default_rng(0).normal(size=(batch, size, size, 3)).astype("float32")
    for precision in ("fp32", "bf16"):
        plain = build_backbone("resnet50", "none", size, precision=precision)
        models = {"keras": plain, "folded": fold_batch_norms(plain)}
        seconds = dict.fromkeys(models, 0.0)
        for model in models.values():
            model.predict_on_batch(x)
        for _ in range(rounds):
            for name, model in models.items():
                seconds[name] += forward_seconds(model, x, batches)
        rate = {name: rounds * batches * batch / t for name, t in seconds.items()}
        print(f"\nbare forward at {size}, {precision}, {rounds} interleaved rounds of {batches * batch} images: Keras "
              f"{rate['keras']:.1f} img/s, BatchNorms folded {rate['folded']:.1f} img/s, "
              f"{rate['folded'] / rate['keras']:.2f}x", flush=True)


def bf16_head(tmp, size, limit):
    """A logreg head on fp32 against bf16 codes of `limit` training and (up to) `limit` test images."""
    from cnncodes.classifiers.evaluation.fit import fit_head

    store = tmp / "heads"
    ingest(store, IngestConfig(DATASET, limit=limit), **quiet)
    acc, codes = {}, {}
    for precision in ("fp32", "bf16"):
        extract_features(store, FeatureConfig(weights="none", size=size, precision=precision), name=precision, **quiet)
        acc[precision] = fit_head(store, "logreg", features=precision)[1]["test_accuracy"]
        codes[precision] = FeatureStore.open(store).features(precision)
    counts = FeatureStore.open(store).counts()
    error = np.linalg.norm(codes["bf16"] - codes["fp32"]) / np.linalg.norm(codes["fp32"])
    print(f"\nlogreg on {DATASET.split('/')[-1]} codes (size {size}, {counts['train']} training, {counts['test']} test "
          f"images): fp32 {100 * acc['fp32']:.2f}%, bf16 {100 * acc['bf16']:.2f}%, difference "
          f"{100 * (acc['bf16'] - acc['fp32']):+.2f} points; codes relative L2 error {error:.4f}", flush=True)


if __name__ == "__main__":
    main()
