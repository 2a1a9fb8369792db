"""`cnncodes predict` over many images: files, folders, globs and lists; chunked; a CSV; unreadable files
listed with their reason and the exit status, never fatal to the rest."""
import csv
import os
import shutil

import cv2
import numpy as np
import pytest

from cnncodes.features.store import FeatureStore
from conftest import run_cli


@pytest.fixture(scope="module")
def photos(digits_store, tmp_path_factory):
    """A logreg run on the digits store, and a folder of its first test images (two in a subfolder), a broken
    file, and a wide image that the ingest rule scales and crops."""
    from cnncodes.classifiers.evaluation.fit import fit_head

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
    assert "10 of 12 inputs classified" in done.stderr and "2 could not be used" in done.stderr


def test_the_csv_has_the_top_k_and_the_reasons_and_chunks_change_nothing(photos, tmp_path):
    from cnncodes.classifiers.serving.image_inputs import expand_inputs
    from cnncodes.classifiers.serving.predict import predict_files

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


def invoke(*args):
    from click.testing import CliRunner

    from cnncodes.cli import cli

    return CliRunner().invoke(cli, [str(a) for a in args])


def test_every_input_is_one_row_with_a_reason_where_it_gave_no_image(photos, tmp_path):
    """An unmatched glob, an empty folder and a broken link are rows of the answer, not silently dropped."""
    run, _, folder = photos
    mixed = tmp_path / "mixed"
    shutil.copytree(folder / "sub", mixed)
    (mixed / "gone.png").symlink_to(tmp_path / "nowhere.png")
    (mixed / "up").symlink_to(mixed)  # a folder loop: walked once
    (tmp_path / "empty").mkdir()
    out = tmp_path / "p.csv"
    done = invoke("predict", "--model", run, "--out", out, "--quiet", mixed, tmp_path / "empty", f"{tmp_path}/*.gif",
                  folder / "0.png")
    assert done.exit_code == 1
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["path"] for r in rows] == [str(mixed / "4.png"), str(mixed / "5.png"), str(mixed / "gone.png"),
                                         str(tmp_path / "empty"), f"{tmp_path}/*.gif", str(folder / "0.png")]
    reasons = [r["error"] for r in rows]
    assert reasons[:2] == ["", ""] and reasons[5] == "" and reasons[2].startswith("a broken link")
    assert reasons[3].startswith("a folder holding no images") and reasons[4] == "no file matches this pattern"
    assert "3 of 6 inputs classified" in done.stderr and "3 could not be used" in done.stderr


def test_csv_cells_are_never_formulas_and_undecodable_names_do_not_crash(photos, tmp_path, monkeypatch):
    run, _, folder = photos
    evil = '=HYPERLINK("http:evil","x").png'
    raw = os.fsencode(tmp_path) + b"/caf\xe9.png"  # a file name that is not UTF-8
    shutil.copy(folder / "0.png", tmp_path / evil)
    shutil.copy(folder / "1.png", raw.decode("utf-8", "surrogateescape"))
    monkeypatch.chdir(tmp_path)  # relative names: the cell starts as the file name does
    done = invoke("predict", "--model", run, "--out", "p.csv", "--quiet", evil, os.fsdecode(raw))
    assert done.exit_code == 0, done.output
    rows = list(csv.reader((tmp_path / "p.csv").open(encoding="utf-8")))
    assert rows[1][0] == "'" + evil and rows[2][0] == str(tmp_path / "caf\\xe9.png")
    assert not list(tmp_path.glob(".*partial"))
    shown = invoke("predict", "--model", run, "--quiet", os.fsdecode(raw))  # the console too
    assert shown.exit_code == 0 and "caf\\xe9.png: " in shown.output


def test_an_out_file_another_command_wrote_meanwhile_is_kept_and_the_run_says_so(photos, tmp_path, monkeypatch):
    from cnncodes.classifiers.serving import predict

    run, _, folder = photos
    out = tmp_path / "p.csv"
    real = predict.predict_files

    def racing(*args, **kwargs):  # another `predict --out p.csv` finishes first, while this one works
        found = real(*args, **kwargs)
        out.write_text("the other run's rows")
        return found

    monkeypatch.setattr(predict, "predict_files", racing)
    done = invoke("predict", "--model", run, "--out", out, "--quiet", folder / "0.png")
    assert done.exit_code == 1 and "it appeared while this command ran" in done.output
    assert out.read_text() == "the other run's rows" and [p.name for p in tmp_path.iterdir()] == ["p.csv"]
