"""`cnncodes audit`: what a feature set's codes say about the data: duplicate pairs (and the test images with
a duplicate in training), likely wrong labels and outliers, as one table and one record in the store
(`audits/<feature set>/`), which the report reads without computing anything again."""
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

from .duplicates import (
    DUPLICATE_THRESHOLD,
    EXACT_CANDIDATE,
    NEIGHBORS,
    all_neighbors,
    exact_counts,
    find_duplicates,
    leakage,
    pair_counts,
)
from .label_issues import LABEL_C, held_out_probabilities, label_issues, require_cleanlab
from .outliers import FENCE_IQRS, find_outliers

COLUMNS = ("kind", "source", "other", "given", "suggested", "score")
KINDS = ("duplicate", "label", "outlier")
DEFAULT_FOLDS = 5
RECORD, TABLE = "audit.json", "audit.csv"


def run_audit(store_dir, *, features: str | None = None, label: str | None = None,
              threshold: float = DUPLICATE_THRESHOLD, k: int = DEFAULT_FOLDS, C: float = LABEL_C,
              progress: bool = True) -> dict:
    """Audits one feature set of the store and saves the result in `audits/<set>/`; returns the record
    (its `rows` in CSV order, `path` the folder it was saved in)."""
    require_cleanlab()
    if not 0 < threshold <= 1:
        raise UserError(f"--threshold {threshold}: a cosine similarity above 0 and at most 1, "
                        f"e.g. {DUPLICATE_THRESHOLD}")
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
    folder = schema.audit_dir(store.path, info.name)
    made = [f for f in (folder.parent, folder) if not f.exists()]
    folder.mkdir(parents=True, exist_ok=True)  # before the work: a read-only store fails now, not after it
    try:
        neighbors = all_neighbors(codes, progress, threshold, store.split)
        leak = leakage(codes[test], codes[train], progress)
        leak.nearest_train += train.start
        pairs = find_duplicates(neighbors, leak, threshold, test.start, store.images(lazy=True))
        exact = exact_counts(store.images(lazy=True), neighbors, store.split)
        outliers = find_outliers(codes, labels, train, len(names))
        X_train = np.asarray(codes[train])
        X_test = np.asarray(codes[test])
        probs_train, probs_test = held_out_probabilities(X_train, labels[train], folds, X_test, len(names), C, progress)
        issues = [(label_issues(labels[train], probs_train), train.start),
                  (label_issues(labels[test], probs_test), test.start)]
        split_of = np.asarray(schema.SPLITS)[store.split]
        sources = store.sources()
        sources = sources if sources is not None else np.array([f"row {i}" for i in range(store.n)])
        rows = (duplicate_rows(pairs, sources, labels, names, split_of)
                + label_rows(issues, sources, labels, names, split_of)
                + outlier_rows(outliers, sources, labels, names, split_of))
        record = {
            "kind": "audit", "features": info.name, "fingerprint": info.fingerprint, "label": label,
            "class_names": names, "data_sha256": store.content, "images": store.counts(),
            "settings": {"threshold": threshold, "k": k, "C": C, "neighbours": NEIGHBORS,
                         "exact_candidate": EXACT_CANDIDATE, "outlier_fence_iqrs": FENCE_IQRS},
            "counts": counts(rows, pair_counts(neighbors, store.split), exact, neighbors, threshold),
            "leakage": leakage_counts(leak, threshold, exact),
            "outlier_fence": outliers.fence,
            # how well the label models predict: a weak model flags hard images as well as wrong labels
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


def counts(rows: list[dict], pairs: dict, exact: dict, neighbors, threshold: float) -> dict:
    """Every duplicate pair counted (pairs: duplicates.pair_counts; exact: duplicates.exact_counts), beside how many
    the table lists (each image's NEIGHBORS closest), and the labels and outliers flagged."""
    of = {kind: [r for r in rows if r["kind"] == kind] for kind in KINDS}
    return {"duplicate": sum(pairs.values()), "duplicate_listed": len(of["duplicate"]),
            "duplicate_exact": exact["within_train"] + exact["within_test"] + exact["across_splits"],
            **{f"duplicate_{where}": n for where, n in pairs.items()},
            # rows with more duplicates than the table lists for them (the counts above count them all)
            "rows_at_neighbour_limit": int((neighbors.similarity[:, -1] >= threshold).sum()),
            "label": len(of["label"]), "label_train": sum(r["split"] == "train" for r in of["label"]),
            "label_test": sum(r["split"] == "test" for r in of["label"]), "outlier": len(of["outlier"])}


def leakage_counts(leak, threshold: float, exact: dict) -> dict:
    """Test images with a duplicate in training, and how many of them have an identical one (both in full)."""
    test_images, leaked = len(leak.similarity), len(leak.leaked(threshold))
    return {"test_images": test_images, "leaked": leaked, "rate": leaked / max(test_images, 1),
            "leaked_exact": exact["leaked_test_images"]}


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
    """A pair's first row is `source`, its partner `other`; `given` and `suggested` are their classes."""
    return [{"kind": "duplicate", "row": int(a), "split": split_of[a], "source": sources[a], "other_row": int(b),
             "other_split": split_of[b], "other": sources[b], "given": names[labels[a]],
             "suggested": names[labels[b]], "score": float(s), "exact": bool(exact)}
            for a, b, s, exact in zip(pairs.first, pairs.second, pairs.similarity, pairs.exact)]


def label_rows(issues, sources, labels, names, split_of) -> list[dict]:
    """Both splits' issues, most certain first."""
    found = [(float(score), int(offset + row), int(suggested)) for issue, offset in issues
             for row, score, suggested in zip(issue.rows, issue.score, issue.suggested)]
    found.sort(key=lambda f: (-f[0], f[1]))
    return [{"kind": "label", "row": row, "split": split_of[row], "source": sources[row], "other_row": None,
             "other_split": None, "other": "", "given": names[labels[row]], "suggested": names[suggested],
             "score": score} for score, row, suggested in found]


def outlier_rows(outliers, sources, labels, names, split_of) -> list[dict]:
    return [{"kind": "outlier", "row": int(row), "split": split_of[row], "source": sources[row], "other_row": None,
             "other_split": None, "other": "", "given": names[labels[row]], "suggested": "", "score": float(score)}
            for row, score in zip(outliers.rows, outliers.score)]


def write_table(path: Path, rows: list[dict], exclusive: bool = True):
    """The rows as CSV with COLUMNS (features/outputs.py: staged and renamed, cells a spreadsheet will not
    evaluate); `exclusive`: a user's --out, published only where nothing is yet; else the store's own copy,
    replacing the previous audit's."""
    write_csv(path, list(COLUMNS), ([r["kind"], r["source"], r["other"], r["given"], r["suggested"],
                                     f"{r['score']:.6g}"] for r in rows), exclusive=exclusive)


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


def listed_text(c: dict, s: dict) -> str:
    """Where the table lists fewer pairs than exist: how many, and why."""
    listed = c.get("duplicate_listed", c["duplicate"])  # audits saved before the counts were whole listed them all
    if listed >= c["duplicate"]:
        return ""
    return (f"; the table lists {listed} of them: {c['rows_at_neighbour_limit']} images have more duplicates than "
            f"their {s['neighbours']} closest, which are listed")


def format_audit(record: dict, top: int = 5) -> str:
    """The summary the command prints: counts per kind, leakage, the threshold, and each kind's top rows."""
    c, leak, s = record["counts"], record["leakage"], record["settings"]
    lines = [
        f"audit of {record['features']} ({record['label']}): "
        + ", ".join(f"{n} {split}" for split, n in record["images"].items()) + " images",
        f"  duplicates: {c['duplicate']} pairs at cosine similarity >= {s['threshold']:g} ({c['duplicate_exact']} "
        f"exact; {c['duplicate_within_train']} within train, {c['duplicate_within_test']} within test, "
        f"{c['duplicate_across_splits']} across splits)" + listed_text(c, s),
        f"  leakage: {leak['leaked']} of {record['images']['test']} test images "
        f"({100 * leak['rate']:.2f}%) have a duplicate in training ({leak['leaked_exact']} exact)",
        f"  labels: {c['label']} likely wrong ({c['label_train']} train, {c['label_test']} test), by cleanlab "
        f"from {s['k']}-fold out-of-fold logistic regression (C {s['C']:g}; "
        f"{100 * record['label_model_accuracy']['train_out_of_fold']:.1f}% right out of fold)",
        f"  outliers: {c['outlier']} with a cosine distance to the nearest class centroid above "
        f"{record['outlier_fence']:.3f} (the third quartile + {s['outlier_fence_iqrs']:g} interquartile ranges)",
    ]
    table = [list(COLUMNS)] + [[r["kind"], r["source"], r["other"], r["given"], r["suggested"], f"{r['score']:.4f}"]
                               for kind in KINDS for r in [r for r in record["rows"] if r["kind"] == kind][:top]]
    widths = [max(len(printable(row[i])) for row in table) for i in range(len(COLUMNS))]
    lines.append(f"most certain {top} of each kind:")
    lines += ["  " + "  ".join(printable(cell).ljust(w) for cell, w in zip(row, widths)).rstrip() for row in table]
    return "\n".join(lines)
