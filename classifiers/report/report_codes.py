"""The report's sections on what the codes say about the data: the saved label curves, a map of the test codes,
nearest training images, and the saved audits (duplicates, likely wrong labels, outliers) with thumbnails.
`test` below is report.py's HeldOutTest (the store's test split, read once), passed in by build_report."""
from pathlib import Path

import numpy as np

from cnncodes.classifiers.audit.audit import load_audits
from cnncodes.classifiers.evaluation.label_curve import per_class_text
from cnncodes.classifiers.runs.ranking import Configuration
from cnncodes.classifiers.serving.similar_images import neighbor_examples
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore

from .data_map import map_figure, project, sample_rows
from .neighbor_figures import neighbor_figure
from .report_figures import label_curve_figure, thumbnails_figure
from .report_html import esc, png, run_name, table


def ignore(message: str):
    pass


def curve_section(saved: list, out: Path, plt, note=ignore) -> list[str]:
    """The saved label curves (cnncodes curve): a table each and one figure of them all; a curve that cannot be
    shown is named, with why, on the page and to `note`."""
    records = [r for r in saved if r["problem"] is None]
    for r in saved:
        if r["problem"] is not None:
            note(f"curve {Path(r['path']).name} left out ({r['problem']}): run cnncodes curve again")
    left_out = [f"<p>Curve {esc(Path(r['path']).name)} left out ({esc(r['problem'])}): run cnncodes curve again.</p>"
                for r in saved if r["problem"] is not None]
    if not records:
        return (["<h2>Label budget</h2>"] + left_out) if left_out else []
    parts = left_out + ["<h2>Label budget: test accuracy against labelled images per class</h2>",
             "<p>Each point: the head fitted on a seeded draw of that many training images of each class, scored on "
             "the test split (mean ± std over the draws). The curve measures what more labels buy; it chooses "
             "nothing.</p>", png(label_curve_figure(records, plt), out / "label-curves.png")]
    parts += winners_table(records)
    for r in records:
        rows = [[per_class_text(s["per_class"]), s["labelled"], s["seeds"],
                 f"{100 * s['mean']:.2f} ± {100 * s['std']:.2f}", f"{s['fit_seconds']:.1f}"] for s in r["sizes"]]
        parts += [f"<h3>{esc(r['head'])} on {esc(r['features'])}, label set {esc(r['label'])}"
                  + (f"; {esc(r['views'])}" if r.get("views") else "") + "</h3>",
                  table(["per class", "labelled", "draws", "test accuracy % (mean ± std)", "fit s"], rows)]
    return parts


def winners_table(records: list) -> list[str]:
    """Where two or more curves of a label set share a budget: which one scores best there, by how much over the
    next, and what each cost to fit (seconds per point; a head's codes were extracted once before, not counted)."""
    parts = []
    for label in sorted({r["label"] for r in records}):
        mine = [r for r in records if r["label"] == label]
        budgets = sorted({s["per_class"] for r in mine for s in r["sizes"]}, key=lambda v: (v is None, v or 0))
        rows = []
        for n in budgets:
            at = sorted(((s, r) for r in mine for s in r["sizes"] if s["per_class"] == n),
                        key=lambda pair: -pair[0]["mean"])
            if len(at) < 2:
                continue
            (best, r1), (second, r2) = at[0], at[1]
            rows.append([per_class_text(n), f"{r1['head']} on {r1['features']}",
                         f"{100 * best['mean']:.2f} ± {100 * best['std']:.2f}", f"{r2['head']} on {r2['features']}",
                         f"{100 * (best['mean'] - second['mean']):+.2f}",
                         "; ".join(f"{r['head']} {s['fit_seconds']:.0f} s" for s, r in at)])  # table() escapes
        if rows:
            parts += [f"<h3>Which wins at each label budget, label set {esc(label)}</h3>",
                      "<p>The best mean test accuracy among the saved curves at each budget, and its lead over the "
                      "next; a lead within the two std is no lead. Fit time is per point, the codes' extraction not "
                      "included (it is paid once for every head).</p>",
                      table(["per class", "best", "test accuracy %", "next", "lead (points)", "fit time per point"],
                            rows)]
    return parts


