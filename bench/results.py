"""`make results`: the README's results section and bench/RESULTS.md, rebuilt from bench/records/ alone (no
model runs, no figure typed by hand). Run twice, it writes the same bytes; CI checks that a fresh clone's files
are what the records give.

    python bench/results.py [--check]
"""
import argparse
import json
import os
import sys
import textwrap
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench import records as bench_records  # noqa: E402
from bench.budget_figure import budget_records, budget_svg, method_name  # noqa: E402
from bench.records import load_records  # noqa: E402

README, RESULTS = ROOT / "README.md", ROOT / "bench" / "RESULTS.md"
BUDGET_FIGURE = ROOT / "bench" / "label-budgets.svg"
START = "<!-- results: made by `make results` from bench/records/; edit those, not this -->"
END = "<!-- /results -->"
DEMO_START = "<!-- demo: made by `make results` from bench/records/demo--*.json; edit those, not this -->"
DEMO_END = "<!-- /demo -->"

# Each table: its title and the paragraph that says how its figures were made. Records name their table.
TABLES = {
    "demo": ("The offline demo", "`make demo` on the 3,000 photos committed in `demo/` (2,000 training, 1,000 test): "
             "the same logistic-regression head on EfficientNet-Lite0's codes with its published ImageNet weights and "
             "with random weights. The head's C is chosen on a holdout of the training photos."),
    "sweep": ("Which codes: k-fold on the training split", "`cnncodes sweep` ranks candidate feature sets, fixed "
              "before the run, by one head's k-fold mean on the training split; the test split is not scored."),
    "fixed-codes": ("Heads on cached codes, full CIFAR-10", "50,000 training and 10,000 test photos (the shared "
                    "`cifar10-jpg.tar`), codes of EfficientNet-Lite backbones with their published ImageNet "
                    "weights, extracted once. Feature sets and heads are chosen by k-fold on the training split "
                    "(the k-fold column); the chosen configuration is then fitted on all training photos once a "
                    "seed and scored on the test split."),
    "export-design": ("The int8 export's design, checked on training photos", "`export-model --quantize int8` "
                      "keeps some ops in float32; the choice was first probed on 200 test photos. Each variant is "
                      "exported from the same head (Lite0's three cuts, logreg, seed 0) and compared with the float "
                      "model on training photos its calibration did not use; the test split is not read."),
    "finetune": ("Lite0 fine-tuned from pixels, full CIFAR-10", "Every layer of EfficientNet-Lite0 (its published "
                 "ImageNet weights) trained on the 50,000 training photos, with the recipe frozen as it stood when "
                 "issue 38 was filed (bench/finetune_full.py's docstring: SGD with one warm-up epoch then cosine, "
                 "label smoothing 0.1, random crops of 0.6 to all of the area with flips, frozen BatchNorm statistics, "
                 "six epochs at side 128 then four at 160). The epoch and the test view (side, mirror averaging) are "
                 "chosen on a seeded 10% of the training photos; the test split is then scored once a seed. **The "
                 "recipe itself was designed while the test split was scored again and again** (bench/HISTORY.md; "
                 "the count is in the test scorings column), so these figures may be biased upward by an unknown "
                 "amount; each seed's run differs in initialisation of the new head, batch order, augmentation and "
                 "validation slice."),
    "from-scratch": ("From scratch: airbench94's recipe, full CIFAR-10", "`cnncodes baseline airbench`: a "
                     "network of 2 million weights trained from scratch at 32x32 on the 50,000 training photos with "
                     "the fastest published CIFAR-10 recipe (airbench94: whitening first layer, Nesterov SGD with a "
                     "triangular schedule, label smoothing 0.2, alternating flip and 2-pixel moves, lookahead, six "
                     "test-time views), its settings taken from the published script and fixed before any run; each "
                     "seed (initialisation, batch order, augmentation) scores the test split once. The time is the "
                     "training alone, on the 2 cores. The photos are the shared JPEG copy of CIFAR-10 (quality 75, "
                     "colour at half resolution: about 30 dB from the official pixels), which every table here "
                     "reads; the script's 94.01% was measured on the official pixels."),
    "label-budget": ("Where transfer wins: by labelled photos a class", "`bench/label_budgets.py`: the same seeded "
                     "draws of 10, 100, 1,000 and all 5,000 labelled training photos a class for every method, heads "
                     "on the chosen codes (their extraction paid once, whatever the budget) and airbench trained "
                     "from scratch (its batch size and epochs set by the draw's size, by a rule fixed beforehand: "
                     "docs/cli.md, `curve`); the test split scored once a point. The time is one seed's fit."),
    "precision": ("bf16 against fp32 for training on this CPU", "`bench/train_precision.py`: the same model "
                  "built in float32 and under Keras's mixed_bfloat16 policy, trained on the same batches of training "
                  "photos, the two alternating round by round after an untimed one; medians of the rounds. Speed "
                  "only: no test split is read. The faster is the default."),
    "audit": ("The audit: planted copies and wrong labels, and CIFAR-10's own duplicates", "`bench/audit.py`: a "
              "seeded draw of CIFAR-10 training photos (300 a class as training, 100 a class filed as test; CIFAR-10's "
              "test split is not read) with 40 planted copies of each kind among the test photos (exact; JPEG at "
              "quality 50-75; scaled down 20-50% and back; shifted 1-3 pixels; 2-4 pixels cropped and resized back; "
              "brightness 75-125%) and 3% of the other training photos moved to a wrong class; `cnncodes audit` at "
              "its defaults on Lite0's codes (duplicates by the last layer at 224 and the hashes; labels by the "
              "three cuts joined). The defaults were chosen on draw 0 (bench/HISTORY.md); the row is another draw. "
              "Precision counts every listed pair without a planted copy as false, though CIFAR-10 has "
              "near-duplicates of its own (a lower bound). The full CIFAR-10 row counts the test photos with a "
              "training duplicate, beside ciFAIR's 3.3% (Barz & Denzler 2020), with a page of 50 pairs drawn at "
              "random to judge by eye. Floors (issue 40): recall and precision >= 90% for every kind, label F1 >= "
              "0.6."),
    "early-stopping": ("The Keras heads' early stopping, re-chosen on the training split", "Which epoch a dense "
                       "head keeps (the best validation accuracy or the lowest validation loss, on a seeded 10% of "
                       "its training rows) and how many epochs it waits for a better one, by 3-fold on the "
                       "training split of Lite0's last layer; the test split is not scored. The rule in use was "
                       "set in 7fc6eb2 while the test split was scored; these candidates were fixed before the run."),
}
# Columns a table adds before the commit: (header, the cell from a record).
EXTRA = {
    "export-design": [("same class as the float model (%)", lambda r: f"{pct(r['agreement'])} of {r['images']}"),
                      ("file (MB)", lambda r: f"{r['megabytes']:.1f}")],
    "finetune": [("validation, each seed (%)", lambda r: " / ".join(map(pct, r["validation_accuracy"]))),
                 ("kept epoch, test view", lambda r: "; ".join(f"{e}, side {v[0]}{' flip-averaged' if v[1] else ''}"
                                                               for e, v in zip(r["best_epochs"], r["test_views"])))],
    "from-scratch": [("training images/s, each seed",
                      lambda r: " / ".join(f"{v:.0f}" for v in r.get("images_per_second") or []) or "–")],
    "precision": [("training images/s, fp32 / bf16", lambda r: " / ".join(
                      f"{r['training_images_per_second'][p]:.0f}" for p in ("fp32", "bf16"))),
                  ("bf16 / fp32, training", lambda r: f"{r['bf16_over_fp32']['training']:.2f}x")],
    "audit": [("recall % by kind: exact / jpeg / rescaled / shifted / cropped / brightness",
               lambda r: " / ".join(f"{100 * r['duplicates']['kinds'][k]['recall']:.0f}" for k in AUDIT_KINDS)
               if "duplicates" in r else "–"),
              ("precision % by kind (pairs holding a copy of it) / all pairs", lambda r: " / ".join(
                  "–" if r["duplicates"]["kinds"][k]["precision"] is None
                  else f"{100 * r['duplicates']['kinds'][k]['precision']:.0f}" for k in AUDIT_KINDS)
               + f" / {100 * r['duplicates']['precision']:.1f}" if "duplicates" in r else "–"),
              ("labels: precision / recall % / F1", lambda r: f"{100 * r['labels']['precision']:.0f} / "
               f"{100 * r['labels']['recall']:.0f} / {r['labels']['f1']:.2f} ({r['labels']['hits']} of "
               f"{r['labels']['moved']})" if "labels" in r else "–"),
              ("test photos with a training duplicate", lambda r: f"{r['leakage']['leaked']} of "
               f"{r['leakage']['test_images']} ({100 * r['leakage']['rate']:.2f}%; ciFAIR 3.3%)"
               if "leakage" in r else "–"),
              ("hashes, per image", lambda r: f"{1e6 * r['hash_seconds_per_image']:.0f} µs"
               if r.get("hash_seconds_per_image") else "–"),
              ("duplicate search's memory", lambda r: f"{r['memory'][-1]['search_mb']:.0f} MB at "
               f"{r['memory'][-1]['rows']:,} rows, {r['bytes_per_row']:.0f} bytes a row more"
               if "memory" in r else "–")],
    "early-stopping": [("best epoch per fold", lambda r: ", ".join(map(str, r.get("best_epochs") or [])) or "–")],
}
AUDIT_KINDS = ("exact", "jpeg", "rescaled", "shifted", "cropped", "brightness")
COLUMNS = ["what", "weights", "k-fold on training (%)", "test (%), mean ± std", "each seed (%)", "95% interval (%)",
           "test scorings", "fit time, all seeds or folds", "commit"]


