"""`cnncodes report`: one self-contained HTML page (PNGs embedded, and written beside it) over the
store's runs, grouped by configuration and ranked without the test set (see `ranking`).

Every string from data (data set, label sets, classes, runs, features, parameters, sources) is
HTML-escaped here, and drawn in figures as plain text (see `report_figures`).
"""
import warnings
from pathlib import Path

import numpy as np

from cnncodes.classifiers.evaluation.label_curve import saved_curves
from cnncodes.classifiers.evaluation.sweep import sweeps
from cnncodes.classifiers.runs.ranking import (
    Configuration,
    configurations,
    cross_validated_text,
    features_text,
    is_run,
    kfold_cells,
    percent,
    setting_text,
    settings_text,
)
from cnncodes.classifiers.runs.records import STALE_EXPLAINED, all_runs, damaged_runs, kfold_tables, number_or
from cnncodes.features.outputs import write_atomically
from cnncodes.features.store import FeatureStore

from .data_map import require_umap
from .report_codes import audit_section, codes_sections, curve_section
from .report_figures import class_name, confusion_figure, curves_figure, sample_figure, thumbnails_figure
from .report_html import esc, png, run_name, table

MISCLASSIFIED_ROWS = 50  # per run: the page stays readable on 10,000 test images
THUMBNAILS = 24  # of them drawn, per run
NO_SOURCES = "sources not recorded (store made before cnncodes recorded them)"
RUNS_EXPLAINED = (
    "One row per configuration (head, features, label set, parameters), with the numbers of its latest run "
    "and how many runs it has; the earlier runs are listed in its section below. Rows are ranked by validation "
    "accuracy (each head's own holdout at the hyperparameters it chose) or, for a run without one, by the k-fold "
    "mean of the same head, features and label set; runs with neither come last, newest first. Test accuracy "
    "is shown beside and never ranks or picks anything: choosing on the test set would overstate it. Settings: "
    "the parameters that tell a configuration from others of its head (all of them are in its section); chosen: "
    "the hyperparameters the head picked on its own holdout. A k-fold mean is shown only beside runs of the same "
    "head, features (pooled codes), label set and parameters.")
RUNS_HEADER = ["#", "ranked by", "head", "features", "label set", "settings", "chosen", "runs",
               "validation accuracy (%)", "k-fold mean ± std (%)", "train accuracy (%)", "test accuracy (%)",
               "fit time (s)"]


# -- the tables ------------------------------------------------------------------------------------------------
def runs_rows(groups: list[Configuration]) -> list[list]:
    """The runs table: each configuration's latest run, in ranking order."""
    return [[i, c.ranked_by, r.get("head"), features_text(r), r.get("label"), settings_text(c.settings) or "–",
             settings_text(r.get("chosen")) or "–", len(c.runs), percent(r.get("validation_accuracy")),
             cross_validated_text(c.cross_validated), percent(r.get("train_accuracy")), percent(r["test_accuracy"]),
             f"{number_or(r.get('fit_seconds'), 0):.1f}"]
            for i, c in enumerate(groups, 1) for r in [c.latest]]


def runs_section(groups: list[Configuration]) -> list[str]:
    if not groups:
        return ["<h2>Runs</h2><p>No runs yet: `cnncodes fit` or `cnncodes baseline` makes one.</p>"]
    stale = any(r.get("stale") for c in groups for r in c.runs)
    return ["<h2>Runs</h2>", f"<p>{esc(RUNS_EXPLAINED)}" + (f" {esc(STALE_EXPLAINED)}" if stale else "") + "</p>",
            table(RUNS_HEADER, runs_rows(groups))]


def kfold_section(tables: list[dict], fold_records: int) -> list[str]:
    if not tables:
        return []
    parts = ["<h2>k-fold cross-validation accuracy (%)</h2>",
             "<p>Each head is trained on all folds but one and scored on that one; mean ± standard deviation over "
             "the folds. These are not runs on the test split and are not in the runs table."
             + (f" The {fold_records} per-fold baseline runs in the store belong to these tables." if fold_records
                else "") + "</p>"]
    for t in tables:
        views = f", trained with its {esc(t['views'])} views" if t.get("views") else ""
        parts.append(f"<h3>{esc(t['k'])}-fold on {esc(t['on'])}, features {esc(t['features'])}{views}</h3>"
                     f"<p>wall time {esc(t['wall_seconds'])} s</p>")
        parts.append(table(*kfold_cells(t)))
    return parts


