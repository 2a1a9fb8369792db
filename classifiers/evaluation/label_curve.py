"""`cnncodes curve`: what more labels would buy. Test accuracy against labelled training images per class
(1, 2, 5, ..., all), mean ± std over seeds; each point is the head fitted on a seeded draw of that many
training images of each class. The curve measures and chooses nothing, so each point may score the test split.
A pixel baseline (`--head airbench`) trains on the same draws of the store's images, each point a baseline run
(resumable as any), so its curve and the heads' compare photo for photo.

Each finished point is written at once (curves/NAME.json), so a killed curve goes on where it stopped; points
are reused only when made by this same code with the same settings."""
import hashlib
import json
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from cnncodes.classifiers.baselines.train import train_baseline
from cnncodes.classifiers.heads.names import BASELINE_NAMES
from cnncodes.classifiers.heads.params import resolve_params
from cnncodes.classifiers.heads.registry import head_parameters, make_head
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features.errors import UserError
from cnncodes.features.folds import per_class_draw
from cnncodes.features.outputs import write_atomically
from cnncodes.features.provenance import code_version, made_by_this_code
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import progress_bar

from .fit import check_finite, load_xy

PER_CLASS = (1, 2, 5, 10, 25, 50, 100, None)  # None: every training image
SEEDS = (0, 1, 2)
FOLDER = "curves"


MOST_PER_CLASS = 10**9


def parse_per_class(text: str) -> tuple:
    """"1,2,5,all" -> (1, 2, 5, None): labelled images per class, ascending, `all` (any case) last."""
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        if part.lower() == "all":
            values.append(None)
            continue
        try:
            n = int(part) if part.isascii() else 0
        except ValueError:
            n = 0
        if not 0 < n <= MOST_PER_CLASS:
            raise UserError(f"--per-class {text!r}: {part!r} is not a whole number from 1 to {MOST_PER_CLASS} or "
                            f"'all': give e.g. 1,2,5,10,all")
        values.append(n)
    return tuple(sorted(set(values), key=lambda v: (v is None, v or 0)))


def curve_path(store: FeatureStore, head: str, features: str, label: str, params: dict) -> Path:
    """STORE/curves/HEAD-HASH.json, HASH of the label set, features and parameters (a join's name can be longer
    than a file name may be): a curve with other parameters is another file, never written over this one."""
    key = hashlib.sha256(json.dumps([head, label, features, params], sort_keys=True).encode()).hexdigest()[:12]
    return store.path / FOLDER / f"{head}-{key}.json"


def label_curve(store_dir, head: str, *, features: str | None = None, label: str | None = None,
                per_class=PER_CLASS, seeds=SEEDS, params: dict | None = None, progress: bool = True) -> dict:
    """Fits `head` on each (images per class, seed) draw of the training split, scores the test split; returns and
    saves the record: settings, every point, and per size the mean ± std. `params` as resolve_params gives them."""
    params = resolve_params([head], params or {})[head]
    store = FeatureStore.open(store_dir)
    label = store.canonical_label_set(label)
    if head in BASELINE_NAMES:
        if features:
            raise UserError(f"{head} trains on the store's images: drop --features (a curve of a head on codes "
                            f"takes it)")
        return baseline_curve(store, head, label, per_class, seeds, params, progress)
    info = store.feature_set(features)
    X, y = load_xy(store, info.name, label, "train", False)
    X_test, y_test = load_xy(store, info.name, label, "test", False)
    if len(np.unique(y)) < 2:
        raise UserError(f"label set {label} has one class in the training split: a curve needs two or more classes")
    if not len(y_test):
        raise UserError("the store has no test split to score the curve on: ingest it with one "
                        "(a folder tree with train/ and test/, or --holdout)")
    check_finite(info, X, X_test)
    views = "plain codes only (the set's cached views are not used)" if info.views else None
    seeded = "random_state" in head_parameters(head)
    settings = {"head": head, "features": info.name, "fingerprint": info.fingerprint, "label": label,
                "n_classes": int(len(np.unique(y))), "params": params, "per_class": list(per_class),
                "seeds": list(seeds)}
    path = curve_path(store, head, info.name, label, params)
    largest = int(np.bincount(y).max())
    # A draw of every row is the same for each seed: then only a seeded head's own randomness differs
    todo = [(n, s) for n in per_class for s in seeds if seeded or (n is not None and n < largest) or s == seeds[0]]
    return curve_points(path, settings, todo, views, progress,
                        lambda n, seed: fit_point(head, params, seeded, X, y, X_test, y_test, n, seed))