def shown_codes(store: FeatureStore, groups: list[Configuration], test):
    """(the best-ranked run that predicted this test split from pooled codes, or None; the feature set the map and
    the neighbors are drawn from: that run's, else the store's default set)."""
    shown = next((c.latest for c in groups if test.aligned(c.latest) and c.latest.get("kind") == "fit"
                  and not c.latest.get("spatial")), None)
    return shown, store.feature_set(shown["features"] if shown else None)


def map_section(store: FeatureStore, shown: dict | None, info, test, out: Path, plt,
                method: str, note=ignore) -> list[str]:
    """The test images' codes in 2-D, coloured by class, the `shown` run's mistakes ringed."""
    rows = sample_rows(test.n)
    try:
        xy = project(store.features(info.name, split="test")[rows], method)
    except UserError as e:
        note(f"no map of the codes: {e}")
        return ["<h2>Map of the codes</h2>", f"<p>No map: {esc(e)}</p>"]
    label = shown["label"] if shown else store.primary_label
    truth = test.truth(label)[rows]
    marks = {}
    if shown:
        marks[f"misclassified by {run_name(shown)}"] = np.asarray(shown["test_predictions"])[rows] != truth
    first_test = store.rows("test").start
    for kind, flagged in audit_flags(store, info.name).items():
        marks[f"audit: {kind}"] = np.isin(first_test + rows, flagged)
    title = f"{method.upper()} of {info.name}, {len(rows)} of {test.n} test images, label set {label}"
    return ["<h2>Map of the codes</h2>",
            f"<p>{esc(title)}: one point per image, coloured by its class; rings mark the images named in the "
            f"legend.</p>",
            png(map_figure(xy, truth, store.class_names(label), marks, plt, title), out / "map.png")]


def neighbors_section(store: FeatureStore, info, out: Path, plt) -> list[str]:
    """A few test images beside their most similar training images: what the codes take as alike."""
    if store.counts().get("train", 0) < 1:
        return []
    examples = neighbor_examples(store, info.name)
    if not examples:
        return []
    return ["<h2>Nearest training images</h2>",
            f"<p>A seeded draw of test images, each followed by the training images whose {esc(info.name)} codes are "
            f"most similar (cosine similarity); green: the same class, red: another.</p>",
            png(neighbor_figure(examples, store.images(lazy=True), plt), out / "neighbours.png")]


def codes_sections(store: FeatureStore, groups: list[Configuration], test, out: Path, plt,
                   method: str, note=ignore) -> list[str]:
    """The map and the neighbors, both of one feature set (see shown_codes); none without codes or a test split."""
    if not test.n or not store.feature_sets():
        return []
    try:
        shown, info = shown_codes(store, groups, test)
    except UserError:  # several sets and no run to pick one: the first complete set, named on the page
        shown, info = None, next((s for s in store.feature_sets() if s.complete), None)
        if info is None:
            return []
    return map_section(store, shown, info, test, out, plt, method, note) + neighbors_section(store, info, out, plt)


# -- the audit ---------------------------------------------------------------------------------------------------
AUDIT_THUMBNAILS = 16  # rows drawn per kind (pairs: 8)
KIND_TITLES = {"duplicate": "Duplicates (most similar first)", "label": "Likely wrong labels (surest first)",
               "outlier": "Outliers (farthest from every class first)"}


def current_audits(store: FeatureStore) -> list[dict]:
    """The saved audits that still describe the store's data and their feature set."""
    return [a for a in load_audits(store) if not a.get("damaged") and not a.get("stale")]


def audit_flags(store: FeatureStore, features: str) -> dict:
    """{kind: store rows the current audit of `features` flags}: every row of a kind's entries (both of a pair)."""
    flags = {}
    for a in current_audits(store):
        if a.get("features") == features:
            for r in a["rows"]:
                flags.setdefault(r["kind"], []).extend([r["row"]] + ([r["other_row"]] if r.get("other_row") is not None
                                                                     else []))
    return {kind: np.asarray(rows, dtype=np.int64) for kind, rows in flags.items()}


