"""`cnncodes audit`: what the store's pixels and codes say about the data: duplicate pairs (and the test images
with a duplicate in training), likely wrong labels and outliers, as one table and one record in the store
(`audits/<feature set>/`), which the report reads without computing anything again. Duplicates and outliers come
from one feature set's codes (and the images' perceptual hashes); the label check from the strongest features
the store holds (`label_features`)."""
import time
from pathlib import Path

import numpy as np

from cnncodes.classifiers.evaluation.fit import check_finite
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.features.outputs import write_csv
from cnncodes.features.provenance import code_version
from cnncodes.features.sealed import FILES_KEY, SealBroken, check_listed_files, read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import printable

from .duplicates import EXACT_CANDIDATE, HASH_DISTANCE, NEIGHBORS, RATIO, exact_counts, find_duplicates, pair_counts
from .image_hashes import flat, image_hashes, method, require_imagehash
from .label_issues import (
    LABEL_C,
    LABEL_PROBABILITY,
    fitted_temperature,
    held_out_probabilities,
    label_issues,
    require_cleanlab,
    tempered,
)
from .label_model import label_features
from .outliers import FENCE_IQRS, find_outliers

COLUMNS = ("kind", "source", "other", "given", "suggested", "score", "evidence")
KINDS = ("duplicate", "label", "outlier")
DEFAULT_FOLDS = 5
RECORD, TABLE = "audit.json", "audit.csv"


def run_audit(store_dir, *, features: str | None = None, label: str | None = None, ratio: float = RATIO,
              hash_distance: int = HASH_DISTANCE, label_set: str | None = None, k: int = DEFAULT_FOLDS,
              C: float = LABEL_C, below: float = LABEL_PROBABILITY, progress: bool = True) -> dict:
    """Audits the store and saves the result in `audits/<features>/`; returns the record (its `rows` in CSV
    order, `path` the folder it was saved in). `features`: the codes duplicates and outliers are found by (the
    store's default set); `label_set`: the features of the label check (None: `label_features` chooses)."""
    require_cleanlab()
    require_imagehash()
    check_settings(ratio, hash_distance, below)
    start = time.time()
    store = FeatureStore.open(store_dir)
    info = store.feature_set(features)
    label = store.canonical_label_set(label)
    names = store.class_names(label)
    labels = store.labels(label)
    train, test = store.rows("train"), store.rows("test")
    check_audit_input(store, label, names, labels[train], k)
    folds = store.folds(k, on="train")  # a class smaller than k is refused here, in one line
    codes = store.features(info.name, lazy=True)  # read a block at a time by the searches: memory stays flat
    check_finite(info, codes)
    chosen = label_features(store, label, label_set)
    label_info = store.feature_set(chosen["features"])
    folder = schema.audit_dir(store.path, info.name)
    made = [f for f in (folder.parent, folder) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)  # before the work: a read-only store fails now, not after it
    try:
        hashes = image_hashes(store, progress)
        pairs, neighbors = find_duplicates(codes, hashes, store.images(lazy=True), ratio=ratio,
                                           hash_distance=hash_distance, progress=progress)
        exact, leaked_exact = exact_counts(store.images(lazy=True), neighbors, store.split)
        outliers = find_outliers(codes, labels, train, len(names))
        label_codes = store.features(label_info.name, lazy=True)
        check_finite(label_info, label_codes)
        X_train, X_test = np.asarray(label_codes[train]), np.asarray(label_codes[test])
        probs_train, probs_test = held_out_probabilities(X_train, labels[train], folds, X_test, len(names), C, progress)
        temperature = fitted_temperature(probs_train, labels[train])
        probs_train, probs_test = tempered(probs_train, temperature), tempered(probs_test, temperature)
        issues = [(label_issues(labels[train], probs_train, below), train.start),
                  (label_issues(labels[test], probs_test, below), test.start)]
        split_of = np.asarray(schema.SPLITS)[store.split]
        sources = store.sources()
        sources = sources if sources is not None else np.array([f"row {i}" for i in range(store.n)])
        rows = (duplicate_rows(pairs, sources, labels, names, split_of)
                + label_rows(issues, sources, labels, names, split_of)
                + outlier_rows(outliers, sources, labels, names, split_of))
        leaked = np.union1d(pairs.leaked(store.split), leaked_exact)
        record = {
            "kind": "audit", "features": info.name, "fingerprint": info.fingerprint, "label": label,
            "class_names": names, "data_sha256": store.content, "images": store.counts(),
            "settings": {"ratio": ratio, "hash_distance": hash_distance, "hashes": method(), "k": k, "C": C,
                         "label_probability": below, "neighbours": NEIGHBORS, "exact_candidate": EXACT_CANDIDATE,
                         "outlier_fence_iqrs": FENCE_IQRS},
            "counts": {**counts(rows, pair_counts(pairs, store.split, exact), exact),
                       "flat_images": int(flat(hashes).sum())},
            "leakage": {"test_images": store.counts()["test"], "leaked": len(leaked),
                        "rate": len(leaked) / max(store.counts()["test"], 1),
                        "leaked_exact": exact["leaked_test_images"]},
            "outlier_fence": outliers.fence,
            # which model judged the labels, and how well it predicts: a weak one flags hard images as well
            "label_model": {**chosen, "features": label_info.name, "fingerprint": label_info.fingerprint,
                            "head": "logreg", "C": C, "temperature": temperature},
            "label_model_accuracy": {"train_out_of_fold": accuracy(probs_train, labels[train]),
                                     "test": accuracy(probs_test, labels[test])},
            "seconds": round(time.time() - start, 1), "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "code": code_version(), "rows": rows,
        }
        save_audit(folder, record)
    except BaseException:
        for f in reversed(made):  # a failed first audit leaves no empty folder behind
            if not any(f.iterdir()):
                f.rmdir()
        raise
    return {**record, "path": str(folder)}


