"""`cnncodes audit` measured on real photos with planted problems, and on the full CIFAR-10 (issue 23).

    python bench/audit.py [--out bench/out/audit] [--train 200] [--test 50] [--copies 50] [--flips 0.03]
                          [--outliers 20] [--size 224] [--lowest 0.8] [--Cs 0.0003,0.001,0.003,0.01,0.1] [-k 5]
                          [--cifar-store DIR [--stand-in 10000] [--full]]

(a) Planted: a seeded draw of --train and --test photos a class from the shared cifar10-jpg.tar, written as a
class-folder tree, with planted problems: --copies training photos of each of four kinds filed again in the
test split (exact copies of the file; re-encoded as JPEG at quality 50; rescaled to half size and back up,
bicubic; shifted by 2 or 3 pixels each way, edges reflected: lossless PNG but for the JPEG kind), a --flips
share of the other training photos moved to another class's folder, and --outliers images no class has
(uniform noise; scikit-learn's 8x8 handwritten digits, enlarged) in the test split. `cnncodes features`
ingests it and extracts Lite0's ImageNet codes at --size; `cnncodes audit --threshold --lowest` lists every
pair down to --lowest, so one run gives each threshold's recall and precision. The label check is then run
for each of --Cs (Python, the same search) to choose its C.

Counting: a planted copy is found at threshold t when its pair with its original is listed at or above t.
A listed pair without a planted copy in it is "unplanted": CIFAR-10 has near-duplicates of its own, so these
are an upper bound on false positives, not a count of them; each is also scored by the correlation of its two
images' grey pixels, and contact sheets (PNG, in --out) show samples to judge by eye. A flagged label is a
hit when its photo was moved; CIFAR-10's own wrong labels count as misses, so label precision is a lower bound.

With --cifar-store (a store of the full shared CIFAR-10 with Lite0's last layer at 224, only read here): the
planted copies and --stand-in other training photos, standing in for test photos, each searched against the
remaining training photos: each threshold's leak recall and false alarms at CIFAR-10's size, where the default
threshold is chosen (highest F1; CIFAR-10's test split is never read), with contact sheets by band of similarity.

(b) With --full as well (--cifar-store then a writable copy: the audit writes into it): `cnncodes audit` at the
defaults, the share of test photos whose nearest training photo is at or above each threshold, beside ciFAIR's
3.3% (Barz & Denzler 2020), and contact sheets of leaked pairs and of the first label and outlier rows.
"""
import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from cnncodes.classifiers.audit.audit import run_audit  # noqa: E402
from cnncodes.classifiers.audit.duplicates import DUPLICATE_THRESHOLD, all_neighbors, leakage  # noqa: E402
from cnncodes.classifiers.audit.outliers import centroid_distance, class_centroids  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402

TAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar"
KINDS = ("exact", "jpeg", "rescaled", "shifted")
CIFAR_FEATURES = "efficientnet_lite0-top_activation-224-imagenet-fp32"  # the shared store's Lite0 last layer
THRESHOLDS = np.round(np.arange(0.80, 0.9951, 0.005), 3)