def sweep_section(records: list[dict]) -> list[str]:
    """Each sweep's ranking (cross-validated on the training split) and, apart, its one test figure."""
    if not records:
        return []
    parts = ["<h2>Feature-set sweeps</h2>",
             "<p>Each candidate feature set scored by the head's k-fold mean on the training split; the best was "
             "fitted on the whole training split and scored on the test split once. Test accuracy chose nothing.</p>"]
    header = ["rank", "features", "views", "dims", "k-fold mean ± std %", "extraction s", "fit s (a fold)"]
    for r in records:
        rows = [[i, ("★ " if c["features"] == r["chosen"] else "") + c["features"], c.get("views") or "-", c["dims"],
                 f"{100 * c['mean']:.2f} ± {100 * c['std']:.2f}", f"{c['extraction_seconds']:.0f}",
                 f"{c['fit_seconds']:.1f}"] for i, c in enumerate(r["candidates"], 1)]
        parts += [f"<h3>{esc(r['head'])}, {esc(r['k'])}-fold, label set {esc(r['label'])}</h3>", table(header, rows),
                  f"<p>chosen: {esc(r['chosen'])}; test accuracy, scored once for it: "
                  f"<b>{100 * r['test_accuracy']:.2f}%</b> (run {esc(r['run'])})</p>"]
    return parts


# -- one section per configuration -------------------------------------------------------------------------------
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
        return is_run(run) and len(run["test_predictions"]) == self.n and self.truth(run["label"]) is not None


def wrong_surest_first(run: dict, truth) -> tuple[np.ndarray, bool]:
    """(the test rows the run got wrong, whether they are ordered by the run's confidence, surest first); a run
    made before runs recorded their confidence keeps the rows' order."""
    predicted = np.asarray(run["test_predictions"])
    wrong = np.flatnonzero(predicted != truth)
    confidence = run.get("test_confidence")
    if not isinstance(confidence, list) or len(confidence) != len(predicted):
        return wrong, False
    return wrong[np.argsort(-np.asarray(confidence, dtype=float)[wrong], kind="stable")], True


def misclassified(run: dict, test: HeldOutTest, out: Path, plt) -> str:
    """The test images the run got wrong, surest first: thumbnails of the first THUMBNAILS, then a table of
    source, true class, predicted class and score (at most MISCLASSIFIED_ROWS)."""
    if not test.aligned(run):
        return "<p>Its predictions are not on this store's test split: no list of misclassified images.</p>"
    predicted, truth, names = np.asarray(run["test_predictions"]), test.truth(run["label"]), run["class_names"]
    wrong, ordered = wrong_surest_first(run, truth)
    shown = wrong[:MISCLASSIFIED_ROWS]
    order = (f"surest first (by the run's {run.get('test_score_kind', 'probability')} of the class it gave)"
             if ordered else "in store order (the run did not record its confidence: fit it again to order them)")
    head = (f"<h3>Misclassified test images</h3><p>{len(wrong)} of {test.n} test images, {esc(order)}"
            + (f"; the first {len(shown)} listed" if len(shown) < len(wrong) else "") + ".</p>")
    if not len(wrong):
        return head
    score = (lambda i: f"{run['test_confidence'][i]:.3g}") if ordered else (lambda i: "–")
    drawn = shown[:THUMBNAILS]
    titles = [f"{class_name(names, predicted[i])} {score(i)}\n({class_name(names, truth[i])})" for i in drawn]
    images = test.store.images_at(drawn, split="test")
    figure = png(thumbnails_figure(images, titles, plt, None if test.sources is None else test.sources[drawn]),
                  out / f"{run_name(run)}-misclassified.png")
    caption = f"<p>The first {len(drawn)}: predicted class and score, (true class).</p>"
    if test.sources is None:
        return head + caption + figure + f"<p>{esc(NO_SOURCES)}.</p>"
    rows = [[test.sources[i], class_name(names, truth[i]), class_name(names, predicted[i]), score(i)] for i in shown]
    return head + caption + figure + table(["source", "true class", "predicted class", "score"], rows)


def code_text(run: dict) -> str:
    """The code that made a run, as people look it up: its commit, else the start of its source hash."""
    code = run.get("code") if isinstance(run.get("code"), dict) else {}
    made = (f"commit {str(code['commit'])[:10]}" if code.get("commit") else
            f"source {str(code['source_sha256'])[:12]}" if code.get("source_sha256") else None)
    return f"{made} (cnncodes {code.get('version')})" if made else "not recorded"


def every_run(c: Configuration) -> str:
    """All runs of a configuration, newest first, collapsed: repeats are shown, never picked from."""
    rows = [[run_name(r), r.get("created", "–"), percent(r.get("validation_accuracy")),
             percent(r.get("train_accuracy")), percent(r["test_accuracy"]), f"{number_or(r.get('fit_seconds'), 0):.1f}"]
            for r in reversed(c.runs)]
    return (f"<details><summary>All {len(c.runs)} runs of this configuration</summary>"
            + table(["run", "created", "validation accuracy (%)", "train accuracy (%)", "test accuracy (%)",
                      "fit time (s)"], rows) + "</details>")


def scores_sentence(c: Configuration) -> str:
    r = c.latest

    def pct(key):
        shown = percent(r.get(key), "")
        return f"{shown}%" if shown else "not recorded"
    scores = [f"validation accuracy {pct('validation_accuracy')}"]
    if c.cross_validated:
        scores.append(f"k-fold mean ± std (%) {cross_validated_text(c.cross_validated)}")
    return ", ".join(scores + [f"train accuracy {pct('train_accuracy')}", f"test accuracy {pct('test_accuracy')}",
                               f"fit time {number_or(r.get('fit_seconds'), 0):.1f} s"])