def curve_points(path: Path, settings: dict, todo: list, views: str | None, progress: bool, fit) -> dict:
    """Fits every (per class, seed) point of `todo` not already in the file at `path` (made by this code with
    these settings), writing the file after each; returns the record of `todo`'s points."""
    kept = {(p["per_class"], p["seed"]): p for p in reusable_points(path, settings)}  # another --per-class adds
    path.parent.mkdir(exist_ok=True)
    with progress_bar(total=len(todo), desc=f"curve {settings['head']}", unit="fit", disable=not progress) as bar:
        for n, seed in todo:
            if (n, seed) not in kept:
                kept[(n, seed)] = fit(n, seed)
                write_atomically(path, json.dumps(curve_record(settings, list(kept.values()), views), indent=1))
            bar.update()
    record = curve_record(settings, [kept[key] for key in todo], views)
    write_atomically(path, json.dumps(curve_record(settings, list(kept.values()), views), indent=1))
    return {**record, "path": str(path)}


PIXELS = "pixels"  # a baseline curve's `features`: the store's images


def baseline_curve(store: FeatureStore, head: str, label: str, per_class, seeds, params: dict, progress: bool):
    """The curve of a pixel baseline: each point a baseline run on the draw (BaselineConfig.per_class), seeded by
    the draw's seed (airbench sizes its batches and epochs by the draw: airbench.budget_settings)."""
    y, y_test = store.labels(label, split="train"), store.labels(label, split="test")
    if len(np.unique(y)) < 2:
        raise UserError(f"label set {label} has one class in the training split: a curve needs two or more classes")
    if not len(y_test):
        raise UserError("the store has no test split to score the curve on: ingest it with one "
                        "(a folder tree with train/ and test/, or --holdout)")
    settings = {"head": head, "features": PIXELS, "fingerprint": str(store.attrs["content_sha256"]), "label": label,
                "n_classes": int(len(np.unique(y))), "params": params, "per_class": list(per_class),
                "seeds": list(seeds)}
    given = None if label == store.primary_label else label  # as `cnncodes baseline` names it: the same runs

    def fit(n, seed):
        config = BaselineConfig(head, label=given, seed=seed, per_class=n, **params)
        run, r = train_baseline(store.path, config, progress=False, log=lambda m: None)
        return {"per_class": n, "seed": seed, "labelled": len(per_class_draw(y, n, seed)),
                "test_accuracy": float(r["test_accuracy"]), "fit_seconds": round(float(r["fit_seconds"]), 3),
                "run": run.name, "chosen": {"epochs": r["epochs"], "batch_size": r["params"]["batch_size"]}}

    return curve_points(curve_path(store, head, PIXELS, label, params), settings,
                        [(n, s) for n in per_class for s in seeds], None, progress, fit)


SMALL_DRAW = 10_000  # rows under which a fit runs on one BLAS thread: threads cost more than they give there


def fit_point(head, params, seeded, X, y, X_test, y_test, n, seed) -> dict:
    """One point: the head (its random_state the draw's seed) fitted on the draw, scored on the test split."""
    rows = per_class_draw(y, n, seed)
    model = make_head(head, **{**params, **({"random_state": seed} if seeded else {})})
    start = time.time()
    with threadpool_limits(1 if len(rows) < SMALL_DRAW else None):  # 5 a class: 0.3 s, not 25 s, on a busy machine
        model.fit(X[rows], y[rows])
    seconds = time.time() - start
    return {"per_class": n, "seed": seed, "labelled": int(len(rows)),
            "test_accuracy": float(model.score(X_test, y_test)),
            "fit_seconds": round(seconds, 3), "chosen": getattr(model, "chosen_params_", None)}


