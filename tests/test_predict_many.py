"""`cnncodes predict` over many images: files, folders, globs and lists; chunked; a CSV; unreadable files
listed with their reason and the exit status, never fatal to the rest."""
import csv
import shutil

import cv2
import numpy as np
import pytest

from conftest import run_cli
from cnncodes.features.store import FeatureStore


@pytest.fixture(scope="module")
def photos(digits_store, tmp_path_factory):
    """A logreg run on the digits store, and a folder of its first test images (two in a subfolder), a broken
    file, and a wide image that the ingest rule scales and crops."""
    from cnncodes.classifiers.fit import fit_head

    root = tmp_path_factory.mktemp("predict")
    store = shutil.copytree(digits_store, root / "store")
    run, record = fit_head(store, "logreg", params={"Cs": [0.1]}, log=lambda m: None)
    images = FeatureStore.open(store).images(split="test")
    folder = root / "photos"
    (folder / "sub").mkdir(parents=True)
    for i in range(6):
        cv2.imwrite(str(folder / ("sub" if i >= 4 else "") / f"{i}.png"), cv2.cvtColor(images[i], cv2.COLOR_RGB2BGR))
    (folder / "broken.jpg").write_bytes(b"not a jpeg")
    cv2.imwrite(str(folder / "wide.png"), cv2.resize(images[0], (40, 20)))
    return run, record, folder


def test_folders_globs_and_lists_are_expanded_and_unreadable_files_listed_not_fatal(photos, tmp_path):
    run, record, folder = photos
    listing = tmp_path / "list.txt"
    listing.write_text(f"# my photos\n{folder / '0.png'}\n\n{folder / 'gone.png'}\n")
    done = run_cli("predict", "--model", run, "--top", 2, folder, f"{folder}/sub/*.png", listing, "--quiet")
    assert done.returncode == 1  # two could not be read
    lines = done.stdout.splitlines()[1:]
    named = [l.split(": ")[0] for l in lines]
    assert named == [str(folder / n) for n in ("0.png", "1.png", "2.png", "3.png", "broken.jpg", "sub/4.png",
                                               "sub/5.png", "wide.png", "sub/4.png", "sub/5.png", "0.png",
                                               "gone.png")]
    by_name = dict(l.split(": ", 1) for l in lines)
    assert by_name[str(folder / "broken.jpg")].startswith("cannot be used: not a readable image")
    assert by_name[str(folder / "gone.png")] == "cannot be used: not found"
    first = record["class_names"][record["test_predictions"][0]]
    assert by_name[str(folder / "0.png")].startswith(first + " ")
    assert "10 of 12 images classified" in done.stderr and "2 could not be read" in done.stderr


def test_the_csv_has_the_top_k_and_the_reasons_and_chunks_change_nothing(photos, tmp_path):
    from cnncodes.classifiers.predict import expand_inputs, predict_files

    run, record, folder = photos
    out = tmp_path / "predictions.csv"
    done = run_cli("predict", "--model", run, "--top", 3, "--out", out, folder, "--quiet")
    assert done.returncode == 1 and out.exists()
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0]) == ["path", "class", "score", "class_2", "score_2", "class_3", "score_3", "error"]
    assert len(rows) == 8 and sum(bool(r["error"]) for r in rows) == 1
    good = [r for r in rows if not r["error"]]
    assert all(float(r["score"]) >= float(r["score_2"]) >= float(r["score_3"]) for r in good)
    # one chunk or many, the same answers in the same order
    paths = expand_inputs([str(folder)])
    _, whole = predict_files(run, paths, top=3)
    _, chunked = predict_files(run, paths, top=3, chunk=2)
    assert [(p.path, p.error) for p in whole] == [(p.path, p.error) for p in chunked]
    for a, b in zip(whole, chunked):
        assert [n for n, _ in a.top] == [n for n, _ in b.top]
        assert np.allclose([s for _, s in a.top], [s for _, s in b.top], atol=1e-6)
    assert [r["class"] for r in rows] == [p.top[0][0] if p.top else "" for p in whole]
    again = run_cli("predict", "--model", run, "--out", out, folder)  # never over an earlier result
    assert again.returncode == 1 and "already exists" in again.stderr


def test_nothing_to_predict_is_one_line(photos, tmp_path):
    run, _, _ = photos
    (tmp_path / "empty").mkdir()
    done = run_cli("predict", "--model", run, tmp_path / "empty", f"{tmp_path}/*.jpg")
    assert done.returncode == 1 and done.stderr.strip().count("\n") == 0 and "no images in" in done.stderr
