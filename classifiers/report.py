"""`cnncodes report`: one self-contained HTML page (PNGs embedded and written beside it) over every run."""
import base64
import html
import io
import json
from pathlib import Path

import numpy as np

from features import schema
from features.store import FeatureStore
from .runs import all_runs


def _png(fig, path: Path) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    path.write_bytes(buf.getvalue())
    import matplotlib.pyplot as plt
    plt.close(fig)
    return f'<img src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}" alt="{path.name}">'


def _table(header, rows) -> str:
    th = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{th}</tr>{trs}</table>"


def comparison_rows(runs, label_sets):
    """The reference work's table: one row per method and features, a column per label set."""
    best = {}
    for r in runs:
        key = (r.get("head"), r.get("features"))
        cell = best.setdefault(key, {"epochs": r.get("epochs"), "seconds": 0.0})
        cell[r["label"]] = max(cell.get(r["label"], 0.0), r["test_accuracy"])
        cell["seconds"] += r.get("fit_seconds", 0.0)
    rows = []
    for (head, feats), cell in sorted(best.items(), key=lambda kv: -max(kv[1].get(l, 0) for l in label_sets)):
        rows.append([head, feats] + [f"{100 * cell[l]:.2f}" if l in cell else "" for l in label_sets]
                    + [cell["epochs"] or "", f"{cell['seconds']:.1f}"])
    return rows


def build_report(store_dir, out_dir=None) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    store = FeatureStore.open(store_dir)
    out = Path(out_dir or store.path / "report")
    out.mkdir(parents=True, exist_ok=True)
    runs = all_runs(store.path)
    parts = [f"<h1>cnncodes report: {html.escape(store.dataset)}</h1>",
             f"<p>{store.n} images ({', '.join(f'{k} {v}' for k, v in store.counts().items())}), "
             f"label sets {', '.join(store.label_sets)}.</p>"]

    parts.append("<h2>Test accuracy (%)</h2>")
    parts.append(_table(["method", "features"] + store.label_sets + ["epochs", "time (s)"],
                        comparison_rows(runs, store.label_sets)) if runs else "<p>No runs yet.</p>")

    tables = sorted((store.path / schema.RUNS_DIR).glob("kfold-*/table.json"))
    if tables:
        parts.append("<h2>k-fold cross-validation (%)</h2>")
        for t in map(lambda p: json.loads(p.read_text()), tables):
            parts.append(f"<p>{t['k']}-fold on {t['on']}, features {html.escape(t['features'])}, wall {t['wall_seconds']} s</p>")
            parts.append(_table(["head", "label"] + [f"fold {i}" for i in range(t["k"])] + ["mean ± std", "time (s)"],
                                [[r["head"], r["label"]] + [f"{100 * a:.2f}" for a in r["folds"]]
                                 + [f"{100 * r['mean']:.2f} ± {100 * r['std']:.2f}", r["seconds"]] for r in t["rows"]]))

    for r in runs:
        name = Path(r["run"]).name
        parts.append(f"<h2>{html.escape(name)}</h2><p>{html.escape(str(r.get('head')))} on "
                     f"{html.escape(str(r.get('features')))}, label {r['label']}: test {100 * r['test_accuracy']:.2f}%, "
                     f"train {100 * r.get('train_accuracy', float('nan')):.2f}%, {r.get('fit_seconds', 0):.1f} s</p>")
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
        parts.append(_png(fig, out / f"{name}-confusion.png"))

    if runs:
        best = max(runs, key=lambda r: r["test_accuracy"])
        images, truth = store.images(split="test"), store.labels(best["label"], split="test")
        pick = np.random.default_rng(0).choice(len(images), min(24, len(images)), replace=False)
        fig, axes = plt.subplots(3, 8, figsize=(12, 5.4))
        for ax in axes.flat:
            ax.axis("off")
        for ax, i in zip(axes.flat, pick):
            pred, true = best["test_predictions"][i], truth[i]
            ax.imshow(images[i])
            ax.set_title(f"{best['class_names'][pred]}\n({best['class_names'][true]})", fontsize=7,
                         color="green" if pred == true else "red")
        parts.append(f"<h2>Sample test images: predicted (true), best run {html.escape(Path(best['run']).name)}</h2>")
        parts.append(_png(fig, out / "samples.png"))

    style = "body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}"
    page = out / "index.html"
    page.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>cnncodes report</title>"
                    f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    return page