def cli(*args) -> str:
    """`cnncodes ARGS` as a user runs it; its output, or the run stops with its error."""
    result = subprocess.run([sys.executable, "-m", "cnncodes", *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"cnncodes {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


# -- (a) the planted data set --------------------------------------------------------------------------------
def read_photos(rng, per_split: dict) -> dict:
    """{(split, class): [(name, jpeg bytes), ...]}: a seeded draw of per_split[split] photos a class."""
    with tarfile.open(TAR) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        groups = {}
        for m in members:
            split, cls, name = m.name.split("/")[-3:]
            groups.setdefault((split, cls), []).append(m)
        drawn = {}
        for (split, cls), group in sorted(groups.items()):
            group = sorted(group, key=lambda m: m.name)
            chosen = rng.choice(len(group), per_split[split], replace=False)
            drawn[(split, cls)] = [(Path(group[i].name).name, tar.extractfile(group[i]).read()) for i in sorted(chosen)]
    return drawn


def decoded(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def planted_copy(kind: str, jpeg: bytes, rng) -> tuple[str, bytes]:
    """(suffix, file bytes) of one planted copy of a photo."""
    if kind == "exact":
        return ".jpg", jpeg
    img = decoded(jpeg)
    if kind == "jpeg":
        return ".jpg", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 50])[1].tobytes()
    if kind == "rescaled":
        h, w = img.shape[:2]
        small = cv2.resize(img, (w // 2, h // 2), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == "shifted":
        dx, dy = rng.choice([-3, -2, 2, 3], 2)
        img = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), img.shape[1::-1], borderMode=cv2.BORDER_REFLECT)
    return ".png", cv2.imencode(".png", img)[1].tobytes()


def outlier_images(n: int, rng) -> list[np.ndarray]:
    """Half uniform noise, half handwritten digits (grey, enlarged to 32x32): images of no CIFAR-10 class."""
    from sklearn.datasets import load_digits

    digits = np.round(load_digits().images * 255 / 16).astype(np.uint8)
    noise = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(n - n // 2)]
    drawn = [cv2.cvtColor(cv2.resize(digits[i], (32, 32), interpolation=cv2.INTER_NEAREST), cv2.COLOR_GRAY2BGR)
             for i in rng.choice(len(digits), n // 2, replace=False)]
    return noise + drawn


def write_tree(tree: Path, args) -> dict:
    """The class-folder tree with its planted problems; returns the truth, by source path as the store records it."""
    rng = np.random.default_rng(args.seed)
    photos = read_photos(rng, {"train": args.train, "test": args.test})
    classes = sorted({cls for _, cls in photos})
    truth = {"copies": {}, "flips": {}, "outliers": []}
    train = [(cls, name, jpeg) for (split, cls), items in photos.items() if split == "train" for name, jpeg in items]
    order = rng.permutation(len(train))
    originals = order[:len(KINDS) * args.copies]
    flipped = order[len(originals):len(originals) + round(args.flips * len(train))]
    moved = {int(i): rng.choice([c for c in classes if c != train[i][0]]) for i in flipped}
    for i, (cls, name, jpeg) in enumerate(train):
        folder = moved.get(i, cls)
        name = f"moved-{i:04d}.jpg" if i in moved else name  # never the name of a photo of the class it joins
        path = tree / "train" / folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(jpeg)
        if i in moved:
            truth["flips"][f"train/{folder}/{name}"] = cls
    for (split, cls), items in photos.items():
        if split == "test":
            for name, jpeg in items:
                (tree / "test" / cls).mkdir(parents=True, exist_ok=True)
                (tree / "test" / cls / name).write_bytes(jpeg)
    for n, i in enumerate(originals):
        kind = KINDS[n // args.copies]
        cls, name, jpeg = train[i]
        suffix, data = planted_copy(kind, jpeg, rng)
        copy = f"test/{cls}/copy-{kind}-{n:03d}{suffix}"
        (tree / copy).write_bytes(data)
        truth["copies"][copy] = {"kind": kind, "original": f"train/{cls}/{name}"}
    for n, img in enumerate(outlier_images(args.outliers, rng)):
        cls = classes[rng.integers(len(classes))]
        path = f"test/{cls}/outlier-{n:02d}.png"
        (tree / path).write_bytes(cv2.imencode(".png", img)[1].tobytes())
        truth["outliers"].append(path)
    return truth


# -- counting ----------------------------------------------------------------------------------------------------
def grey_correlation(images: np.ndarray, a: int, b: int) -> float:
    """Pearson correlation of two stored images' grey pixels: near 1 for the same photo, however re-encoded."""
    x, y = (images[r].astype(np.float64).mean(axis=-1).ravel() for r in (a, b))
    x, y = x - x.mean(), y - y.mean()
    return float(x @ y / max(np.linalg.norm(x) * np.linalg.norm(y), 1e-12))


def planted_row(pair: dict, truth: dict) -> bool:
    """Whether a listed pair holds a planted copy or a planted outlier."""
    return any(pair[key] in truth["copies"] or pair[key] in truth["outliers"] for key in ("source", "other"))


def duplicate_table(record: dict, truth: dict, images: np.ndarray) -> tuple[list[str], dict]:
    """Markdown rows, one a threshold: recall of each kind, per-kind precision, unplanted pairs."""
    pairs = [r for r in record["rows"] if r["kind"] == "duplicate"]
    copies = truth["copies"]
    lines, by_threshold = [], {}
    for t in THRESHOLDS:
        listed = [p for p in pairs if p["score"] >= t]
        cells, found_all = [], 0
        for kind in KINDS:
            planted = {c: v["original"] for c, v in copies.items() if v["kind"] == kind}
            involving = [p for p in listed if p["source"] in planted or p["other"] in planted]
            hits = {p["other"] if p["other"] in planted else p["source"] for p in involving
                    if planted.get(p["other"]) == p["source"] or planted.get(p["source"]) == p["other"]}
            found_all += len(hits)
            precision = len(hits) / len(involving) if involving else float("nan")
            cells.append(f"{100 * len(hits) / len(planted):.0f} / {100 * precision:.0f}")
        unplanted = [p for p in listed if not planted_row(p, truth)]
        among_outliers = sum(p["source"] in truth["outliers"] and p["other"] in truth["outliers"] for p in listed)
        alike = sum(grey_correlation(images, p["row"], p["other_row"]) >= 0.9 for p in unplanted)
        where = {w: sum((p["split"], p["other_split"]) == w for p in unplanted)
                 for w in (("train", "train"), ("train", "test"), ("test", "test"))}
        recall = found_all / len(copies)
        judged = len(listed) - among_outliers
        precision = found_all / judged if judged else float("nan")
        f1 = 2 * recall * precision / (recall + precision) if listed and recall + precision else 0.0
        by_threshold[float(t)] = {"recall": recall, "precision": precision, "f1": f1, "unplanted": len(unplanted),
                                  "alike": alike}
        lines.append(f"| {t:.3f} | " + " | ".join(cells) + f" | {len(unplanted)} ({where[('train', 'train')]} / "
                     f"{where[('train', 'test')]} / {where[('test', 'test')]}) | {alike} | {among_outliers} | "
                     f"{100 * recall:.1f} | {100 * precision:.1f} | {f1:.3f} |")
    return lines, by_threshold


def label_counts(record: dict, truth: dict) -> dict:
    flagged = [r for r in record["rows"] if r["kind"] == "label"]
    train = [r for r in flagged if r["split"] == "train"]
    hits = [r for r in train if r["source"] in truth["flips"]]
    top = [r for r in train[:len(truth["flips"])] if r["source"] in truth["flips"]]
    right = sum(r["suggested"] == truth["flips"][r["source"]] for r in hits)
    recall, precision = len(hits) / len(truth["flips"]), len(hits) / max(len(train), 1)
    return {"flagged_train": len(train), "flagged_test": len(flagged) - len(train), "hits": len(hits),
            "recall": recall, "precision": precision,
            "f1": 2 * recall * precision / (recall + precision) if recall + precision else 0.0,
            "in_top": len(top), "suggested_right": right,
            "outliers_flagged_as_labels": sum(r["source"] in truth["outliers"] for r in flagged)}


def contact_sheet(path: Path, images: np.ndarray, pairs: list, scale: int = 3, columns: int = 4):
    """Each pair side by side (enlarged), a similarity written under it; `pairs`: (row, other row, text)."""
    tiles = []
    for a, b, text in pairs:  # b None: one image
        right = images[b] if b is not None else np.full_like(images[a], 255)
        two = np.concatenate([images[a], np.full((images.shape[1], 2, 3), 255, np.uint8), right], axis=1)
        two = cv2.resize(two, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
        caption = np.full((14, two.shape[1], 3), 255, np.uint8)
        cv2.putText(caption, text, (2, 11), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1)
        tiles.append(np.pad(np.concatenate([two, caption]), ((4, 4), (4, 4), (0, 0)), constant_values=255))
    if not tiles:
        return
    tiles += [np.full_like(tiles[0], 255)] * (-len(tiles) % columns)
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    cv2.imwrite(str(path), cv2.cvtColor(np.concatenate(rows), cv2.COLOR_RGB2BGR))


def planted_bench(args, out: Path):
    tree, store = out / "tree", out / "store"
    if not tree.exists():
        truth = write_tree(tree, args)
        (out / "truth.json").write_text(json.dumps(truth, indent=1))
    truth = json.loads((out / "truth.json").read_text())
    n_train = len(list((tree / "train").rglob("*.*")))
    n_test = len(list((tree / "test").rglob("*.*")))
    print(f"\n## (a) planted: {n_train} training photos ({len(truth['flips'])} moved to another class), {n_test} test "
          f"photos ({len(truth['copies'])} planted copies of training photos, {args.copies} of each kind; "
          f"{len(truth['outliers'])} outliers)\n", flush=True)
    start = time.time()
    cli("features", "--dataset", f"folder:{tree}", "--store", store, "--backbone", "efficientnet_lite0",
        "--size", args.size, "--quiet")
    s = FeatureStore.open(store)
    name = s.feature_set().name  # the store's only one: Lite0's last layer, pooled
    print(f"features: {time.time() - start:.0f} s ({s.feature_set(name).seconds:.0f} s extracting)", flush=True)
    start = time.time()
    printed = cli("audit", "--store", store, "--threshold", args.lowest, "-k", args.k, "--quiet")
    print(f"audit at --threshold {args.lowest}: {time.time() - start:.0f} s\n\n" + printed, flush=True)
    record = json.loads((store / "audits" / name / "audit.json").read_text())
    images = s.images()
    index = {src: i for i, src in enumerate(s.sources())}

    print("\n### Duplicates: recall / precision (%) of each planted kind, by threshold\n")
    print("Per kind, precision is the share of the listed pairs holding one of its copies that pair it with its "
          "original. Unplanted pairs (train-train / train-test / test-test: neither image planted) may be "
          "CIFAR-10's own duplicates; 'alike' counts those whose grey pixels correlate at 0.9 or more. Pairs of two "
          "planted outliers are counted apart and left out of precision. Overall recall and precision count every "
          "unplanted pair as false (a lower bound on precision), at this data set's size (see the next table for "
          "CIFAR-10's).\n")
    print("| threshold | " + " | ".join(KINDS) + " | unplanted pairs | alike | outlier pairs | recall % | precision % "
          "| F1 |")
    print("| --- " * (len(KINDS) + 7) + "|")
    lines, by_threshold = duplicate_table(record, truth, images)
    print("\n".join(lines))
    best = max(by_threshold, key=lambda t: (round(by_threshold[t]["f1"], 6), t))
    print(f"\nhighest F1 (ties: the higher threshold): {best:.3f} (F1 {by_threshold[best]['f1']:.3f}); the default "
          f"in this code: {DUPLICATE_THRESHOLD}", flush=True)

    pairs = [r for r in record["rows"] if r["kind"] == "duplicate"]
    copies = truth["copies"]
    unplanted = [p for p in pairs if not planted_row(p, truth)]
    near = sorted(unplanted, key=lambda p: abs(p["score"] - best))[:24]
    contact_sheet(out / "unplanted-near-threshold.png", images,
                  [(p["row"], p["other_row"], f"{p['score']:.3f} {p['split'][:2]}-{p['other_split'][:2]}")
                   for p in sorted(near, key=lambda p: -p["score"])])
    listed = {(p["source"], p["other"]): p["score"] for p in pairs}
    planted = sorted((listed.get((v["original"], c), 0.0), index[v["original"]], index[c], v["kind"])
                     for c, v in copies.items())
    contact_sheet(out / "planted-lowest.png", images, [(a, b, f"{kind} {s:.3f}") for s, a, b, kind in planted[:24]])
    print(f"contact sheets: {out / 'unplanted-near-threshold.png'} (the 24 unplanted pairs nearest {best:.3f}), "
          f"{out / 'planted-lowest.png'} (the 24 planted pairs of lowest similarity; 0.000: below {args.lowest})")

    print(f"\n### Labels: {len(truth['flips'])} training photos moved to another class; cleanlab on {args.k}-fold "
          f"out-of-fold logistic regression, by C\n")
    print("| C | flagged (train / test) | planted found | recall % | precision % | F1 | planted in the top "
          f"{len(truth['flips'])} | suggestion = true class | outliers flagged as labels | seconds |")
    print("| --- " * 10 + "|")
    label_runs = {}
    for C in args.Cs:
        start = time.time()
        r = run_audit(store, threshold=args.lowest, k=args.k, C=C, progress=False)
        c = label_counts(r, truth)
        label_runs[C] = c
        print(f"| {C:g} | {c['flagged_train']} / {c['flagged_test']} | {c['hits']} | {100 * c['recall']:.1f} | "
              f"{100 * c['precision']:.1f} | {c['f1']:.3f} | {c['in_top']} | {c['suggested_right']} of {c['hits']} | "
              f"{c['outliers_flagged_as_labels']} | {time.time() - start:.0f} |", flush=True)
    best_C = max(label_runs, key=lambda C: (round(label_runs[C]["f1"], 6), -C))
    print(f"\nhighest F1 (ties: the smaller C): C {best_C:g}")

    outliers = [r for r in record["rows"] if r["kind"] == "outlier"]
    hits = [r for r in outliers if r["source"] in truth["outliers"]]
    ranks = [i for i, r in enumerate(outliers) if r["source"] in truth["outliers"]]
    print(f"\n### Outliers\n\n{len(outliers)} flagged (fence {record['outlier_fence']:.3f}), {len(hits)} of the "
          f"{len(truth['outliers'])} planted among them (their ranks: {ranks}); "
          f"{len(outliers) - len(hits)} others\n")
    outlier_scores(s, truth, index)
    contact_sheet(out / "outliers-unplanted.png", images,
                  [(r["row"], None, f"{r['score']:.3f} {r['given']}") for r in outliers
                   if r["source"] not in truth["outliers"]][:24])


def outlier_scores(s: FeatureStore, truth: dict, index: dict):
    """The audit's score (distance to the nearest class centroid) beside the mean distance to the 10 nearest
    images (cleanlab's feature-based OutOfDistribution score), as AUROC of the planted outliers and their ranks."""
    from sklearn.metrics import roc_auc_score

    codes, labels, train = s.features(), s.labels(), s.rows("train")
    planted = np.zeros(s.n, bool)
    planted[[index[p] for p in truth["outliers"]]] = True
    scores = {"distance to the nearest class centroid (the audit's)":
              centroid_distance(codes, class_centroids(codes, labels, train, len(s.class_names()))),
              "mean distance to the 10 nearest images": (1 - all_neighbors(codes, False).similarity).mean(axis=1)}
    print("| outlier score | AUROC of the planted | their ranks (0: most outlying) |\n| --- | --- | --- |")
    for name, score in scores.items():
        rank = np.empty(s.n, int)
        rank[np.argsort(-score, kind="stable")] = np.arange(s.n)
        print(f"| {name} | {roc_auc_score(planted, score):.3f} | {sorted(rank[planted].tolist())} |")


def scaled_leakage(args, out: Path, truth: dict):
    """The planted copies against 40,000 training photos of the full CIFAR-10, beside 10,000 other training photos
    as stand-in test photos: each threshold's leakage recall and false alarms at CIFAR-10's size (CIFAR-10's test
    split is never read). The copies' originals are in the 40,000; the copies' codes come from the planted store."""
    big, bench = FeatureStore.open(args.cifar_store), FeatureStore.open(Path(args.out) / "store")
    train = big.rows("train")
    X = big.features(CIFAR_FEATURES, split="train")
    big_index = {src: i for i, src in enumerate(big.sources(split="train"))}
    bench_index = {src: i for i, src in enumerate(bench.sources())}
    bench_codes = bench.features()
    copies = sorted(truth["copies"].items())
    originals = np.array([big_index[v["original"]] for _, v in copies])
    shared = [src for src in bench_index if src in big_index][:200]  # the same photo in both stores
    agree = np.abs(1 - np.sum(unit(X[[big_index[src] for src in shared]])
                              * unit(bench_codes[[bench_index[src] for src in shared]]), axis=1)).max()
    if agree > 1e-3:
        sys.exit(f"the planted store's codes are not the CIFAR-10 store's ({agree:.1e} apart in cosine for the same "
                 f"photos): extract both alike (Lite0's last layer at 224, fp32)")
    rng = np.random.default_rng(args.seed)
    others = np.setdiff1d(np.arange(train.stop - train.start), originals)
    stand_in = np.sort(rng.choice(others, args.stand_in, replace=False))
    base = np.setdiff1d(np.arange(train.stop - train.start), stand_in)
    queries = np.concatenate([X[stand_in], bench_codes[[bench_index[c] for c, _ in copies]]])
    leak = leakage(queries, X[base], progress=False)
    nearest_row = base[leak.nearest_train]
    sim_stand_in, sim_copies = leak.similarity[:len(stand_in)], leak.similarity[len(stand_in):]
    is_original = nearest_row[len(stand_in):] == originals
    kinds = np.array([v["kind"] for _, v in copies])
    print(f"\n### Leakage at CIFAR-10's size: {len(copies)} planted copies and {len(stand_in)} other training photos "
          f"(stand-ins for test photos) against the remaining {len(base)} training photos\n")
    print(f"The same photos' codes in the two stores agree to {agree:.1e} in cosine. A stand-in flagged at a "
          f"threshold has a training photo that similar: a false alarm, or one of CIFAR-10's own duplicates (an upper "
          f"bound on false alarms). F1 counts every flagged stand-in as false. Per kind: copies flagged (their "
          f"nearest training photo is at or above the threshold), %.\n")
    print("| threshold | " + " | ".join(KINDS) + " | copies flagged % | nearest is the original % | stand-ins flagged "
          "(%) | F1 |\n" + "| --- " * (len(KINDS) + 5) + "|")
    f1s = {}
    for t in THRESHOLDS:
        tp = int((sim_copies >= t).sum())
        fp = int((sim_stand_in >= t).sum())
        f1s[float(t)] = 2 * tp / (2 * tp + fp + (len(copies) - tp))
        cells = [f"{100 * np.mean(sim_copies[kinds == kind] >= t):.0f}" for kind in KINDS]
        print(f"| {t:.3f} | " + " | ".join(cells) + f" | {100 * tp / len(copies):.1f} | "
              f"{100 * np.mean(is_original & (sim_copies >= t)):.1f} | {fp} ({100 * fp / len(stand_in):.2f}) | "
              f"{f1s[float(t)]:.3f} |")
    best = max(f1s, key=lambda t: (round(f1s[t], 6), t))
    print(f"\nhighest F1 (ties: the higher threshold): {best:.3f} (F1 {f1s[best]:.3f}); the default in this code: "
          f"{DUPLICATE_THRESHOLD}")
    images = big.images(split="train")
    print("\ncontact sheets of flagged stand-ins, each beside its nearest training photo, 24 drawn at random from "
          "each band of similarity (to count by eye how many are CIFAR-10's own duplicates):")
    for low in (0.87, 0.89, best):
        band = np.flatnonzero((sim_stand_in >= low) & (sim_stand_in < low + 0.01))
        drawn = sorted(rng.choice(band, min(24, len(band)), replace=False), key=lambda i: -sim_stand_in[i])
        path = out / f"stand-ins-{low:.2f}-{low + 0.01:.2f}.png"
        contact_sheet(path, images, [(int(stand_in[i]), int(nearest_row[i]), f"{sim_stand_in[i]:.3f}") for i in drawn])
        print(f"- {path}: {len(drawn)} of the {len(band)} in [{low:.2f}, {low + 0.01:.2f})")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True)


# -- (b) the full CIFAR-10 ------------------------------------------------------------------------------------------
def cifar_bench(args, out: Path):
    store = Path(args.cifar_store)
    s = FeatureStore.open(store)
    name = CIFAR_FEATURES
    print(f"\n## (b) the full CIFAR-10: {store}, {name}\n", flush=True)
    start = time.time()
    printed = cli("audit", "--store", store, "--features", name, "-k", args.k, "--quiet")
    print(f"`cnncodes audit` at the default threshold ({DUPLICATE_THRESHOLD}): {time.time() - start:.0f} s\n\n"
          + printed, flush=True)
    codes = s.features(name, lazy=True)
    train, test = s.rows("train"), s.rows("test")
    leak = leakage(codes[test], codes[train], progress=False)
    n_test = test.stop - test.start
    print("\n| threshold | test photos with a training photo at or above it | share % |\n| --- | --- | --- |")
    for t in (0.85, 0.9, 0.92, 0.94, 0.95, 0.96, 0.97, 0.98, 0.99, 0.999):
        count = int((leak.similarity >= t).sum())
        print(f"| {t:g} | {count} | {100 * count / n_test:.2f} |")
    images = s.images()
    leaked = np.flatnonzero(leak.similarity >= DUPLICATE_THRESHOLD)
    rng = np.random.default_rng(args.seed)
    sample = sorted(rng.choice(leaked, min(32, len(leaked)), replace=False), key=lambda i: -leak.similarity[i])
    contact_sheet(out / "cifar-leaked-sample.png", images,
                  [(int(leak.nearest_train[i]), test.start + int(i), f"{leak.similarity[i]:.3f}") for i in sample])
    near = leaked[np.argsort(np.abs(leak.similarity[leaked] - DUPLICATE_THRESHOLD))[:32]]
    contact_sheet(out / "cifar-leaked-near-threshold.png", images,
                  [(int(leak.nearest_train[i]), test.start + int(i), f"{leak.similarity[i]:.3f}")
                   for i in sorted(near, key=lambda i: -leak.similarity[i])])
    print(f"\ncontact sheets (training photo left, test photo right): {out / 'cifar-leaked-sample.png'} (32 drawn "
          f"from the {len(leaked)} leaked), {out / 'cifar-leaked-near-threshold.png'} (the 32 nearest the threshold)")
    record = json.loads((store / "audits" / name / "audit.json").read_text())
    for kind, path in (("label", out / "cifar-labels-top.png"), ("outlier", out / "cifar-outliers.png")):
        rows = [r for r in record["rows"] if r["kind"] == kind][:24]
        contact_sheet(path, images, [(r["row"], None, f"{r['given'][:5]}>{r['suggested'][:5]} {r['score']:.3f}")
                                     for r in rows])
        print(f"contact sheet: {path} (the audit's first {len(rows)} {kind} rows: given > suggested class, score)")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--out", default="bench/out/audit")
    p.add_argument("--train", type=int, default=200, help="training photos a class")
    p.add_argument("--test", type=int, default=50, help="test photos a class")
    p.add_argument("--copies", type=int, default=50, help="planted copies of each kind")
    p.add_argument("--flips", type=float, default=0.03, help="share of the other training photos moved")
    p.add_argument("--outliers", type=int, default=20)
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--lowest", type=float, default=0.8, help="the lowest threshold measured")
    p.add_argument("--Cs", default="0.0003,0.001,0.003,0.01,0.1", type=lambda v: [float(c) for c in v.split(",")])
    p.add_argument("-k", type=int, default=5)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cifar-store", help="a store of the full shared CIFAR-10 with Lite0's last layer at 224: read for "
                                         "the leakage at its size; with --full, a writable copy, audited")
    p.add_argument("--stand-in", type=int, default=10000, help="training photos standing in for test photos")
    p.add_argument("--full", action="store_true", help="(b): audit the --cifar-store copy")
    p.add_argument("--skip-planted", action="store_true", help="only what --cifar-store and --full ask for")
    args = p.parse_args()
    import cleanlab
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    print(conditions({"data": f"{TAR} (planted: {args.train} / {args.test} photos a class)",
                      "cleanlab": cleanlab.__version__, "out": out}), flush=True)
    if not args.skip_planted:
        planted_bench(args, out)
    if args.cifar_store:
        scaled_leakage(args, out, json.loads((out / "truth.json").read_text()))
    if args.full:
        cifar_bench(args, out)


if __name__ == "__main__":
    main()
