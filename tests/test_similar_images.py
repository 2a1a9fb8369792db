"""`cnncodes neighbors` (classifiers/similar_images.py): the stored images most like given ones, codes made as the
feature set's were; unreadable files listed, never fatal; bad input one line, the store untouched. And the report's
neighbor examples and their figure."""
import csv
import io

import cv2
import numpy as np
import pytest

from cnncodes.classifiers.serving.similar_images import neighbor_examples, similar_images
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore
from conftest import run_cli


def snapshot(folder) -> dict:
    """Every file under `folder` with its size and modification time: what a read-only command must leave as is."""
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def photos(digits_store, tmp_path_factory):
    """Three stored images written as PNG files (two training rows, one test row), a broken file."""
    folder = tmp_path_factory.mktemp("photos")
    store = FeatureStore.open(digits_store)
    rows = {"a.png": 10, "b.png": 700, "c.png": store.rows("test").start + 5}
    images = store.images()
    for name, row in rows.items():
        cv2.imwrite(str(folder / name), cv2.cvtColor(images[row], cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    return folder, rows


def test_a_stored_image_finds_itself_first_at_similarity_one_and_unreadable_files_are_listed(digits_store, photos):
    folder, rows = photos
    store = FeatureStore.open(digits_store)
    paths = [str(folder / n) for n in ("a.png", "broken.jpg", "b.png", "c.png")] + [str(folder / "gone.png")]
    name, lookups = similar_images(digits_store, paths, k=4, split="all")
    assert name == "r50" and [l.path for l in lookups] == paths
    assert [l.error for l in lookups][1].startswith("not a readable image") and lookups[4].error == "not found"
    assert lookups[1].neighbors == [] and lookups[4].neighbors == []
    images, labels, names = store.images(), store.labels(), store.class_names()
    sources = store.sources()
    for lookup, row in zip([lookups[0], lookups[2], lookups[3]], rows.values()):
        first = lookup.neighbors[0]
        assert first.rank == 1 and first.similarity == pytest.approx(1.0, abs=1e-5)
        assert np.array_equal(images[first.row], images[row])  # the image itself (or a pixel-identical copy)
        assert first.label == names[labels[row]] and first.source == sources[first.row]
        assert first.split == ("test" if row >= store.rows("test").start else "train")
        assert [n.rank for n in lookup.neighbors] == [1, 2, 3, 4]
        assert all(a.similarity >= b.similarity for a, b in zip(lookup.neighbors, lookup.neighbors[1:]))
    _, chunked = similar_images(digits_store, paths, k=4, split="all", chunk=2)
    assert [[n.row for n in l.neighbors] for l in chunked] == [[n.row for n in l.neighbors] for l in lookups]


def test_the_command_prints_or_writes_a_csv_and_exits_1_when_a_file_cannot_be_read(digits_store, photos, tmp_path):
    folder, rows = photos
    before = snapshot(digits_store)
    out = tmp_path / "neighbors.csv"
    done = run_cli("neighbors", "--store", digits_store, "--k", 2, "--out", out, "--quiet", folder)
    assert done.returncode == 1 and "3 of 4 inputs searched" in done.stderr and "1 could not be used" in done.stderr
    lines = list(csv.DictReader(out.open()))
    assert list(lines[0]) == ["path", "rank", "similarity", "split", "label", "source", "row", "error"]
    by_path = {}
    for line in lines:
        by_path.setdefault(line["path"], []).append(line)
    assert by_path[str(folder / "broken.jpg")][0]["error"].startswith("not a readable image")
    first = by_path[str(folder / "a.png")][0]
    assert first["rank"] == "1" and float(first["similarity"]) > 0.9999 and first["split"] == "train"
    assert len(by_path[str(folder / "b.png")]) == 2
    test_start = FeatureStore.open(digits_store).rows("test").start  # the test image c.png finds training rows only:
    assert all(l["split"] == "train" and int(l["row"]) < test_start for l in lines if not l["error"])  # --split train
    printed = run_cli("neighbors", "--store", digits_store, "-k", 1, "--quiet", folder / "a.png")
    assert printed.returncode == 0, printed.stderr
    header, path, neighbor = printed.stdout.splitlines()
    assert header.startswith("most similar train images by cosine similarity of r50 codes")
    assert path == f"{folder / 'a.png'}:" and neighbor.split("\t")[:3] == ["  1", "1.000", "train"]
    assert neighbor.split("\t")[3] == first["row"]  # the store row, printed too: a sourceless store's only pointer
    assert snapshot(digits_store) == before  # nothing in the store changed


@pytest.mark.parametrize("args, says", [
    (["--k", 0], r"Invalid value for '-k' / '--k': 0 is not in the range x>=1"),
    (["--features", "nope"], r"no feature set 'nope' in .* \(complete: r50\)"),
    (["--split", "valid"], r"Invalid value for '--split'"),
])
def test_bad_input_is_one_line_and_leaves_the_store_as_it_was(digits_store, photos, args, says):
    import re

    folder, _ = photos
    before = snapshot(digits_store)
    done = run_cli("neighbors", "--store", digits_store, *args, folder / "a.png")
    assert done.returncode != 0 and done.stdout == "" and done.stderr.count("\n") == 1
    assert done.stderr.startswith("error: ") and re.search(says, done.stderr), done.stderr
    assert snapshot(digits_store) == before


def test_a_store_without_feature_sets_and_a_bad_k_from_python_are_one_line(digits_store, tmp_path, photos):
    import shutil

    folder, _ = photos
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copy(digits_store / "data.h5", bare / "data.h5")
    done = run_cli("neighbors", "--store", bare, folder / "a.png")
    assert done.returncode == 1 and done.stderr == (f"error: {bare} has no feature sets yet: run `cnncodes features "
                                                    f"--store {bare} ...` first\n")
    with pytest.raises(UserError, match="--k 0: ask for at least 1 neighbor"):
        similar_images(digits_store, [str(folder / "a.png")], k=0)
    with pytest.raises(UserError, match="--split 'valid': choose one of train, test, all"):
        similar_images(digits_store, [str(folder / "a.png")], split="valid")


def brute_force(codes, queries, k):
    unit = codes / np.linalg.norm(codes, axis=1, keepdims=True)
    s = unit[queries] @ unit[:1438].T  # the digits store's 1,438 training rows come first
    return np.lexsort((np.broadcast_to(np.arange(s.shape[1]), s.shape), -s), axis=1)[:, :k], s


def test_neighbor_examples_are_a_seeded_draw_of_test_rows_and_their_nearest_training_rows(digits_store):
    store = FeatureStore.open(digits_store)
    examples = neighbor_examples(store, "r50", rows=4, k=3, seed=1)
    assert examples == neighbor_examples(digits_store, "r50", rows=4, k=3, seed=1)  # a path works too
    assert [e["query"] for e in examples] != [e["query"] for e in neighbor_examples(store, "r50", 4, 3, seed=2)]
    queries = [e["query"] for e in examples]
    assert len(queries) == 4 and all(q >= store.rows("test").start for q in queries) and queries == sorted(queries)
    index, s = brute_force(store.features("r50"), queries, 3)
    names, labels, sources = store.class_names(), store.labels(), store.sources()
    for e, expected, sims in zip(examples, index, s):
        assert e["neighbors"] == expected.tolist()
        np.testing.assert_allclose(e["similarities"], sims[expected], atol=1e-5)
        assert e["labels"] == [names[labels[r]] for r in expected] and e["label"] == names[labels[e["query"]]]
        assert e["sources"] == [sources[r] for r in expected] and e["source"] == sources[e["query"]]


def test_the_figure_shows_each_query_then_its_neighbors_titled_with_class_and_similarity(digits_store):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from cnncodes.classifiers.report.neighbor_figures import neighbor_figure

    store = FeatureStore.open(digits_store)
    examples = neighbor_examples(store, "r50", rows=2, k=3)
    examples[0]["labels"][1] = "$x$"  # a class name from data is drawn as text, not mathtext
    fig = neighbor_figure(examples, store.images(lazy=True), plt)
    rows = np.array(fig.axes).reshape(2, 4)
    for axes, e in zip(rows, examples):
        assert axes[0].get_title() == f"test: {e['label']}"
        for ax, label, similarity in zip(axes[1:], e["labels"], e["similarities"]):
            assert ax.get_title() == f"{label}\n{similarity:.3f}"
            colour = "#008000" if label == e["label"] else "#ff0000"
            assert matplotlib.colors.to_hex(ax.spines["top"].get_edgecolor()) == colour
    assert np.array_equal(rows[0][0].images[0].get_array(), store.images()[examples[0]["query"]])
    fig.savefig(io.BytesIO(), format="png")  # draws: "$x$" would raise as mathtext
    plt.close(fig)