def check_settings(ratio: float, hash_distance: int, below: float):
    if not 0 < ratio < 1:
        raise UserError(f"--ratio {ratio}: a ratio of distances above 0 and below 1, e.g. {RATIO}")
    if not 0 <= hash_distance < 32:
        raise UserError(f"--hash-distance {hash_distance}: bits of 64 from 0 to 31, e.g. {HASH_DISTANCE}")
    if not 0 < below < 1:
        raise UserError(f"--label-probability {below}: a probability above 0 and below 1, e.g. {LABEL_PROBABILITY}")


def counts(rows: list[dict], pairs: dict, exact: dict) -> dict:
    """Every duplicate pair (pairs: duplicates.pair_counts; exact: duplicates.exact_counts, in full), beside how
    many the table lists, and the labels and outliers flagged."""
    of = {kind: [r for r in rows if r["kind"] == kind] for kind in KINDS}
    return {"duplicate": pairs["within_train"] + pairs["within_test"] + pairs["across_splits"],
            "duplicate_listed": len(of["duplicate"]),
            "duplicate_exact": exact["within_train"] + exact["within_test"] + exact["across_splits"],
            **{f"duplicate_{where}": n for where, n in pairs.items()},
            "label": len(of["label"]), "label_train": sum(r["split"] == "train" for r in of["label"]),
            "label_test": sum(r["split"] == "test" for r in of["label"]), "outlier": len(of["outlier"])}


def accuracy(probs: np.ndarray, labels: np.ndarray) -> float | None:
    return float(np.mean(probs.argmax(axis=1) == labels)) if len(labels) else None