def pct(x) -> str:
    return f"{100 * x:.2f}"


def mean_std(values) -> str:
    if not values:
        return "–"
    if len(values) == 1:
        return pct(values[0])
    return f"{pct(np.mean(values))} ± {pct(np.std(values, ddof=1))}"


def hours(seconds) -> str:
    if seconds is None:
        return "–"
    seconds = float(np.sum(seconds))
    return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"


def row(r: dict) -> list[str]:
    cells = base_row(r)
    return cells[:-1] + [cell(r) for _, cell in EXTRA.get(r["table"], [])] + cells[-1:]


def base_row(r: dict) -> list[str]:
    kfold = r.get("kfold_accuracy")
    test = r["test_accuracy"]
    interval = r.get("test_interval")
    seeds = " / ".join(pct(t) for t in test) if test else "–"
    if test and r.get("deterministic"):
        seeds += " (the same fit each seed: a deterministic head)"
    return [r["row"] + (" **(headline)**" if r["headline"] else ""), r["weights"],
            mean_std(kfold) if kfold else "–", mean_std(test),
            seeds, f"{pct(interval[0])}–{pct(interval[1])}" if interval else "–",
            str(r["test_scorings"]), hours(r.get("wall_seconds")), r["commit"][:7]]


def table(records: list[dict], extra: bool = True) -> list[str]:
    """One table's rows with its own extra columns, or (extra=False: rows of several tables) the shared ones."""
    added = [header for header, _ in EXTRA.get(records[0]["table"], [])] if records and extra else []
    columns = COLUMNS[:-1] + added + COLUMNS[-1:]
    lines = ["| " + " | ".join(columns) + " |", "| " + " | ".join("---" for _ in columns) + " |"]
    return lines + ["| " + " | ".join(row(r) if extra else base_row(r)) + " |" for r in records]


