"""What an exported model keeps and costs, against `cnncodes predict` (issue 22).

    python bench/export.py --store STORE --model RUN [--images 1000] [--speed-images 1000] [--out bench/out/export]
        [--formats ...]

Exports the head fitted in RUN (a run folder of STORE) as .keras, a SavedModel and .tflite (fp32, fp16, int8
calibrated on 200 of the store's training images), then on a seeded draw of --images test photos of the store
compares each with the predict path (the run's backbone setup and head, as `cnncodes predict` computes them):
top-1 agreement, the largest probability difference (and predict's own with another batch size), accuracy; and
measures file size, one-image latency
(median of 20 calls after a warm-up) and batch throughput (batches of 32) on this machine's cores. Prints
Markdown with the conditions and the commit, for bench/HISTORY.md.
"""
import argparse
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402

FORMATS = {"keras": ("model.keras", None), "savedmodel": ("savedmodel", None), "tflite": ("model.tflite", None),
           "tflite-fp16": ("model-fp16.tflite", "fp16"), "tflite-int8": ("model-int8.tflite", "int8")}
BATCH = 32


def size_mb(path: Path) -> float:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def runner(kind: str, path: Path):
    """A function from a uint8 batch to the model's outputs, for each format as its users load it."""
    import numpy as np
    import tensorflow as tf

    if kind == "keras":
        import keras

        model = keras.saving.load_model(path, safe_mode=True)
        return lambda x: np.asarray(model.predict_on_batch(x))
    if kind == "savedmodel":
        loaded = tf.saved_model.load(str(path))
        return lambda x: loaded.serve(tf.constant(x)).numpy()
    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count())
    index_in, index_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    shape = [None]

    def run(x):
        if shape[0] != x.shape:
            interpreter.resize_tensor_input(index_in, x.shape)
            interpreter.allocate_tensors()
            shape[0] = x.shape
        interpreter.set_tensor(index_in, x)
        interpreter.invoke()
        return interpreter.get_tensor(index_out).copy()
    return run


def timed(run, images):
    """(outputs of every image in batches of BATCH, images/s, median one-image latency in ms)."""
    import numpy as np

    run(images[:BATCH])  # warm-up: traces, allocates
    start = time.perf_counter()
    outs = np.concatenate([run(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])
    throughput = len(images) / (time.perf_counter() - start)
    run(images[:1])
    latencies = []
    for i in range(20):
        t = time.perf_counter()
        run(images[i:i + 1])
        latencies.append(time.perf_counter() - t)
    return outs, throughput, 1000 * float(np.median(latencies))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--model", required=True, help="a run folder made by `cnncodes fit`")
    p.add_argument("--images", type=int, default=1000, help="test photos compared")
    p.add_argument("--out", default="bench/out/export")
    p.add_argument("--formats", default=",".join(FORMATS))
    p.add_argument("--speed-images", type=int, default=1000,
                   help="how many of the photos time predict against the extractor (it needs no more to be steady)")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)
    import numpy as np

    from cnncodes.classifiers.serving.export_model import export_model
    from cnncodes.classifiers.serving.predict import codes_of, feature_parts, load_fitted_head, record_spatial, scores
    from cnncodes.features.store import FeatureStore
    from cnncodes.pipeline.console import filter_native_stderr

    filter_native_stderr()  # the converters' C++ summaries stay off the table
    print(conditions({"store": args.store, "model": args.model}), flush=True)
    store = FeatureStore.open(args.store)
    record, head = load_fitted_head(args.model)
    test = np.sort(np.random.default_rng(0).permutation(len(store.labels(record["label"], split="test")))[:args.images])
    images = store.images(split="test")[test]
    truth = store.labels(record["label"], split="test")[test]
    classes = np.asarray(head.classes_)
    margins = type(head).__name__ == "LinearSVM"

    def predicted(batch):  # the predict path, its codes computed in batches of `batch`
        X = codes_of(args.model, feature_parts(record), images, batch, record_spatial(record))
        return head.decision_function(X) if margins else scores(head, X)
    ref = predicted(BATCH)
    # the float summation order of a matrix product depends on its shapes, so predict itself differs with the
    # batch size where a resized pixel lands on a rounding tie: the floor of what any other runtime can match
    itself = predicted(2 * BATCH)
    ref_accuracy = float((classes[ref.argmax(1)] == truth).mean())
    print(f"\n{record['head']} on {record['features']}, {len(images)} test photos (seed 0); "
          f"the predict path: {100 * ref_accuracy:.2f}% right\n", flush=True)
    print("| format | file MB | export s | top-1 equal to predict % | max abs score difference | images beyond 1e-4 | "
          "accuracy % (change) | images/s, batches of 32 | one image, ms |\n"
          "| --- | --- | --- | --- | --- | --- | --- | --- | --- |", flush=True)

    def beyond(got):
        return int((np.abs(got - ref).max(axis=1) > 1e-4).sum())
    print(f"| predict itself, batches of {2 * BATCH} | - | - | "
          f"{100 * (itself.argmax(1) == ref.argmax(1)).mean():.2f} | "
          f"{np.abs(itself - ref).max():.1e} | {beyond(itself)} | - | - | - |", flush=True)
    out_dir = Path(args.out)
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)
    predict_speed(args.model, record, images[:args.speed_images], out_dir / "photos")
    for kind in args.formats.split(","):
        name, quantize = FORMATS[kind]
        start = time.perf_counter()
        export_model(args.model, out_dir / name, quantize=quantize, store=args.store, log=lambda m: None)
        seconds = time.perf_counter() - start
        got, speed, latency = timed(runner(kind.split("-")[0], out_dir / name), images)
        accuracy = float((classes[got.argmax(1)] == truth).mean())
        print(f"| {kind} | {size_mb(out_dir / name):.1f} | {seconds:.0f} | "
              f"{100 * (got.argmax(1) == ref.argmax(1)).mean():.2f} | {np.abs(got - ref).max():.1e} | {beyond(got)} | "
              f"{100 * accuracy:.2f} ({100 * (accuracy - ref_accuracy):+.2f}) | {speed:.1f} | {latency:.0f} |",
              flush=True)


def predict_speed(model, record, images, folder: Path):
    """`cnncodes predict` on the photos as PNG files (read, scaled, coded a chunk at a time, scored) against the
    extractor's device step alone on the same arrays (batches of 64, as `features` runs): is predict at extraction
    speed? Each builds its backbone once, inside the time."""
    import cv2

    from cnncodes.classifiers.serving.predict import codes_of, feature_parts, predict_files, record_spatial

    folder.mkdir()
    paths = []
    for i, img in enumerate(images):
        paths.append(str(folder / f"{i:05d}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(img, cv2.COLOR_RGB2BGR))
    start = time.perf_counter()
    predict_files(model, paths)
    on_files = len(paths) / (time.perf_counter() - start)
    start = time.perf_counter()
    codes_of(model, feature_parts(record), images, 64, record_spatial(record))
    step = len(images) / (time.perf_counter() - start)
    print(f"predict on {len(paths)} PNG files: {on_files:.1f} images/s; the extractor's device step alone on the same "
          f"images: {step:.1f} images/s (ratio {on_files / step:.2f})\n", flush=True)


if __name__ == "__main__":
    main()
