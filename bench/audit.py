"""`cnncodes audit` measured on photos with planted copies and wrong labels (issue 40), and on the full CIFAR-10.

    python bench/audit.py [--seed 1] [--train 300] [--test 100] [--copies 40] [--flips 0.03] [--record NAME]
    python bench/audit.py --seed 0 --design              # the design draw: each setting's recall, precision, F1
    python bench/audit.py --cifar-store DIR [--record NAME]   # the full CIFAR-10: leakage beside ciFAIR's 3.3%

Planted: a seeded draw of --train and --test photos a class, all from the shared cifar10-jpg.tar's training split
(its test split is never read), written as a class-folder tree with --copies training photos of each kind filed
again among the test photos (exact; JPEG at quality 50 to 75; scaled down 20 to 50% and back; shifted 1 to 3
pixels; 2 to 4 pixels cropped off and resized back; brightness 75 to 125%) and a --flips share of the other
training photos moved to another class's folder. `cnncodes features` extracts EfficientNet-Lite0's three cuts at
224 (ImageNet weights), and `cnncodes audit` runs at its defaults on the last layer's codes, choosing the label
check's features itself.

Counting: a planted copy is found when its pair with its original is listed. Per kind, precision is the share of
listed pairs holding a copy of that kind that pair it with its original; overall precision counts every listed
pair without a planted copy as false (CIFAR-10 has near-duplicates of its own, so it is a lower bound). A flagged
label is a hit when its photo was moved (CIFAR-10's own wrong labels count as misses: a lower bound too).

The defaults (--ratio, --hash-distance, --label-probability) were chosen with --design on draw 0; the record is
of another draw (--seed 1), so its figures are not those the defaults were fitted to.
"""
import argparse
import html
import json
import os
import subprocess
import sys
import tarfile
import time
from collections import Counter
from pathlib import Path

import cv2
import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, note_option, save  # noqa: E402
from cnncodes.classifiers.audit.audit import run_audit  # noqa: E402
from cnncodes.classifiers.audit.image_hashes import hash_images, method  # noqa: E402
from cnncodes.features.store import FeatureStore  # noqa: E402

TAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar"
KINDS = ("exact", "jpeg", "rescaled", "shifted", "cropped", "brightness")
BACKBONE, SIZE = "efficientnet_lite0", 224
CUTS = "block6a_expand_activation,block7a_expand_activation,top_activation"
LAST = f"{BACKBONE}-top_activation-{SIZE}-imagenet-fp32"
CIFAIR_RATE = 0.033  # Barz & Denzler 2020: CIFAR-10 test images with a near-duplicate in training
DESIGN = {"ratio": [0.5, 0.6, 0.65, 0.7, 0.8], "hash_distance": [4, 6, 8, 10, 12], "below": [0.01, 0.02, 0.03, 0.05]}


def cli(*args) -> str:
    """`cnncodes ARGS` as a user runs it; its output, or the run stops with its error."""
    result = subprocess.run([sys.executable, "-m", "cnncodes", *map(str, args)], capture_output=True, text=True)
    if result.returncode:
        sys.exit(f"cnncodes {' '.join(map(str, args))} failed:\n{result.stderr}")
    return result.stdout


# -- (a) the planted data set --------------------------------------------------------------------------------
def read_photos(rng, per_split: dict) -> dict:
    """{(split, class): [(name, jpeg bytes), ...]}: a seeded draw of per_split[split] photos a class, every one
    from CIFAR-10's training split (its test split is never read here): the planted "test" photos are training
    photos the draw files under test."""
    with tarfile.open(TAR) as tar:
        members = [m for m in tar.getmembers() if m.isfile() and m.name.endswith(".jpg")]
        groups = {}
        for m in members:
            split, cls, name = m.name.split("/")[-3:]
            if split == "train":
                groups.setdefault(cls, []).append(m)
        drawn = {}
        for cls, group in sorted(groups.items()):
            group = sorted(group, key=lambda m: m.name)
            chosen = rng.permutation(len(group))[:per_split["train"] + per_split["test"]]
            for split, part in (("train", chosen[:per_split["train"]]), ("test", chosen[per_split["train"]:])):
                drawn[(split, cls)] = [(Path(group[i].name).name, tar.extractfile(group[i]).read())
                                       for i in sorted(part)]
    return drawn


def decoded(jpeg: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)