def commands(records: list[dict]) -> list[str]:
    """Each distinct command once, with the rows it made and its conditions."""
    runs = {}
    for r in records:
        runs.setdefault((r["command"], r["script_sha256"], r["commit"]), []).append(r)
    lines = ["Commands (run from a fresh clone after `make demo`'s install):", ""]
    for (command, sha, commit), rows in runs.items():
        r = rows[0]
        lines.append(f"- `{command}` at {commit[:7]} ({r['script']} sha256 {sha[:12]}, {r['date']}, {r['machine']}"
                     f"{', ' + r['note'] if r.get('note') else ''}): {'; '.join(x['row'] for x in rows)}")
    return lines


def results_md(records: list[dict]) -> str:
    out = ["# Results", "", " ".join([
        "Made by `make results` from the JSON records in `bench/records/`, each written by the bench script named",
        "beside it at a clean commit; nothing here is typed by hand. **test scorings** counts every time the test",
        "split has been scored for that configuration's family, its design included, as far as the history shows",
        "(bench/scorings.json). Figures from before records were kept, and the notes of how each recipe came about,",
        "are in [HISTORY.md](HISTORY.md)."]), ""]
    by_table = {}
    for r in records:
        by_table.setdefault(r["table"], []).append(r)
    for key in list(TABLES) + sorted(set(by_table) - set(TABLES)):
        if key not in by_table:
            continue
        title, method = TABLES.get(key, (key, ""))
        rows = sorted(by_table[key], key=lambda r: r["name"])
        out += [f"## {title}", "", method, ""] + table(rows) + [""] + commands(rows) + [""]
    if front := frontier(records):
        out += ["## The frontier: accuracy for the time", "", FRONTIER_TEXT, ""] + front + [""]
    if winners := budget_winners(records):
        out += ["## Which wins at each label budget", ""] + winners + [""] + figure_line(records, "") + [""]
    if not records:
        out += ["No records yet.", ""]
    return "\n".join(out)


