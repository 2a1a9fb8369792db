"""Where transfer wins (issue 39, point 3): at 10, 100, 1,000 labelled photos a class and all of them, heads on
cached codes against airbench trained from scratch, the same seeded draws of photos for every method.

    python bench/label_budgets.py --store bench/out/cifar10-full [--per-class 10,100,1000,all] [--seeds 0,1,2]
        [--heads logreg] [--features SET] [--from-scratch airbench] [--record]

Each method runs `cnncodes curve` (classifiers/evaluation/label_curve.py): a head on codes, or airbench on the
store's images with its batch size and epochs set by the draw's size (airbench.budget_settings, fixed
beforehand). Curves resume point by point, and airbench's full-data point is bench/from_scratch.py's run for
that seed, found again. The methods and the features are fixed before the run (by default the codes the sweep
chose on the training split, bench/anchors.py's record); the test split is scored once a point, and nothing is
chosen on it. With --record, one record a method and budget: each seed's test accuracy and fit seconds, and for
the heads the codes' extraction seconds (paid once, whatever the budget).
"""
import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import RECORDS, begin, note_option, save  # noqa: E402
from cnncodes.classifiers.evaluation.label_curve import label_curve, parse_per_class, per_class_text  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402


def chosen() -> dict:
    """The record of the codes the sweep chose on the training split (bench/anchors.py's)."""
    return json.loads((RECORDS / "fixed-codes--lite0--chosen.json").read_text())


def extraction_seconds(store: FeatureStore, codes: str) -> float:
    """What the codes cost to extract, once: the chosen codes' record says (its cuts came from one pass, which
    each set's own `seconds` counts again); other codes, the store's figure."""
    return chosen()["extraction_seconds"] if codes == chosen()["features"] else store.feature_set(codes).seconds


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="heads on codes against airbench from scratch, by labelled photos a class")
    p.add_argument("--store", required=True)
    p.add_argument("--per-class", default="10,100,1000,all")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--heads", default="logreg", help="comma-separated heads on codes")
    p.add_argument("--features", help="the codes [the sweep's choice, from its record]")
    p.add_argument("--from-scratch", default="airbench", help="the pixel baseline ('' for none)")
    p.add_argument("--record", action="store_true", help="write bench/records/label-budget--*.json")
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run_info = begin(__file__, note=args.note) if args.record else None
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    per_class, seeds = parse_per_class(args.per_class), tuple(int(s) for s in args.seeds.split(","))
    features = args.features or chosen()["features"]
    print(conditions({"store": args.store, "features": features}), flush=True)
    store = FeatureStore.open(args.store)
    methods = [(head, features) for head in filter(None, args.heads.split(","))]
    methods += [(args.from_scratch, None)] if args.from_scratch else []
    for head, codes in methods:
        curve = label_curve(args.store, head, features=codes, per_class=per_class, seeds=seeds, progress=True)
        extraction = extraction_seconds(store, codes) if codes else 0.0
        for size in curve["sizes"]:
            points = [p for p in curve["points"] if p["per_class"] == size["per_class"]]
            what = f"{head} on {'codes' if codes else 'pixels'}"
            print(f"{what}, {per_class_text(size['per_class'])} a class: {100 * size['mean']:.2f} ± "
                  f"{100 * size['std']:.2f} ({len(points)} seeds, {size['fit_seconds']:.0f} s a fit)", flush=True)
            if args.record:
                save(run_info, f"label-budget/{per_class_text(size['per_class'])}/{head}", table="label-budget",
                     family="airbench" if codes is None else "label-curve", headline=False,
                     row=f"{per_class_text(size['per_class'])} a class: {what}",
                     weights="none (from scratch)" if codes is None else "ImageNet (EfficientNet-Lite, published)",
                     seeds=[p["seed"] for p in points], test_accuracy=[p["test_accuracy"] for p in points],
                     wall_seconds=[p["fit_seconds"] for p in points], extraction_seconds=extraction,
                     per_class=size["per_class"], labelled=size["labelled"], classes=curve["n_classes"],
                     features=codes or "pixels",
                     head=head, **({"runs": [p["run"] for p in points]} if codes is None else {}))


if __name__ == "__main__":
    main()
