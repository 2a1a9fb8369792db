"""A fine-tuned run scored at larger input sides than it trained at, the side chosen on its validation slice.

    python bench/finetune_test_side.py --store /work/stores/cifar10 --run RUN [--sides 128,144,160,176,192]

Random-resized crops make objects look larger while training than in the plain resize of the test images, so a
network trained with them at side s often scores better when tested a little above s (Touvron et al. 2019,
"Fixing the train-test resolution discrepancy"). Lite0 is convolutional and pooled and the device resize holds
no weights, so the run's kept weights (`model.weights.h5`, the epoch chosen on validation) load into its model
built at any side. This scores the run's validation slice (the same seeded 10% of the training split it chose
its epoch on) at each side, keeps the side that validates best (ties: the smaller), and scores the test split
once, at that side. The run's own test figure at its training side is in its record; nothing here looks at the
test split before the side is chosen.
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
from cnncodes.classifiers.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.classifiers.runs import read_record  # noqa: E402
from cnncodes.classifiers.train import build, train_rows, validation_slice  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--run", required=True, help="a finished `cnncodes baseline finetune` run's folder name")
    p.add_argument("--sides", default="128,144,160,176,192")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    print(conditions({"store": args.store, "run": args.run}), flush=True)
    store = FeatureStore.open(args.store)
    run = store.path / "runs" / args.run
    record, problem = read_record(run / "record.json")
    if problem:
        sys.exit(f"{run}: {problem}")
    config = BaselineConfig(**record["params"])
    if config.kind != "finetune" or config.from_features or config.fold is not None or not config.patience:
        sys.exit(f"{args.run} is not a fine-tune from pixels on the store's split with a validation slice")
    labels = store.labels(record["label"])
    train_idx, test = train_rows(store, config, labels)
    images = store.images()
    X, y = images[train_idx], labels[train_idx]
    val = validation_slice(y, config.seed)
    X_val, y_val = X[val], y[val]
    del X

    def model_at(side):
        built = build(config, store.image_shape, len(record["class_names"]), side)
        built.model.load_weights(run / "model.weights.h5")
        return built.model

    print(f"\nrun {args.run}: trained at side {config.size}, epoch {record['chosen']['best_epoch']} kept on "
          f"validation ({100 * record['validation_accuracy']:.2f}%), test at side {config.size} "
          f"{100 * record['test_accuracy']:.2f}% (its record)\n")
    print("| side | validation accuracy % | seconds |")
    print("| --- | --- | --- |")
    scores = {}
    for side in (int(s) for s in args.sides.split(",")):
        started = time.time()
        predicted = model_at(side).predict(X_val, batch_size=256, verbose=0).argmax(1)
        scores[side] = float((predicted == y_val).mean())
        print(f"| {side} | {100 * scores[side]:.2f} | {time.time() - started:.0f} |", flush=True)
    chosen = max(scores, key=lambda s: (scores[s], -s))
    started = time.time()
    predicted = model_at(chosen).predict(images[test], batch_size=256, verbose=0).argmax(1)
    accuracy = float((predicted == labels[test]).mean())
    print(f"\nchosen on validation: side {chosen} ({100 * scores[chosen]:.2f}%); test accuracy at side {chosen}, "
          f"scored once: **{100 * accuracy:.2f}%** ({test.sum()} photos, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
