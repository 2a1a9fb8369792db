"""A finished fine-tune run scored with the test views `cnncodes baseline finetune --test-sides --test-flip`
chooses, for runs trained before those options (or by other code, whose runs the CLI does not find again).

    python bench/finetune_test_side.py --store /work/stores/cifar10 --run RUN [--sides 144,160,176,192] [--flip]

The run's kept weights (`model.weights.h5`, the epoch chosen on validation) load into its model built at any
side (Lite0 is convolutional and pooled, the device resize holds no weights). classifiers/test_views.py, the
CLI's code, scores the run's validation slice (the same seeded 10% of the training split it chose its epoch on)
at the run's side and each of --sides, plain and, with --flip, averaged with the mirror images; it keeps the
view that validates best (ties: the cheaper) and the test split is scored once, with that view. Nothing here
looks at the test split before the view is chosen.
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
from cnncodes.classifiers.baselines.train import build, train_rows, validation_slice  # noqa: E402
from cnncodes.classifiers.baselines.view_choice import choose_view, probabilities  # noqa: E402
from cnncodes.classifiers.runs.records import read_record  # noqa: E402
from cnncodes.classifiers.training.baseline_config import BaselineConfig  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402


def what_view(chosen: dict, size: int) -> str:
    return f"side {chosen.get('test_size', size)}" + (", flip-averaged" if chosen.get("test_flip") else "")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", required=True)
    p.add_argument("--run", required=True, help="a finished `cnncodes baseline finetune` run's folder name")
    p.add_argument("--sides", default="144,160,176,192", help="more sides than the run's own")
    p.add_argument("--flip", action="store_true", help="also each view averaged with the mirror images")
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    print(conditions({"store": args.store, "run": args.run}), flush=True)
    store = FeatureStore.open(args.store)
    run = store.path / "runs" / args.run
    record, problem = read_record(run / "record.json")
    if problem:
        sys.exit(f"{run}: {problem}")
    config = BaselineConfig(**{**record["params"], "test_sides": [int(s) for s in args.sides.split(",")],
                               "test_flip": args.flip})
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
          f"validation ({100 * record['validation_accuracy']:.2f}%), test {100 * record['test_accuracy']:.2f}% "
          f"(its record, at {what_view(record['chosen'], config.size)})\n")
    started = time.time()
    view, rows = choose_view(model_at, config, X_val, y_val)
    print("| side | flip-averaged | validation accuracy % |\n| --- | --- | --- |")
    for row in rows:
        print(f"| {row['size']} | {'yes' if row['flip'] else 'no'} | {100 * row['validation_accuracy']:.2f} |")
    print(f"({time.time() - started:.0f} s)")
    started = time.time()
    predicted = probabilities(model_at(view["size"]), images[test], view["flip"]).argmax(1)
    accuracy = float((predicted == labels[test]).mean())
    what = what_view({"test_size": view["size"], "test_flip": view["flip"]}, config.size)
    print(f"\nchosen on validation: {what} ({100 * view['validation_accuracy']:.2f}%); test accuracy with it, "
          f"scored once: **{100 * accuracy:.2f}%** ({test.sum()} photos, {time.time() - started:.0f} s)")


if __name__ == "__main__":
    main()
