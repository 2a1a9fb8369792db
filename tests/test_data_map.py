"""The report's map of the codes (PCA, or UMAP with the extra) and its label-budget section."""
import shutil

import numpy as np
import pytest

from cnncodes.classifiers.evaluation.fit import fit_head
from cnncodes.classifiers.evaluation.label_curve import label_curve
from cnncodes.classifiers.report import report, report_codes
from cnncodes.classifiers.report.data_map import class_colour, map_figure, project, sample_rows
from cnncodes.features.errors import UserError


def blobs(n=60, dim=30, seed=0):
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n // 3)
    centres = rng.normal(0, 6, (3, dim))
    return (centres[y] + rng.normal(0, 1, (len(y), dim))).astype(np.float32), y


def separated(xy, y) -> bool:
    """Each point's nearest other point in the map is of its own class."""
    d = np.linalg.norm(xy[:, None] - xy[None], axis=2)
    np.fill_diagonal(d, np.inf)
    return bool((y[d.argmin(1)] == y).all())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["pca", "umap"])
def test_the_map_keeps_classes_apart(method):
    X, y = blobs()
    xy = project(X, method)
    assert xy.shape == (len(X), 2) and np.isfinite(xy).all() and separated(xy, y)
    assert np.allclose(xy, project(X, method), atol=1e-4)  # seeded


def test_a_bad_map_request_is_one_line():
    X, _ = blobs()
    with pytest.raises(UserError, match="unknown map 'tsne': use one of pca, umap"):
        project(X, "tsne")
    with pytest.raises(UserError, match="at least 3 images"):
        project(X[:2])


def test_a_sample_is_sorted_seeded_and_whole_when_small():
    assert sample_rows(10, most=20).tolist() == list(range(10))
    rows = sample_rows(1000, most=50, seed=1)
    assert len(rows) == 50 and np.all(np.diff(rows) > 0) and np.array_equal(rows, sample_rows(1000, most=50, seed=1))


def test_the_report_draws_the_map_with_the_runs_mistakes_and_the_label_curve(digits_store, tmp_path, monkeypatch):
    store = shutil.copytree(digits_store, tmp_path / "digits")
    run, record = fit_head(store, "logreg", params={"Cs": [0.1]})
    label_curve(store, "logreg", per_class=(1, 5), seeds=(0,), params={"Cs": [0.1]}, progress=False)
    drawn = {}
    real = report_codes.map_figure
    monkeypatch.setattr(report_codes, "map_figure", lambda xy, labels, names, marks, plt, title: drawn.update(
        xy=xy, marks=marks, title=title) or real(xy, labels, names, marks, plt, title))
    text = report.build_report(store, tmp_path / "out").read_text(encoding="utf-8")
    assert "Map of the codes" in text and (tmp_path / "out" / "map.png").exists()
    (mask,) = drawn["marks"].values()
    wrong = np.asarray(record["test_predictions"]) != np.asarray(report.FeatureStore.open(store).labels(split="test"))
    assert len(drawn["xy"]) == len(wrong) and np.array_equal(mask, wrong) and mask.any()
    assert "PCA of r50" in drawn["title"]
    assert "Nearest training images" in text and (tmp_path / "out" / "neighbours.png").exists()
    assert "Label budget" in text and (tmp_path / "out" / "label-curves.png").exists()
    assert "<td>1</td><td>10</td><td>1</td>" in text and "<td>5</td><td>50</td><td>1</td>" in text


def test_every_class_has_its_own_colour_and_a_legend_only_while_names_can_be_told_apart():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for n in (10, 20, 100):
        colours = {class_colour(c, n, plt) for c in range(n)}
        assert len(colours) == n, f"{n} classes share {n - len(colours)} colours"
    xy = np.random.default_rng(0).normal(size=(300, 2)).astype(np.float32)
    for n, legend_entries in ((20, 20), (100, 0)):
        labels = np.arange(300) % n
        fig = map_figure(xy, labels, [f"c{i}" for i in range(n)], {}, plt)
        legend = fig.axes[0].get_legend()
        assert (0 if legend is None else len(legend.get_texts())) == legend_entries
        assert ("colour: class (100 classes" in fig.axes[0].get_title()) == (n == 100)
        plt.close(fig)