def curve_record(settings: dict, points: list, views: str | None = None) -> dict:
    """The settings, every point, and per size (ascending, `all` last) the labelled count, mean ± std and fit time."""
    sizes = []
    for n in sorted({p["per_class"] for p in points}, key=lambda v: (v is None, v or 0)):
        mine = [p for p in points if p["per_class"] == n]
        if mine:
            acc = np.array([p["test_accuracy"] for p in mine])
            sizes.append({"per_class": n, "labelled": int(np.median([p["labelled"] for p in mine])), "seeds": len(mine),
                          "mean": float(acc.mean()), "std": sample_std(acc),
                          "fit_seconds": float(np.mean([p["fit_seconds"] for p in mine]))})
    return {**settings, "kind": "curve", "points": points, "sizes": sizes, "views": views, "code": code_version()}


def sample_std(values: np.ndarray) -> float:
    """The spread of seeds drawn from many possible ones: the sample std (ddof=1); 0 for one seed."""
    return float(values.std(ddof=1)) if len(values) > 1 else 0.0


def reusable_points(path: Path, settings: dict) -> list:
    """The points of an earlier curve at `path` made by this code with these settings (else none)."""
    try:
        old = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    same = all(old.get(k) == v for k, v in settings.items() if k not in ("per_class", "seeds"))
    return old.get("points", []) if same and made_by_this_code(old) else []


def saved_curves(store: FeatureStore) -> list[dict]:
    """Every curve saved in the store (for the report), each with `path` and `problem`: why it is left out (it
    cannot be read, is not a curve, or its feature set changed or is gone since), else None."""
    out = []
    for path in sorted((store.path / FOLDER).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            problem = curve_problem(record)
        except (OSError, ValueError) as e:
            record, problem = {}, f"cannot be read ({type(e).__name__})"
        if problem is None and record["features"] == PIXELS:
            if str(store.attrs["content_sha256"]) != record.get("fingerprint"):
                problem = "the store's images changed since"
        elif problem is None:
            try:
                now = store.feature_set(str(record["features"])).fingerprint
            except UserError:
                now = None
            if now != record.get("fingerprint"):
                problem = f"feature set {record['features']} changed or is gone since"
        out.append({**record, "path": str(path), "problem": problem})
    return out


def curve_problem(record) -> str | None:
    """What makes a saved curve unfit to show, else None."""
    try:
        assert isinstance(record, dict) and all(isinstance(record[k], str) for k in ("head", "features", "label"))
        for s in record["sizes"]:
            assert s["per_class"] is None or isinstance(s["per_class"], int)
            assert all(isinstance(s[k], (int, float)) and np.isfinite(s[k])
                       for k in ("labelled", "seeds", "mean", "std", "fit_seconds"))
        assert isinstance(record["sizes"], list) and record["sizes"]
    except (AssertionError, KeyError, TypeError):
        return "is not a curve cnncodes wrote (a field is missing or of the wrong kind)"
    return None


def per_class_text(n) -> str:
    return "all" if n is None else str(n)


def format_curve(record: dict) -> str:
    """The curve as a markdown table, under a line naming head, features and label set."""
    lines = [f"{record['head']} on {record['features']}, label set {record['label']}: test accuracy against "
             f"labelled training images per class (seeds: {len(record['seeds'])})"
             + (f"; {record['views']}" if record.get("views") else ""), "",
             "| per class | labelled | test accuracy % (mean ± std) | fit s |", "| --- | --- | --- | --- |"]
    for s in record["sizes"]:
        lines.append(f"| {per_class_text(s['per_class'])} | {s['labelled']} | {100 * s['mean']:.2f} ± "
                     f"{100 * s['std']:.2f} | {s['fit_seconds']:.1f} |")
    return "\n".join(lines) + "\n"