def planted_copy(kind: str, jpeg: bytes, rng) -> tuple[str, bytes]:
    """(suffix, file bytes) of one planted copy of a photo, its change drawn from the ranges issue 40 names."""
    if kind == "exact":
        return ".jpg", jpeg
    img = decoded(jpeg)
    h, w = img.shape[:2]
    if kind == "jpeg":
        quality = int(rng.integers(50, 76))
        return ".jpg", cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes()
    if kind == "rescaled":  # scaled down by 20 to 50% and back up: a thumbnail and its original
        scale = rng.uniform(0.5, 0.8)
        small = cv2.resize(img, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_AREA)
        img = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == "shifted":  # 1 to 3 pixels each way, edges reflected
        dx, dy = rng.integers(1, 4, 2) * rng.choice([-1, 1], 2)
        img = cv2.warpAffine(img, np.float32([[1, 0, dx], [0, 1, dy]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    elif kind == "cropped":  # 2 to 4 pixels cut off (the side's 6 to 12%), resized back to the photo's size
        cut = int(rng.integers(2, 5))
        x, y = rng.integers(0, cut + 1, 2)
        img = cv2.resize(img[y:y + h - cut, x:x + w - cut], (w, h), interpolation=cv2.INTER_CUBIC)
    elif kind == "brightness":  # 75 to 125% of the brightness
        img = np.clip(img.astype(np.float32) * rng.uniform(0.75, 1.25), 0, 255).astype(np.uint8)
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
def is_planted(pair: dict, copies: dict) -> bool:
    return (copies.get(pair["other"], {}).get("original") == pair["source"]
            or copies.get(pair["source"], {}).get("original") == pair["other"])


def duplicate_scores(record: dict, truth: dict) -> dict:
    """Recall and precision of each kind of planted copy, and over every listed pair."""
    copies = truth["copies"]
    pairs = [r for r in record["rows"] if r["kind"] == "duplicate"]
    planted = Counter(v["kind"] for v in copies.values())
    found, touching, right = Counter(), Counter(), Counter()
    for p in pairs:
        for key in ("source", "other"):
            if p[key] in copies:
                touching[copies[p[key]]["kind"]] += 1
                right[copies[p[key]]["kind"]] += is_planted(p, copies)
        if is_planted(p, copies):
            found[copies[p["other"] if p["other"] in copies else p["source"]]["kind"]] += 1
    hits = sum(found.values())
    return {"kinds": {k: {"planted": planted[k], "found": found[k], "recall": found[k] / planted[k],
                          "precision": right[k] / touching[k] if touching[k] else None} for k in KINDS},
            "pairs": len(pairs), "found": hits, "recall": hits / len(copies),
            "precision": hits / len(pairs) if pairs else None,
            "unplanted_by_evidence": dict(Counter(p["evidence"] for p in pairs if not is_planted(p, copies)))}


def label_scores(record: dict, truth: dict) -> dict:
    flagged = [r for r in record["rows"] if r["kind"] == "label" and r["split"] == "train"]
    hits = [r for r in flagged if r["source"] in truth["flips"]]
    recall, precision = len(hits) / len(truth["flips"]), len(hits) / max(len(flagged), 1)
    return {"moved": len(truth["flips"]), "flagged": len(flagged), "hits": len(hits), "recall": recall,
            "precision": precision, "f1": 2 * recall * precision / (recall + precision) if hits else 0.0,
            "suggested_right": sum(r["suggested"] == truth["flips"][r["source"]] for r in hits)}


def f1(recall, precision) -> float:
    return 2 * recall * precision / (recall + precision) if recall and precision else 0.0


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


# -- the planted bench -------------------------------------------------------------------------------------------
def planted_store(args, out: Path) -> tuple[Path, dict, float]:
    """The draw's tree and store (made once; kept in --out), its truth, and the extraction's seconds."""
    tree, store = out / "tree", out / "store"
    if not (out / "truth.json").exists():
        truth = write_tree(tree, args)
        (out / "truth.json").write_text(json.dumps(truth, indent=1))
    truth = json.loads((out / "truth.json").read_text())
    cli("features", "--dataset", f"folder:{tree}", "--store", store, "--backbone", BACKBONE, "--size", SIZE,
        "--layer", CUTS, "--quiet")
    seconds = max(i.seconds for i in FeatureStore.open(store).feature_sets())  # the three cuts: one pass
    return store, truth, seconds


def hash_cost(store: Path, rounds: int = 3) -> float:
    """Seconds an image for the perceptual hashes (imagehash's pHash and dHash): the median of `rounds` passes
    over the store's first 2,000 images."""
    images = FeatureStore.open(store).image_rows(0, 2000)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        hash_images(images)
        times.append((time.perf_counter() - start) / len(images))
    return float(np.median(times))


def design(store: Path, truth: dict):
    """Each setting's figures on this draw, the others at their defaults: how the defaults were chosen."""
    print("\n### Design: each setting on this draw (the others at their defaults)\n")
    print("| setting | value | recall % (exact / jpeg / rescaled / shifted / cropped / brightness) | precision % "
          "| F1 | labels P / R / F1 |\n| --- | --- | --- | --- | --- | --- |")
    for setting, values in DESIGN.items():
        for value in values:
            record = run_audit(store, features=LAST, progress=False, **{setting: value})
            d, lab = duplicate_scores(record, truth), label_scores(record, truth)
            kinds = " / ".join(f"{100 * d['kinds'][k]['recall']:.0f}" for k in KINDS)
            print(f"| {setting} | {value} | {kinds} | {100 * d['precision']:.1f} | "
                  f"{f1(d['recall'], d['precision']):.3f} "
                  f"| {100 * lab['precision']:.0f} / {100 * lab['recall']:.0f} / {lab['f1']:.3f} |", flush=True)


def planted_bench(args, out: Path, run_info: dict | None):
    start = time.time()
    store, truth, extraction = planted_store(args, out)
    print(f"\n## Planted, draw {args.seed}: {args.train} training and {args.test} test photos a class, "
          f"{len(truth['copies'])} planted copies ({args.copies} of each kind), {len(truth['flips'])} moved labels\n"
          f"features: {time.time() - start:.0f} s ({extraction:.0f} s extracting)", flush=True)
    if args.design:
        design(store, truth)
        return
    start = time.time()
    printed = cli("audit", "--store", store, "--features", LAST, "--quiet")
    audit_seconds = time.time() - start
    print(printed)
    record = json.loads((store / "audits" / LAST / "audit.json").read_text())
    d, lab = duplicate_scores(record, truth), label_scores(record, truth)
    per_image = hash_cost(store)
    print("| kind | planted | found | recall % | precision % |\n| --- | --- | --- | --- | --- |")
    for k in KINDS:
        c = d["kinds"][k]
        precision = "–" if c["precision"] is None else f"{100 * c['precision']:.1f}"
        print(f"| {k} | {c['planted']} | {c['found']} | {100 * c['recall']:.1f} | {precision} |")
    print(f"\nall pairs listed: {d['pairs']}, planted among them {d['found']} (precision {100 * d['precision']:.1f}%, "
          f"recall {100 * d['recall']:.1f}%); unplanted by evidence: {d['unplanted_by_evidence']}")
    print(f"labels: {lab['flagged']} flagged, {lab['hits']} of {lab['moved']} moved: precision "
          f"{100 * lab['precision']:.1f}%, recall {100 * lab['recall']:.1f}%, F1 {lab['f1']:.3f}")
    print(f"hashes: {1e6 * per_image:.0f} us an image ({method()}); the audit: {audit_seconds:.0f} s for "
          f"{sum(record['images'].values())} images")
    if run_info:
        save(run_info, args.record, table="audit", family="audit", seeds=[args.seed], test_accuracy=None,
             headline=False, weights="ImageNet (Lite0)",
             row=f"planted draw {args.seed}: {sum(record['images'].values())} photos, {len(truth['copies'])} copies, "
                 f"{len(truth['flips'])} moved labels",
             duplicates=d, labels=lab, hash_seconds_per_image=per_image, audit_seconds=round(audit_seconds, 1),
             extraction_seconds=round(extraction, 1), label_model=record["label_model"],
             settings=record["settings"], wall_seconds=round(audit_seconds, 1))


# -- memory against rows ----------------------------------------------------------------------------------------
def duplicate_search_peak(rows: int, dims: int = 64, seed: int = 0) -> dict:
    """Peak memory of `find_duplicates` (both searches, the candidates, both rules) on `rows` synthetic rows:
    codes of `dims` positive floats in 1,000 clusters, random hashes; run in a fresh process (`--memory-rows`), so
    the process's peak is this search's. Bytes above what the inputs themselves hold."""
    import resource

    from cnncodes.classifiers.audit.duplicates import find_duplicates
    from cnncodes.classifiers.audit.image_hashes import WIDTH

    rng = np.random.default_rng(seed)
    centres = rng.random((1000, dims), dtype=np.float32)
    codes = centres[rng.integers(0, 1000, rows)] + 0.3 * rng.random((rows, dims), dtype=np.float32)
    hashes = rng.integers(0, 256, (rows, WIDTH), dtype=np.uint8)
    hashes[:, -1] = 0
    before = int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    start = time.time()
    pairs, _ = find_duplicates(codes, hashes, images=None, progress=False)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return {"rows": rows, "dims": dims, "before_mb": before / 2**20, "peak_mb": peak / 2**20,
            "search_mb": (peak - before) / 2**20, "seconds": time.time() - start, "pairs": len(pairs.first)}


def memory_bench(args, run_info: dict | None):
    sizes = [int(n) for n in args.memory.split(",")]
    print("\n## Memory of the duplicate search against rows (synthetic codes of 64 floats, random hashes)\n\n"
          "| rows | inputs and libraries (MB) | peak (MB) | the search's own (MB) | seconds |\n"
          "| --- | --- | --- | --- | --- |")
    found = []
    for rows in sizes:
        out = subprocess.run([sys.executable, __file__, "--memory-rows", str(rows)], capture_output=True, text=True,
                             check=True).stdout
        m = json.loads(out.strip().splitlines()[-1])
        found.append(m)
        print(f"| {rows:,} | {m['before_mb']:.0f} | {m['peak_mb']:.0f} | {m['search_mb']:.0f} | {m['seconds']:.0f} |",
              flush=True)
    growth = (found[-1]["search_mb"] - found[0]["search_mb"]) * 2**20 / (sizes[-1] - sizes[0])
    print(f"\nthe search's own memory grows by {growth:.0f} bytes a row between {sizes[0]:,} and {sizes[-1]:,} rows "
          f"(the neighbour lists and candidate pairs); at a million rows that is {growth * 1e6 / 2**20:.0f} MB more")
    if run_info:
        save(run_info, args.record, table="audit", family="audit", seeds=[0], test_accuracy=None, headline=False,
             weights="none (synthetic codes)",
             row=f"memory of the duplicate search, {sizes[0]:,} to {sizes[-1]:,} rows",
             memory=found, bytes_per_row=growth, wall_seconds=round(sum(m["seconds"] for m in found), 1))


# -- the full CIFAR-10 ------------------------------------------------------------------------------------------
def thumbnail(image: np.ndarray, scale: int = 4) -> str:
    """A data: URL of the image enlarged (nearest neighbour: its pixels as they are)."""
    import base64

    big = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_NEAREST)
    return "data:image/png;base64," + base64.b64encode(cv2.imencode(".png", big[..., ::-1])[1].tobytes()).decode()


def pairs_page(path: Path, store: FeatureStore, pairs: list[dict], title: str):
    """An HTML page of the pairs (training photo left, test photo right) with their evidence, to judge by eye."""
    rows = []
    for i, p in enumerate(pairs, 1):
        a, b = store.images_at([p["row"], p["other_row"]])
        rows.append(f"<tr><td>{i}</td><td><img src='{thumbnail(a)}'></td><td><img src='{thumbnail(b)}'></td>"
                    f"<td>{html.escape(p['source'])}<br>{html.escape(p['other'])}</td><td>{html.escape(p['given'])} / "
                    f"{html.escape(p['suggested'])}</td><td>{html.escape(p['evidence'])}</td><td>{p['score']:.3f}</td>"
                    f"<td>{p['phash']} / {p['dhash']}</td></tr>")
    path.write_text(f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title><h1>{html.escape(title)}"
                    "</h1><table border=1 cellpadding=4><tr><th>#</th><th>training photo</th><th>test photo</th>"
                    "<th>files</th><th>classes</th><th>evidence</th><th>codes' cosine</th><th>pHash / dHash bits</th>"
                    "</tr>" + "".join(rows) + "</table>\n")


def cifar_bench(args, out: Path, run_info: dict | None):
    store = FeatureStore.open(args.cifar_store)
    print(f"\n## The full CIFAR-10: {store.path}, duplicates by {LAST}\n", flush=True)
    start = time.time()
    printed = cli("audit", "--store", store.path, "--features", LAST, "--quiet")
    seconds = time.time() - start
    print(printed + f"\n`cnncodes audit`: {seconds:.0f} s", flush=True)
    record = json.loads((store.path / "audits" / LAST / "audit.json").read_text())
    leak = record["leakage"]
    across = [r for r in record["rows"] if r["kind"] == "duplicate" and r["split"] != r["other_split"]]
    across = [r if r["split"] == "train" else {**r, "row": r["other_row"], "other_row": r["row"], "source": r["other"],
                                                 "other": r["source"], "given": r["suggested"], "suggested": r["given"]}
              for r in across]
    rng = np.random.default_rng(args.seed)
    drawn = [across[i] for i in sorted(rng.choice(len(across), min(50, len(across)), replace=False))]
    page = out / "cifar10-leaked-pairs.html"
    pairs_page(page, store, drawn, f"50 of CIFAR-10's {len(across)} train-test duplicate pairs, drawn at random "
                                   f"(seed {args.seed})")
    print(f"leakage: {leak['leaked']} of {leak['test_images']} test photos ({100 * leak['rate']:.2f}%) have a "
          f"training duplicate; ciFAIR found about {100 * CIFAIR_RATE:.1f}%. Evidence of the pairs across splits: "
          f"{dict(Counter(r['evidence'] for r in across))}. Page: {page}")
    if run_info:
        save(run_info, args.record, table="audit", family="audit", seeds=[args.seed], test_accuracy=None,
             headline=False, weights="ImageNet (Lite0)", other_scorings={"audit": 1},  # the label model's test figure
             row=f"full CIFAR-10: {leak['leaked']} of {leak['test_images']} test photos with a training duplicate "
                 f"({100 * leak['rate']:.2f}%; ciFAIR {100 * CIFAIR_RATE:.1f}%)",
             leakage=leak, counts=record["counts"], across_by_evidence=dict(Counter(r["evidence"] for r in across)),
             audit_seconds=round(seconds, 1), label_model=record["label_model"], settings=record["settings"],
             wall_seconds=round(seconds, 1), page=os.path.relpath(page, ROOT))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="cnncodes audit on planted copies and wrong labels, or the full CIFAR-10")
    p.add_argument("--out", help="[bench/out/audit-draw-SEED]")
    p.add_argument("--train", type=int, default=300, help="training photos a class")
    p.add_argument("--test", type=int, default=100, help="test photos a class (from CIFAR-10's training split)")
    p.add_argument("--copies", type=int, default=40, help="planted copies of each kind")
    p.add_argument("--flips", type=float, default=0.03, help="share of the other training photos moved")
    p.add_argument("--outliers", type=int, default=0, help="planted images of no class (noise, digits)")
    p.add_argument("--seed", type=int, default=1, help="the draw (0: the design draw)")
    p.add_argument("--design", action="store_true", help="each setting's figures on this draw; no record")
    p.add_argument("--cifar-store", help="a store of the full shared CIFAR-10 with Lite0's cuts at 224: audited")
    p.add_argument("--memory", metavar="N,N,...", help="peak memory of the duplicate search at these row counts")
    p.add_argument("--memory-rows", type=int, help=argparse.SUPPRESS)  # one count, in a fresh process
    p.add_argument("--record", metavar="NAME", help="write bench/records/NAME.json (needs a clean tree)")
    note_option(p)
    return p


def main():
    args = parser().parse_args()
    if args.memory_rows:
        print(json.dumps(duplicate_search_peak(args.memory_rows)))
        return
    run_info = begin(__file__, note=args.note) if args.record and not args.design else None  # before any work
    import cleanlab
    import imagehash
    import keras  # noqa: F401  (so conditions() reports its version and backend)

    os.chdir(ROOT)
    out = Path(args.out or f"bench/out/audit-draw-{args.seed}")
    out.mkdir(parents=True, exist_ok=True)
    print(conditions({"data": f"{TAR} (training split only for the planted draw)", "cleanlab": cleanlab.__version__,
                      "imagehash": imagehash.__version__, "out": out}), flush=True)
    if args.memory:
        memory_bench(args, run_info)
    elif args.cifar_store:
        cifar_bench(args, out, run_info)
    else:
        planted_bench(args, out, run_info)


if __name__ == "__main__":
    main()
