"""The label-budget figure for the README and bench/RESULTS.md: test accuracy against labelled photos a class, one
line a method, from the label-budget records alone.

Written as SVG by hand, not by matplotlib, so that `make results` gives the same bytes on every machine (CI
checks that a fresh clone's files are what the records give) and needs no plotting package.
"""
import math

import numpy as np

WIDTH, HEIGHT = 560, 340
LEFT, RIGHT, TOP, BOTTOM = 60, 190, 20, 50  # margins: the legend sits in the right one
COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def budget_records(records: list[dict]) -> list[dict]:
    """The label-budget records with test figures, and the fine-tune's headline as one more method at "all" its
    labels (its cost allows no smaller budgets here: about two hours a seed on the 2 cores)."""
    budgets = [r for r in records if r["table"] == "label-budget" and r["test_accuracy"]]
    every = next((r for r in budgets if r["per_class"] is None), None)
    finetune = [r for r in records if r["table"] == "finetune" and r["headline"]]
    return budgets + ([{**r, "per_class": None, "labelled": every["labelled"], "classes": every["classes"],
                        "head": "Lite0 fine-tune", "features": "pixels", "extraction_seconds": 0} for r in finetune]
                      if every else [])


def budget_points(records: list[dict]) -> dict[str, list[tuple[float, float, float]]]:
    """{method: [(labelled photos a class, mean test %, std), ...]} from budget_records, budgets in order; "all"
    stands at the draw's own photos a class (`labelled` / classes)."""
    methods = {}
    for r in budget_records(records):
        per_class = r["per_class"] or r["labelled"] / r["classes"]
        accuracy = 100 * np.asarray(r["test_accuracy"], dtype=float)
        std = float(accuracy.std(ddof=1)) if accuracy.size > 1 else 0.0
        methods.setdefault(method_name(r), []).append((float(per_class), float(accuracy.mean()), std))
    return {name: sorted(points) for name, points in sorted(methods.items())}


def method_name(r: dict) -> str:
    return f"{r['head']} on {'pixels' if r['features'] == 'pixels' else r['features'].split('-')[0] + ' codes'}"


def budget_svg(records: list[dict]) -> str | None:
    """The figure, or None when fewer than two methods have points (nothing to compare)."""
    methods = budget_points(records)
    if len(methods) < 2:
        return None
    xs = [p[0] for points in methods.values() for p in points]
    ys = [v for points in methods.values() for _, m, s in points for v in (m - s, m + s)]
    x_lo, x_hi = math.log10(min(xs)), math.log10(max(xs))
    x_lo, x_hi = x_lo - 0.1, max(x_hi, x_lo + 1) + 0.1  # a margin, so no point sits on the frame
    y_lo, y_hi = 10 * math.floor(min(ys) / 10), min(100, 10 * math.ceil(max(ys) / 10))
    y_hi = y_hi if y_hi > y_lo else y_lo + 10

    def at(x: float, y: float) -> tuple[str, str]:
        px = LEFT + (math.log10(x) - x_lo) / (x_hi - x_lo) * (WIDTH - LEFT - RIGHT)
        py = HEIGHT - BOTTOM - (y - y_lo) / (y_hi - y_lo) * (HEIGHT - TOP - BOTTOM)
        return f"{px:.1f}", f"{py:.1f}"

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
           f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">',
           f'<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>']
    for y in range(y_lo, y_hi + 1, 10):  # the accuracy grid
        _, py = at(min(xs), y)
        out += [f'<line x1="{LEFT}" y1="{py}" x2="{WIDTH - RIGHT}" y2="{py}" stroke="#ddd"/>',
                f'<text x="{LEFT - 6}" y="{py}" text-anchor="end" dominant-baseline="middle">{y}</text>']
    for x in sorted(set(xs)):  # one tick a budget
        px, py = at(x, y_lo)
        out.append(f'<text x="{px}" y="{float(py) + 18:.1f}" text-anchor="middle">{x:,.0f}</text>')
    out += [f'<text x="{(LEFT + WIDTH - RIGHT) / 2:.1f}" y="{HEIGHT - 8}" text-anchor="middle">labelled training '
            'photos a class (log scale)</text>',
            f'<text x="14" y="{(TOP + HEIGHT - BOTTOM) / 2:.1f}" text-anchor="middle" transform="rotate(-90 14 '
            f'{(TOP + HEIGHT - BOTTOM) / 2:.1f})">test accuracy (%), mean ± std</text>']
    for i, (name, points) in enumerate(methods.items()):
        colour = COLOURS[i % len(COLOURS)]
        line = " ".join(",".join(at(x, m)) for x, m, _ in points)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for x, m, s in points:
            (px, py), (_, lo), (_, hi) = at(x, m), at(x, m - s), at(x, m + s)
            out += [f'<line x1="{px}" y1="{lo}" x2="{px}" y2="{hi}" stroke="{colour}"/>',
                    f'<circle cx="{px}" cy="{py}" r="3.5" fill="{colour}"><title>{name}, {x:,.0f} a class: '
                    f'{m:.2f} ± {s:.2f}%</title></circle>']
        legend_y = TOP + 10 + 20 * i
        out += [f'<line x1="{WIDTH - RIGHT + 14}" y1="{legend_y}" x2="{WIDTH - RIGHT + 34}" y2="{legend_y}" '
                f'stroke="{colour}" stroke-width="2"/>',
                f'<text x="{WIDTH - RIGHT + 40}" y="{legend_y}" dominant-baseline="middle">{name}</text>']
    return "\n".join(out + ["</svg>", ""])