def check_audit_input(store: FeatureStore, label: str, names: list[str], train_labels: np.ndarray, k: int):
    """One line naming what cannot be audited and the fix, before any work."""
    present = np.unique(train_labels)
    if len(names) < 2 or len(present) < 2:
        found = ", ".join(repr(names[c]) for c in present) or "none"
        classes = f"{len(present)} class{'es' * (len(present) != 1)}"
        raise UserError(f"label set {label!r} of {store.path} has {classes} among its training images ({found}): "
                        f"the label check needs two or more; ingest images of at least two classes")
    counts = np.bincount(train_labels, minlength=len(names))[present]
    smallest, fewest = names[present[counts.argmin()]], int(counts.min())
    if fewest < 2:  # the folds are stratified: every class needs an image in and out of each fold's model
        raise UserError(f"class {smallest!r} has {fewest} training image in {store.path}: the label check holds each "
                        f"image out of a model of the others, so every class needs at least 2; add images of it, "
                        f"or leave it out of the folder")
    if fewest < k:
        raise UserError(f"-k {k}: class {smallest!r} has {fewest} training images in {store.path}, fewer than the "
                        f"folds asked for; use -k {fewest} or fewer")


def pair_kind(row: dict) -> str:
    if row["split"] != row["other_split"]:
        return "across_splits"
    return f"within_{row['split']}"


def duplicate_rows(pairs, sources, labels, names, split_of) -> list[dict]:
    """A pair's first row is `source`, its partner `other`; `given` and `suggested` are their classes; `score` the
    cosine similarity of their codes; `evidence` what confirmed it (hashes, codes, both; "exact": identical)."""
    return [{"kind": "duplicate", "row": int(a), "split": split_of[a], "source": sources[a], "other_row": int(b),
             "other_split": split_of[b], "other": sources[b], "given": names[labels[a]],
             "suggested": names[labels[b]], "score": float(s), "exact": bool(exact),
             "evidence": "exact" if exact else str(evidence), "phash": int(ph), "dhash": int(dh),
             "ratio": float(r) if np.isfinite(r) else None}
            for a, b, s, exact, evidence, ph, dh, r in zip(pairs.first, pairs.second, pairs.similarity, pairs.exact,
                                                            pairs.evidence, pairs.phash, pairs.dhash, pairs.ratio)]


def label_rows(issues, sources, labels, names, split_of) -> list[dict]:
    """Both splits' issues, most certain first."""
    found = [(float(score), int(offset + row), int(suggested)) for issue, offset in issues
             for row, score, suggested in zip(issue.rows, issue.score, issue.suggested)]
    found.sort(key=lambda f: (-f[0], f[1]))
    return [{"kind": "label", "row": row, "split": split_of[row], "source": sources[row], "other_row": None,
             "other_split": None, "other": "", "given": names[labels[row]], "suggested": names[suggested],
             "score": score, "evidence": "labels"} for score, row, suggested in found]


def outlier_rows(outliers, sources, labels, names, split_of) -> list[dict]:
    return [{"kind": "outlier", "row": int(row), "split": split_of[row], "source": sources[row], "other_row": None,
             "other_split": None, "other": "", "given": names[labels[row]], "suggested": "", "score": float(score),
             "evidence": "codes"} for row, score in zip(outliers.rows, outliers.score)]


def write_table(path: Path, rows: list[dict], exclusive: bool = True):
    """The rows as CSV with COLUMNS (features/outputs.py: staged and renamed, cells a spreadsheet will not
    evaluate); `exclusive`: a user's --out, published only where nothing is yet; else the store's own copy,
    replacing the previous audit's."""
    write_csv(path, list(COLUMNS), ([r["kind"], r["source"], r["other"], r["given"], r["suggested"],
                                     f"{r['score']:.6g}", r.get("evidence", "")] for r in rows), exclusive=exclusive)


def save_audit(folder: Path, record: dict):
    """The table, then the record that vouches for it (its sha256): each renamed into place, so a reader
    sees the previous audit or this one, and a record whose table was replaced fails its check."""
    write_table(folder / TABLE, record["rows"], exclusive=False)
    write_sealed(folder / RECORD, {**record, FILES_KEY: {TABLE: file_digest(folder / TABLE, "sha256")}})


