"""The codes in two dimensions, for the report's map: PCA by default (scikit-learn, seconds), UMAP with the `map`
extra (umap-learn, which keeps neighborhoods where PCA keeps only the widest spreads). A seeded sample of at
most MAX_POINTS rows keeps the projection quick and the figure readable."""
import numpy as np
from sklearn.decomposition import PCA
from sklearn.preprocessing import StandardScaler

from cnncodes.features.errors import UserError

METHODS = ("pca", "umap")
MAX_POINTS = 5000
UMAP_INPUT_DIMS = 50  # UMAP on the first principal components: its neighbor search is quicker, its map the same


def sample_rows(n: int, most: int = MAX_POINTS, seed: int = 0) -> np.ndarray:
    """Sorted rows: all n, or a seeded draw of `most`."""
    if n <= most:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, most, replace=False))


def project(X, method: str = "pca", seed: int = 0) -> np.ndarray:
    """(rows, 2): the standardised codes (each dimension on one scale, so a few loud ones do not set the map)
    projected by `method`."""
    if method not in METHODS:
        raise UserError(f"unknown map {method!r}: use one of {', '.join(METHODS)}")
    X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
    if len(X) < 3:
        raise UserError(f"a map needs at least 3 images with codes; this one has {len(X)}")
    X = StandardScaler().fit_transform(X)
    if method == "pca":
        return PCA(2, random_state=seed).fit_transform(X).astype(np.float32)
    umap = require_umap()
    X = PCA(min(UMAP_INPUT_DIMS, *X.shape), random_state=seed).fit_transform(X)
    # spectral initialisation needs more points than a handful (scipy's eigh refuses k >= N): random below that
    reducer = umap.UMAP(n_components=2, n_neighbors=min(15, len(X) - 1), random_state=seed, n_jobs=1,
                        init="spectral" if len(X) > 16 else "random")
    return reducer.fit_transform(X).astype(np.float32)


def require_umap():
    """umap-learn, or one line naming the extra that brings it (asked before any work: `report --map umap`)."""
    try:
        import umap
    except ImportError:
        raise UserError("--map umap needs umap-learn, which is not installed: pip install 'cnncodes[map]', or use "
                        "--map pca") from None
    except Exception as e:  # installed but broken (a numba that does not load, say)
        raise UserError(f"--map umap: umap-learn is installed but cannot be imported ({type(e).__name__}: {e}): "
                        f"reinstall it (pip install 'cnncodes[map]'), or use --map pca") from None
    if not hasattr(umap, "UMAP"):
        raise UserError("--map umap: the umap module found is not umap-learn's (it has no UMAP): pip install "
                        "'cnncodes[map]', or use --map pca")
    return umap


def class_colour(c: int, n: int, plt):
    """Class c's colour among n: tab10's or tab20's own up to 20 classes, where each is told apart by name in the
    legend; beyond, spread along one continuous map (turbo), so no two classes share a colour."""
    if n <= 20:
        cmap = plt.get_cmap("tab20" if n > 10 else "tab10")
        return cmap(c % cmap.N)
    return plt.get_cmap("turbo")(c / max(n - 1, 1))


def map_figure(xy: np.ndarray, labels: np.ndarray, names: list, marks: dict, plt, title: str = ""):
    """Points coloured by class (a legend of class names up to 20 classes, beyond a line in the title saying what
    the colour is), and per entry of `marks` ({what: boolean mask}) a ring around the points it flags, in its own
    colour."""
    fig, ax = plt.subplots(figsize=(8, 6.5))
    for c in np.unique(labels):
        here = labels == c
        ax.scatter(xy[here, 0], xy[here, 1], s=6, color=class_colour(int(c), len(names), plt), alpha=0.7,
                   linewidths=0, label=(str(names[c]) if c < len(names) else str(c)) if len(names) <= 20 else None)
    if len(names) > 20:  # a legend of more names than distinct colours tells nothing: say what the colour is
        title = f"{title}\ncolour: class ({len(names)} classes, from the first (blue) to the last (red))".strip()
    for (what, mask), colour in zip(marks.items(), ("black", "red", "darkorange", "purple")):
        if np.any(mask):
            ax.scatter(xy[mask, 0], xy[mask, 1], s=28, facecolors="none", edgecolors=colour, linewidths=0.8,
                       label=f"{what} ({int(np.sum(mask))})")
    ax.set_xticks([]), ax.set_yticks([])
    ax.set_title(title, fontsize=9, parse_math=False)
    if ax.get_legend_handles_labels()[0]:  # none with many classes and nothing marked
        legend = ax.legend(fontsize=7, markerscale=2, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
        for text in legend.get_texts():
            text.set_parse_math(False)  # class names from data are plain text, never mathtext
    return fig
