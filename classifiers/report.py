"""`cnncodes report`: one self-contained HTML page (PNGs embedded and written beside it) over every run.

Every string from data (data set, label sets, classes, runs, features, sources) is HTML-escaped, and
drawn in figures as plain text, never as mathtext: a class named `$x$` is a name, not a formula.
"""
import base64
import html
import io
from pathlib import Path, PurePosixPath

import numpy as np

from cnncodes.features.store import FeatureStore
from .runs import all_runs, damaged_runs, kfold_tables, number_or

MISCLASSIFIED_ROWS = 50  # per run: the page stays readable on 10,000 test images
NO_SOURCES = "sources not recorded (store made before cnncodes recorded them)"


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def _png(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    path.write_bytes(buf.getvalue())
    import matplotlib.pyplot as plt
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="{esc(path.name)}">'


def _table(header, rows) -> str:
    th = "".join(f"<th>{esc(h)}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def short_source(source: str, width: int = 24) -> str:
    """The file name part of a source (`cat/0001.jpg` -> `0001.jpg`), cut to fit under a thumbnail."""
    name = PurePosixPath(source).name or source
    return name if len(name) <= width else name[:width - 1] + "…"


def comparison_rows(runs, label_sets):
    """The reference work's table: one row per method and features, a column per label set."""
    best = {}
    for r in runs:
        key = (r.get("head"), r.get("features"))
        cell = best.setdefault(key, {"epochs": r.get("epochs"), "seconds": 0.0})
        cell[r["label"]] = max(cell.get(r["label"], 0.0), r["test_accuracy"])
        cell["seconds"] += number_or(r.get("fit_seconds"), 0.0)
    rows = []
    for (head, feats), cell in sorted(best.items(), key=lambda kv: -max(kv[1].get(l, 0) for l in label_sets)):
        rows.append([head, feats] + [f"{100 * cell[l]:.2f}" if l in cell else "" for l in label_sets]
                    + [cell["epochs"] or "", f"{cell['seconds']:.1f}"])
    return rows


class HeldOutTest:
    """The store's test images, labels and sources, read once; which runs' predictions line up with them."""

    def __init__(self, store: FeatureStore):
        self.store, self.n = store, store.counts()["test"]
        self.sources = store.sources(split="test")
        self._truth = {}

    def truth(self, label: str):
        if label not in self._truth:
            self._truth[label] = self.store.labels(label, split="test") if label in self.store.label_sets else None
        return self._truth[label]

    def aligned(self, run: dict) -> bool:
        """A run predicted this store's test split (not a fold of the training split, not other data)."""
        on_fold = run.get("kind") == "baseline" and (run.get("params") or {}).get("fold") is not None
        return not on_fold and len(run["test_predictions"]) == self.n and self.truth(run["label"]) is not None


def misclassified(run: dict, test: HeldOutTest) -> str:
    """The test images the run got wrong: source, true class, predicted class (at most MISCLASSIFIED_ROWS)."""
    if not test.aligned(run):
        return "<p>Its predictions are not on this store's test split: no list of misclassified images.</p>"
    predicted, truth, names = np.asarray(run["test_predictions"]), test.truth(run["label"]), run["class_names"]
    wrong = np.flatnonzero(predicted != truth)
    shown = wrong[:MISCLASSIFIED_ROWS]
    head = (f"<h3>Misclassified test images</h3><p>{len(wrong)} of {test.n} test images"
            + (f"; the first {len(shown)} listed" if len(shown) < len(wrong) else "") + ".</p>")
    if not len(wrong):
        return head
    if test.sources is None:
        return head + f"<p>{esc(NO_SOURCES)}.</p>"
    rows = [[test.sources[i], _name(names, truth[i]), _name(names, predicted[i])] for i in shown]
    return head + _table(["source", "true class", "predicted class"], rows)


def _name(names, index) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


def plain_labels(ax):
    """Tick labels drawn as given: a `$` in a class name is a character, not the start of mathtext."""
    for text in ax.get_xticklabels() + ax.get_yticklabels():
        text.set_parse_math(False)


def run_section(r: dict, out: Path, test: HeldOutTest, plt) -> list[str]:
    name = Path(r["run"]).name
    train = number_or(r.get("train_accuracy"), float("nan"))
    parts = [f"<h2>{esc(name)}</h2><p>{esc(r.get('head'))} on {esc(r.get('features'))}, label {esc(r['label'])}: "
             f"test {100 * r['test_accuracy']:.2f}%, train {100 * train:.2f}%, "
             f"{number_or(r.get('fit_seconds'), 0):.1f} s</p>"]
    if r.get("history"):
        fig, axes = plt.subplots(1, 2, figsize=(9, 3))
        for ax, key in zip(axes, ("loss", "accuracy")):
            for k in (key, f"val_{key}"):
                if k in r["history"]:
                    ax.plot(r["history"][k], label=k)
            ax.set_xlabel("epoch"), ax.legend()
        parts.append(_png(fig, out / f"{name}-curves.png"))
    cm = np.array(r["confusion"])
    fig, ax = plt.subplots(figsize=(4.5, 4))
    ax.imshow(cm / np.maximum(cm.sum(1, keepdims=True), 1), cmap="Blues")
    ax.set_xlabel("predicted"), ax.set_ylabel("true"), ax.set_title("confusion (row-normalised)")
    if len(cm) <= 20:
        ax.set_xticks(range(len(cm)), r["class_names"], rotation=90, fontsize=7)
        ax.set_yticks(range(len(cm)), r["class_names"], fontsize=7)
        plain_labels(ax)
    parts.append(_png(fig, out / f"{name}-confusion.png"))
    parts.append(misclassified(r, test))
    return parts


def sample_grid(best: dict, out: Path, test: HeldOutTest, plt) -> list[str]:
    """24 test images with predicted (true) class and, where recorded, each one's source under it."""
    images, truth, names = test.store.images(split="test"), test.truth(best["label"]), best["class_names"]
    pick = np.random.default_rng(0).choice(len(images), min(24, len(images)), replace=False)
    fig, axes = plt.subplots(3, 8, figsize=(12, 6))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, pick):
        pred, true = best["test_predictions"][i], truth[i]
        ax.imshow(images[i])
        ax.set_title(f"{_name(names, pred)}\n({_name(names, true)})", fontsize=7, parse_math=False,
                     color="green" if pred == true else "red")
        if test.sources is not None:
            ax.text(0.5, -0.08, short_source(test.sources[i]), transform=ax.transAxes, ha="center", va="top",
                    fontsize=6, parse_math=False)
    caption = "" if test.sources is not None else f"<p>{esc(NO_SOURCES)}.</p>"
    return [f"<h2>Sample test images: predicted (true), best run {esc(Path(best['run']).name)}</h2>", caption,
            _png(fig, out / "samples.png")]


def build_report(store_dir, out_dir=None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = FeatureStore.open(store_dir)
    out = Path(out_dir or store.path / "report")
    out.mkdir(parents=True, exist_ok=True)
    runs, tables, damaged = all_runs(store.path), kfold_tables(store.path), damaged_runs(store.path)
    test = HeldOutTest(store)
    parts = [f"<h1>cnncodes report: {esc(store.dataset)}</h1>",
             f"<p>{store.n} images ({', '.join(f'{esc(k)} {v}' for k, v in store.counts().items())}), "
             f"label sets {', '.join(map(esc, store.label_sets))}.</p>"]
    if damaged:
        parts.append("<h2>Damaged runs</h2><p>Left out of this page; delete them, or re-run what made them.</p><ul>"
                     + "".join(f"<li>{esc(folder.name)}: {esc(why)}</li>" for folder, why in damaged) + "</ul>")

    parts.append("<h2>Test accuracy (%)</h2>")
    parts.append(_table(["method", "features"] + store.label_sets + ["epochs", "time (s)"],
                        comparison_rows(runs, store.label_sets)) if runs else "<p>No runs yet.</p>")

    if tables:
        parts.append("<h2>k-fold cross-validation (%)</h2>")
        for t in tables:
            parts.append(f"<p>{esc(t['k'])}-fold on {esc(t['on'])}, features {esc(t['features'])}, "
                         f"wall {esc(t['wall_seconds'])} s</p>")
            parts.append(_table(["head", "label"] + [f"fold {i}" for i in range(t["k"])] + ["mean ± std", "time (s)"],
                                [[r["head"], r["label"]] + [f"{100 * a:.2f}" for a in r["folds"]]
                                 + [f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}", r["seconds"]] for r in t["rows"]]))

    with matplotlib.rc_context({"text.usetex": False}):  # TeX would read names as markup
        for r in runs:
            parts += run_section(r, out, test, plt)
        shown = [r for r in runs if test.aligned(r)]
        if shown:
            parts += sample_grid(max(shown, key=lambda r: r["test_accuracy"]), out, test, plt)

    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}")
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>cnncodes report</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>", encoding="utf-8")
    return page