# The tables whose rows are ways from images to a classifier: the frontier compares them on accuracy and cost
FRONTIER_TABLES = ("fixed-codes", "finetune", "from-scratch")


def frontier(records: list[dict]) -> list[str]:
    """Every method with test figures, cheapest first: test accuracy against the hours on the 2 cores from the
    images to one trained model (a head: the codes' extraction once, then its fit; a network: its training)."""
    rows = []
    for r in records:
        if r["table"] not in FRONTIER_TABLES or not r["test_accuracy"] or r.get("wall_seconds") is None:
            continue
        seconds = (r.get("extraction_seconds") or 0) + float(np.mean(r["wall_seconds"]))
        seeds = len(r["test_accuracy"])
        short = "" if seeds >= 3 else f" ({seeds} seed{'s' if seeds > 1 else ''} so far)"
        if r["table"] == "finetune":
            short += f" (recipe designed while the test split was scored: {r['test_scorings']} scorings)"
        rows.append((seconds, f"| {r['row']} | {r['weights']} | {mean_std(r['test_accuracy'])}{short} | "
                              f"{seconds / 3600:.2f} | {r['commit'][:7]} |"))
    if not rows:
        return []
    return ["| method | weights | test (%), mean ± std | hours on the 2 cores, images to one model | commit |",
            "| --- | --- | --- | --- | --- |"] + [line for _, line in sorted(rows)]


def budget_winners(records: list[dict]) -> list[str]:
    """For each label budget with two or more methods: the best mean test accuracy, its lead over the next, and
    what each cost (the codes' extraction counted once, beside the fit)."""
    by_budget = {}
    for r in budget_records(records):
        by_budget.setdefault(r["per_class"], []).append(r)
    lines = []
    for n in sorted(by_budget, key=lambda v: (v is None, v or 0)):
        ranked = sorted(by_budget[n], key=lambda r: -float(np.mean(r["test_accuracy"])))
        if len(ranked) < 2:
            continue
        best, second = ranked[0], ranked[1]
        lead = 100 * (np.mean(best["test_accuracy"]) - np.mean(second["test_accuracy"]))
        cost = "; ".join(f"{r['head']} {hours((r.get('extraction_seconds') or 0) + np.mean(r['wall_seconds']))}"
                         for r in ranked)
        lines.append(f"| {'all' if n is None else n} | {method_name(best)} | "
                     f"{mean_std(best['test_accuracy'])} | {second['head']} | {lead:+.2f} | {cost} |")
    if not lines:
        return []
    return ["| labelled a class | wins | test (%), mean ± std | next | lead (points) | time, images to one model |",
            "| --- | --- | --- | --- | --- | --- |"] + lines