def configuration_section(number: int, c: Configuration, out: Path, test: HeldOutTest, plt) -> list[str]:
    r, name = c.latest, run_name(c.latest)
    params = r.get("params") if isinstance(r.get("params"), dict) else {}
    parts = [f"<h2>#{number} {esc(r.get('head'))} on {esc(features_text(r))}, label set {esc(r.get('label'))}</h2>",
             f"<p>Latest run {esc(name)} ({esc(r.get('created', 'time not recorded'))}), one of {len(c.runs)}: "
             f"{esc(scores_sentence(c))}.</p>",
             f"<p>Chosen hyperparameters: {esc(settings_text(r.get('chosen')) or 'none recorded')}. "
             f"Code: {esc(code_text(r))}.</p>",
             "<details><summary>Parameters</summary>"
             + table(["parameter", "value"], [[k, setting_text(v)] for k, v in params.items()])
             + "</details>"]
    if len(c.runs) > 1:
        parts.append(every_run(c))
    if isinstance(r.get("history"), dict) and r["history"]:
        parts.append(png(curves_figure(r["history"], plt), out / f"{name}-curves.png"))
    parts.append(png(confusion_figure(r["confusion"], r["class_names"], plt), out / f"{name}-confusion.png"))
    parts.append(misclassified(r, test, out, plt))
    return parts


def sample_section(groups: list[Configuration], out: Path, test: HeldOutTest, plt) -> list[str]:
    """Test images as the first run in the table (the best ranked) predicted them."""
    shown = next((c.latest for c in groups if test.aligned(c.latest)), None)
    if shown is None:
        return []
    fig = sample_figure(test.store.images(split="test"), shown["test_predictions"], test.truth(shown["label"]),
                        shown["class_names"], test.sources, plt)
    caption = "" if test.sources is not None else f"<p>{esc(NO_SOURCES)}.</p>"
    return [f"<h2>Sample test images: ✓ right (green) or ✗ wrong (red), predicted (true) class, "
            f"run {esc(run_name(shown))}</h2>", caption, png(fig, out / "samples.png")]


# -- the page ------------------------------------------------------------------------------------------------------
def build_report(store_dir, out_dir=None, map_method: str = "pca", note=None) -> Path:
    """Writes the report's page and figures; returns the page. What it leaves out (damaged runs, a curve or audit
    that no longer matches, a map that cannot be drawn) is said on the page and to `note`, a line each. A map
    method whose library is missing is refused before any work."""
    import matplotlib  # only where figures are drawn, and its non-GUI backend set before pyplot loads
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    note = note or (lambda message: None)
    if map_method == "umap":
        require_umap()
    store = FeatureStore.open(store_dir)
    out = Path(out_dir or store.path / "report")
    out.mkdir(parents=True, exist_ok=True)
    records, tables, damaged = all_runs(store.path), kfold_tables(store.path), damaged_runs(store.path)
    groups, test = configurations(records, tables), HeldOutTest(store)
    fold_records = sum(r.get("kind") == "baseline" and not is_run(r) for r in records)
    parts = [f"<h1>cnncodes report: {esc(store.dataset)}</h1>",
             f"<p>{store.n} images ({', '.join(f'{esc(k)} {v}' for k, v in store.counts().items())}), "
             f"label sets {', '.join(map(esc, store.label_sets))}.</p>"]
    for folder, why in damaged:
        note(f"run {folder.name} left out: {why}; delete it, or re-run what made it")
    if damaged:
        parts.append("<h2>Damaged runs</h2><p>Left out of this page; delete them, or re-run what made them.</p><ul>"
                     + "".join(f"<li>{esc(folder.name)}: {esc(why)}</li>" for folder, why in damaged) + "</ul>")
    parts += runs_section(groups) + kfold_section(tables, fold_records) + sweep_section(sweeps(store.path))
    with matplotlib.rc_context({"text.usetex": False}), warnings.catch_warnings():  # TeX would read names as markup
        # a glyph missing from the font (a control character in a class name) is drawn as a box; the warning
        # would put the raw character on the console
        warnings.filterwarnings("ignore", message="Glyph .* missing from")
        for number, c in enumerate(groups, 1):
            parts += configuration_section(number, c, out, test, plt)
        parts += sample_section(groups, out, test, plt)
        parts += curve_section(saved_curves(store), out, plt, note)
        parts += codes_sections(store, groups, test, out, plt, map_method, note)
        parts += audit_section(store, out, plt, note)

    style = ("body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:3px 8px}details{margin:6px 0}")
    page = out / "index.html"
    write_atomically(page, f"<!doctype html><html><head><meta charset='utf-8'><title>cnncodes report</title>"
                           f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    return page
