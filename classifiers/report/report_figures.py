"""The report's figures: confusion matrices, learning curves, the grid of test images.

Every string from data (class names, sources) is drawn as plain text, never as mathtext: a class
named `$x$` is a name, not a formula. Each function takes pyplot (set to a non-GUI backend by the
caller) and returns the figure, so tests can read what was drawn without decoding a PNG.
"""
from dataclasses import dataclass
from pathlib import PurePosixPath

import numpy as np

NAMED_CLASSES = 20  # up to this many classes a confusion matrix names them and writes each cell's count


def plain_labels(ax):
    """Tick labels drawn as given: a `$` in a class name is a character, not the start of mathtext."""
    for text in ax.get_xticklabels() + ax.get_yticklabels():
        text.set_parse_math(False)


def class_name(names, index) -> str:
    return names[index] if 0 <= index < len(names) else f"class {index}"


# -- confusion matrix ----------------------------------------------------------------------------------------------
def confusion_cells(confusion) -> list[tuple[int, int, str]]:
    """(true row, predicted column, text) for each cell: its count of test images."""
    cm = np.asarray(confusion)
    return [(i, j, str(int(cm[i, j]))) for i in range(cm.shape[0]) for j in range(cm.shape[1])]


def confusion_figure(confusion, names, plt):
    """Counts as colours with a colour bar; for up to NAMED_CLASSES classes, the count in each cell and
    class names on both axes (beyond that the text would not fit)."""
    cm = np.asarray(confusion)
    n = len(cm)
    side = min(max(4.5, 0.4 * n + 2.5), 11)
    fig, ax = plt.subplots(figsize=(side + 1, side))
    image = ax.imshow(cm, cmap="Blues", vmin=0)
    fig.colorbar(image, ax=ax, label="test images")
    ax.set_xlabel("predicted class"), ax.set_ylabel("true class"), ax.set_title("confusion matrix (counts)")
    if n <= NAMED_CLASSES:
        ax.set_xticks(range(n), names, rotation=90, fontsize=7)
        ax.set_yticks(range(n), names, fontsize=7)
        plain_labels(ax)
        dark = cm.max() / 2
        for i, j, text in confusion_cells(cm):
            ax.text(j, i, text, ha="center", va="center", fontsize=7, parse_math=False,
                    color="white" if cm[i, j] > dark else "black")
    return fig


# -- learning curves -----------------------------------------------------------------------------------------------
def epoch_numbers(values) -> np.ndarray:
    """Histories are 0-based lists of per-epoch values; people count epochs from 1."""
    return np.arange(1, len(values) + 1)


def curves_figure(history: dict, plt):
    """Loss and accuracy per epoch, training and validation, on whole-number epochs."""
    from matplotlib.ticker import MaxNLocator  # matplotlib only once a figure is drawn (the caller chose its backend)

    fig, axes = plt.subplots(1, 2, figsize=(9, 3))
    for ax, key in zip(axes, ("loss", "accuracy")):
        for name, values in (("training", history.get(key)), ("validation", history.get(f"val_{key}"))):
            if values:
                ax.plot(epoch_numbers(values), values, marker="." if len(values) <= 30 else None, label=name)
        ax.set_xlabel("epoch"), ax.set_ylabel(key)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if ax.lines:
            ax.legend()
    return fig


# -- test images with their predictions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Mark:
    symbol: str
    colour: str
    frame_width: float


RIGHT, WRONG = Mark("✓", "green", 1.5), Mark("✗", "red", 4.0)


def prediction_mark(predicted: int, true: int) -> Mark:
    return RIGHT if predicted == true else WRONG


def short_source(source: str, width: int = 24) -> str:
    """The file name part of a source (`cat/0001.jpg` -> `0001.jpg`), cut to fit under a thumbnail."""
    name = PurePosixPath(source).name or source
    return name if len(name) <= width else name[:width - 1] + "…"


def sample_figure(images, predicted, truth, names, sources, plt, shown: int = 24, seed: int = 0):
    """`shown` test images, each titled with its mark, predicted class and (true class), framed green
    when right and red when wrong, its source under it where the store recorded sources."""
    pick = np.random.default_rng(seed).choice(len(images), min(shown, len(images)), replace=False)
    fig, axes = plt.subplots(3, 8, figsize=(12, 6.5))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, pick):
        mark = prediction_mark(predicted[i], truth[i])
        ax.axis("on"), ax.set_xticks([]), ax.set_yticks([])
        ax.imshow(images[i])
        for spine in ax.spines.values():
            spine.set_edgecolor(mark.colour), spine.set_linewidth(mark.frame_width)
        ax.set_title(f"{mark.symbol} {class_name(names, predicted[i])}\n({class_name(names, truth[i])})",
                     fontsize=7, parse_math=False, color=mark.colour)
        if sources is not None:
            ax.text(0.5, -0.06, short_source(sources[i]), transform=ax.transAxes, ha="center", va="top",
                    fontsize=6, parse_math=False)
    return fig


def thumbnails_figure(images, titles: list[str], plt, sources=None, colour: str = "red", columns: int = 8):
    """A grid of thumbnails, each with its title over it and its source under it (where recorded), framed in
    `colour`: the report's misclassified images, in the order given."""
    rows = max(1, -(-len(images) // columns))
    fig, axes = plt.subplots(rows, columns, figsize=(1.5 * columns, 1.75 * rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for i, (ax, image, title) in enumerate(zip(axes.flat, images, titles)):
        ax.axis("on"), ax.set_xticks([]), ax.set_yticks([])
        ax.imshow(image)
        for spine in ax.spines.values():
            spine.set_edgecolor(colour), spine.set_linewidth(2.0)
        ax.set_title(title, fontsize=7, parse_math=False, color=colour)
        if sources is not None:
            ax.text(0.5, -0.06, short_source(sources[i]), transform=ax.transAxes, ha="center", va="top",
                    fontsize=6, parse_math=False)
    return fig


def label_curve_figure(records: list, plt):
    """Test accuracy (mean ± std over seeds) against labelled images per class, one line per saved curve; `all`
    is drawn at its labelled images per class (the training split over the classes)."""
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in records:
        sizes = r["sizes"]
        x = [s["per_class"] if s["per_class"] is not None else s["labelled"] / max(1, r.get("n_classes") or 1)
             for s in sizes]
        ax.errorbar(x, [100 * s["mean"] for s in sizes], yerr=[100 * s["std"] for s in sizes], marker="o",
                    capsize=3, label=f"{r['head']} on {r['features']} ({r['label']})")
    ax.set_xscale("log")
    ax.set_xlabel("labelled training images per class")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    legend = ax.legend(fontsize=7)
    for text in legend.get_texts():
        text.set_parse_math(False)
    return fig