FRONTIER_TEXT = ("Accuracy for the time it costs: each method from the images to one trained model, on the 2 cores "
                 "(a head on codes counts the codes' extraction once and its fit; a network its training; scoring "
                 "the test split is not counted).")


# What bench/HISTORY.md measured before records were kept, by the table its records will go to: the README says
# which have no headline record yet, so that no earlier figure passes for a result.
BEFORE_RECORDS = {"finetune": "the fine-tune of Lite0", "nine-cuts": "the three backbones' nine cuts joined",
                  "export": "the export", "label-curve": "the label curve"}


def figure_line(records: list[dict], folder: str) -> list[str]:
    """The label-budget figure's Markdown, with the path from the file that shows it."""
    if budget_svg(records) is None:
        return []
    return [f"![Test accuracy against labelled photos a class, each method mean ± std over its seeds]"
            f"({folder}{BUDGET_FIGURE.name})"]


def audit_summary(records: list[dict]) -> list[str]:
    """One generated paragraph: the audit on each planted draw, and on the full CIFAR-10."""
    planted = sorted((r for r in records if r["table"] == "audit" and "duplicates" in r), key=lambda r: r["seeds"])
    full = [r for r in records if r["table"] == "audit" and "leakage" in r]
    if not planted and not full:
        return []
    parts = [f"draw {r['seeds'][0]}: recall {min(k['recall'] for k in r['duplicates']['kinds'].values()) * 100:.1f}"
             f"-{max(k['recall'] for k in r['duplicates']['kinds'].values()) * 100:.0f}% across the six kinds of "
             f"copy, precision {100 * r['duplicates']['precision']:.1f}% over every pair listed, label F1 "
             f"{r['labels']['f1']:.2f}" for r in planted]
    text = "The audit, on planted copies and wrong labels among CIFAR-10 training photos: "
    text += "; ".join(parts) + "." if parts else ""
    for r in full:
        leak = r["leakage"]
        text += (f" On the full CIFAR-10, {leak['leaked']} of {leak['test_images']:,} test photos "
                 f"({100 * leak['rate']:.2f}%) have a training duplicate, beside ciFAIR's 3.3%.")
    return ["", text + " Method and every column: bench/RESULTS.md, \"The audit\"."]


def readme_section(records: list[dict]) -> str:
    headlines = sorted((r for r in records if r["headline"]), key=lambda r: r["name"])
    lines = [START, ""]
    if headlines:
        lines += table(headlines, extra=False) + ["", "Each row's method, command and conditions: [bench/RESULTS.md]"
                                     "(bench/RESULTS.md)."]
    else:
        lines += ["No headline has a record yet: see [bench/RESULTS.md](bench/RESULTS.md)."]
    if front := frontier(records):
        lines += ["", FRONTIER_TEXT, ""] + front
    if winners := budget_winners(records):
        lines += ["", "Which wins at each label budget (bench/RESULTS.md has every method's row):", ""] + winners
        lines += [""] + figure_line(records, "bench/")
    lines += audit_summary(records)
    if any(r["table"] == "finetune" for r in headlines):
        lines += ["", "The fine-tune's recipe was designed while the test split was scored again and again (its "
                  "test scorings count them): its figures may be biased upward by an unknown amount."]
    headed = {r["table"] for r in headlines}
    pending = [what for table, what in BEFORE_RECORDS.items() if table not in headed]
    if pending:
        partial = sorted({r["table"] for r in records if not r["headline"]} & set(BEFORE_RECORDS))
        lines += ["", f"Figures from before records were kept ({', '.join(pending)}) are in "
                  "[bench/HISTORY.md](bench/HISTORY.md), with how each came about; they are not results here: most "
                  "are one seed, and the fine-tune's recipe was designed while the test split was scored again and "
                  f"again ({finetune_history()} scorings before records: bench/scorings.json)."
                  + (" Records under way, short of a headline's three seeds: "
                     f"{', '.join(BEFORE_RECORDS[t] for t in partial)} (bench/RESULTS.md)." if partial else "")]
    return "\n".join([wrapped(line) for line in lines] + ["", END])


