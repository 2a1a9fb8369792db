"""The report's figure of nearest neighbors: test images beside the training images whose codes are most like
theirs (similar_images.neighbor_examples), which shows what the codes take as alike.

As in report_figures, every string from data is drawn as plain text, never as mathtext, and the function takes
pyplot (set to a non-GUI backend by the caller) and returns the figure."""
import numpy as np

from .report_figures import RIGHT, WRONG, short_source


def neighbor_figure(examples: list[dict], images, plt):
    """One row per example: the test image (titled with its class), then its neighbors, each titled with its class
    and similarity, framed green when its class is the test image's and red when not. `images`: the store's images
    in store order (a numpy array, or `store.images(lazy=True)`), indexed by the examples' store rows."""
    columns = 1 + max((len(e["neighbors"]) for e in examples), default=0)
    fig, axes = plt.subplots(max(len(examples), 1), columns, figsize=(1.6 * columns, 1.9 * max(len(examples), 1)),
                             squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for row, e in zip(axes, examples):
        thumbnail(row[0], images, e["query"], f"test: {e['label']}", "black")
        row[0].text(0.5, -0.06, short_source(e["source"], 16), transform=row[0].transAxes, ha="center", va="top",
                    fontsize=6, parse_math=False)
        for ax, r, label, similarity in zip(row[1:], e["neighbors"], e["labels"], e["similarities"]):
            mark = RIGHT if label == e["label"] else WRONG
            thumbnail(ax, images, r, f"{label}\n{similarity:.3f}", mark.colour, mark.frame_width)
    fig.suptitle("test images (left) and their most similar training images by cosine similarity of the codes",
                 fontsize=8)
    return fig


def thumbnail(ax, images, row: int, title: str, colour: str, frame_width: float = 1.0):
    ax.axis("on"), ax.set_xticks([]), ax.set_yticks([])
    ax.imshow(np.asarray(images[row]))
    for spine in ax.spines.values():
        spine.set_edgecolor(colour), spine.set_linewidth(frame_width)
    ax.set_title(title, fontsize=7, parse_math=False, color=colour)