def load_audits(store) -> list[dict]:
    """Every saved audit of the store (a FeatureStore or its folder), by feature set name: the record, with
    `path` (its folder) and `stale` (why it no longer describes the store's data or that set, else None); or
    {"path", "damaged": why} for one whose files fail their checks."""
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    out = []
    for path in sorted((store.path / schema.AUDITS_DIR).glob(f"*/{RECORD}")):
        try:
            record = check_listed_files(path, read_sealed(path))
        except SealBroken as e:
            out.append({"path": str(path.parent), "damaged": f"{path.name} {e}"})
            continue
        stale = ("made from other data than this store's data.h5" if record.get("data_sha256") != store.content else
                 f"feature set {record.get('features')} changed or is gone since"
                 if current_fingerprint(store, record.get("features")) != record.get("fingerprint") else None)
        out.append({**record, "path": str(path.parent), "stale": stale})
    return out


def current_fingerprint(store: FeatureStore, features) -> str | None:
    """The fingerprint of a stored set or a join `A+B` as the store holds it now; None when it is gone."""
    try:
        return store.feature_set(str(features)).fingerprint
    except UserError:
        return None


def listed_text(c: dict) -> str:
    """Where the table lists fewer pairs than exist: how many, and why."""
    listed = c.get("duplicate_listed", c["duplicate"])
    if listed >= c["duplicate"]:
        return ""
    return (f"; the table lists {listed} of them: a group of identical images larger than the neighbour lists is "
            f"counted in full and listed in part")


def format_audit(record: dict, top: int = 5) -> str:
    """The summary the command prints: counts per kind, leakage, the threshold, and each kind's top rows."""
    c, leak, s, m = record["counts"], record["leakage"], record["settings"], record["label_model"]
    lines = [
        f"audit of {record['features']} ({record['label']}): "
        + ", ".join(f"{n} {split}" for split, n in record["images"].items()) + " images",
        f"  duplicates: {c['duplicate']} pairs ({c['duplicate_within_train']} within train, "
        f"{c['duplicate_within_test']} within test, {c['duplicate_across_splits']} across splits): "
        f"{c['duplicate_by_hashes']} by hashes, {c['duplicate_by_codes']} by codes, "
        f"{c['duplicate_by_hashes_and_codes']} by both; {c['duplicate_exact']} pairs of identical images in all"
        + listed_text(c),
        f"    (hashes: pHash and dHash within {s['hash_distance']} bits of 64; codes: each the other's neighbour, "
        f"closer than {s['ratio']:g} x the distance to the next)",
        *([f"    {c['flat_images']} flat images (one colour, or a pixel enlarged): their hashes say nothing, so only "
           f"their codes are judged"] if c.get("flat_images") else []),
        f"  leakage: {leak['leaked']} of {record['images']['test']} test images "
        f"({100 * leak['rate']:.2f}%) have a duplicate in training ({leak['leaked_exact']} identical)",
        f"  labels: {c['label']} likely wrong ({c['label_train']} train, {c['label_test']} test), by cleanlab on "
        f"calibrated {s['k']}-fold out-of-fold logistic regression (C {s['C']:g}, temperature "
        f"{m['temperature']:.2f}; {100 * record['label_model_accuracy']['train_out_of_fold']:.1f}% right out of "
        f"fold) of {m['features']} ({m['why']}); flagged below a probability of {s['label_probability']:g}",
        f"  outliers: {c['outlier']} with a cosine distance to the nearest class centroid above "
        f"{record['outlier_fence']:.3f} (the third quartile + {s['outlier_fence_iqrs']:g} interquartile ranges)",
    ]
    table = [list(COLUMNS)] + [[r["kind"], r["source"], r["other"], r["given"], r["suggested"], f"{r['score']:.4f}",
                                r.get("evidence", "")]
                               for kind in KINDS for r in [r for r in record["rows"] if r["kind"] == kind][:top]]
    widths = [max(len(printable(row[i])) for row in table) for i in range(len(COLUMNS))]
    lines.append(f"most certain {top} of each kind:")
    lines += ["  " + "  ".join(printable(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)