def wrapped(line: str) -> str:
    """A paragraph at the README's width; table rows as they are."""
    return line if line.startswith("|") else textwrap.fill(line, 115, break_long_words=False, break_on_hyphens=False)


def finetune_history() -> int:
    return json.loads(bench_records.SCORINGS.read_text())["finetune-lite0"]["before_records"]


def demo_section(records: list[dict]) -> str:
    """What `make demo` printed, and the two test accuracies it shows, from the demo's records."""
    found = {r["name"]: r for r in records if r["table"] == "demo"}
    imagenet, random = found.get("demo/imagenet"), found.get("demo/none")
    if not (imagenet and random):
        return f"{DEMO_START}\n(No record of `make demo` yet: `python bench/demo.py` writes it.)\n{DEMO_END}"
    a, b = imagenet["test_accuracy"][0], random["test_accuracy"][0]
    lines = imagenet["output"].splitlines()
    table = lines[next((i for i, line in enumerate(lines) if line.startswith("head ")), 0):]  # `runs`' table
    output = "\n".join("    " + line for line in table)
    return (f"{DEMO_START}\nWhat `make demo` printed at commit {imagenet['commit'][:7]} (`{imagenet['command']}`, "
            f"which runs it on a new store; {imagenet['date']}, {imagenet['wall_seconds']:.0f} s on "
            f"{imagenet['machine']}):\n\n{output}\n\n**With ImageNet codes the head names {pct(a)}% of the "
            f"1,000 test photos right (95% interval {pct(imagenet['test_interval'][0])}–"
            f"{pct(imagenet['test_interval'][1])}); with random codes of the same network, {pct(b)}%** (one seed "
            f"each; the demo shows, it does not measure).\n{DEMO_END}")


def replace_between(text: str, start: str, end: str, new: str) -> str:
    if start not in text or end not in text:
        raise SystemExit(f"results: README.md lacks the markers {start!r} and {end!r}")
    head, rest = text.split(start, 1)
    return head + new + rest.split(end, 1)[1]


def render() -> dict[Path, str]:
    records = load_records()
    readme = replace_between(README.read_text(), START, END, readme_section(records))
    readme = replace_between(readme, DEMO_START, DEMO_END, demo_section(records))
    files = {README: readme, RESULTS: results_md(records)}
    if (figure := budget_svg(records)) is not None:
        files[BUDGET_FIGURE] = figure
    return files


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="The README's results and bench/RESULTS.md, from bench/records/")
    p.add_argument("--check", action="store_true", help="change nothing; exit 1 if a file differs from its records")
    return p


def main():
    args = parser().parse_args()
    stale = []
    for path, text in render().items():
        if not path.exists() or path.read_text() != text:
            stale.append(os.path.relpath(path, ROOT))
            if not args.check:
                path.write_text(text)
    if args.check and stale:
        raise SystemExit(f"results: {', '.join(stale)} differ from bench/records: run make results and commit")
    print(f"results: {'checked' if args.check else 'wrote'} README.md and bench/RESULTS.md from "
          f"{len(load_records())} records", flush=True)


if __name__ == "__main__":
    main()