def audit_section(store: FeatureStore, out: Path, plt, note=ignore) -> list[str]:
    """Each saved audit (cnncodes audit): its counts, then per kind its first rows as thumbnails and a table; a
    damaged or stale one is named, never shown as current."""
    audits = load_audits(store)
    if not audits:
        return []
    parts = ["<h2>Audit: duplicates, likely wrong labels, outliers</h2>"]
    for a in audits:
        if a.get("damaged") or a.get("stale"):
            note(f"audit {Path(a['path']).name} left out: {a.get('damaged') or a.get('stale')}; "
                 "run cnncodes audit again")
            parts.append(f"<p>Audit {esc(Path(a['path']).name)} left out: {esc(a.get('damaged') or a.get('stale'))}; "
                         f"run cnncodes audit again.</p>")
            continue
        c, leak = a["counts"], a["leakage"]
        parts.append(f"<h3>{esc(a['features'])}, label set {esc(a['label'])}</h3><p>{c['duplicate']} duplicate pairs "
                     f"{esc(duplicate_rule(a['settings']))} ({c['duplicate_exact']} exact); "
                     f"{leak['leaked']} of {leak['test_images']} test images ({100 * leak['rate']:.2f}%) have a "
                     f"duplicate in training; {c['label']} likely wrong labels; {c['outlier']} outliers.</p>")
        for kind, title in KIND_TITLES.items():
            rows = [r for r in a["rows"] if r["kind"] == kind]
            if rows:
                parts += [f"<h4>{esc(title)}: {len(rows)}</h4>", audit_thumbnails(store, a, kind, rows, out, plt)]
    return parts


def duplicate_rule(settings: dict) -> str:
    """How the audit confirmed its pairs; an audit saved before cnncodes hashed images had a cosine threshold."""
    if "threshold" in settings:
        return f"at cosine similarity ≥ {settings['threshold']:g}"
    return (f"by perceptual hashes (pHash and dHash within {settings['hash_distance']} bits) or codes (each the "
            f"other's neighbour, closer than {settings['ratio']:g} × the distance to the next)")


def audit_thumbnails(store: FeatureStore, audit: dict, kind: str, rows: list, out: Path, plt) -> str:
    """The first rows of one kind: pairs side by side (split and similarity over each), else each image with its
    given class, the suggested one and the score."""
    if kind == "duplicate":
        shown = rows[:AUDIT_THUMBNAILS // 2]
        stored = [r for pair in shown for r in (pair["row"], pair["other_row"])]
        titles = [t for p in shown for t in (f"{p['split']}: {p['given']}\n{p['score']:.3f}",
                                             f"{p['other_split']}: {p['suggested']}\n"
                                             f"{p.get('evidence') or ('exact' if p.get('exact') else '')}")]
        sources = [s for p in shown for s in (p["source"], p["other"])]
    else:
        shown = rows[:AUDIT_THUMBNAILS]
        stored = [r["row"] for r in shown]
        titles = [f"{r['given']} → {r['suggested']}\n{r['score']:.3g}" if kind == "label"
                  else f"{r['given']}\n{r['score']:.3g}" for r in shown]
        sources = [r["source"] for r in shown]
    name = f"audit-{Path(audit['path']).name}-{kind}.png"
    colour = {"duplicate": "darkorange", "label": "red", "outlier": "purple"}[kind]
    figure = png(thumbnails_figure(store.images_at(stored), titles, plt, sources, colour), out / name)
    head = ["source", "other", "given", "suggested", "score", "evidence"]
    return figure + "<details><summary>Table</summary>" + table(
        head, [[r["source"], r.get("other") or "", r["given"], r["suggested"], f"{r['score']:.4g}",
                r.get("evidence", "")] for r in rows[:50]]) + "</details>"
