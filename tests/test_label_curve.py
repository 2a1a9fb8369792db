"""`cnncodes curve`: accuracy against labelled images per class, from the cached codes."""
import json
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.classifiers.evaluation import label_curve as curves
from cnncodes.classifiers.evaluation.label_curve import label_curve, parse_per_class
from cnncodes.cli import cli
from cnncodes.features.errors import UserError
from cnncodes.features.folds import per_class_draw

LOGREG = {"Cs": [0.1]}


@pytest.fixture
def store(digits_store, tmp_path):
    """A copy: the curve writes STORE/curves/."""
    return shutil.copytree(digits_store, tmp_path / "digits")


def test_a_draw_takes_n_of_each_class_seeded_and_all_of_a_smaller_class():
    y = np.array([0] * 10 + [1] * 3 + [2] * 7)
    rows = per_class_draw(y, 5, seed=0)
    assert np.bincount(y[rows]).tolist() == [5, 3, 5] and np.all(np.diff(rows) > 0)
    assert np.array_equal(rows, per_class_draw(y, 5, seed=0))
    assert not np.array_equal(rows, per_class_draw(y, 5, seed=1))
    assert np.array_equal(per_class_draw(y, None, seed=3), np.arange(len(y)))


def test_more_labels_buy_accuracy_and_every_point_is_saved(store):
    record = label_curve(store, "logreg", per_class=(1, 10, None), seeds=(0, 1), params=LOGREG, progress=False)
    sizes = {s["per_class"]: s for s in record["sizes"]}
    assert [s["per_class"] for s in record["sizes"]] == [1, 10, None]
    assert sizes[1]["labelled"] == 10 and sizes[10]["labelled"] == 100 and sizes[None]["labelled"] > 1000
    assert sizes[1]["mean"] < sizes[10]["mean"] < sizes[None]["mean"]
    assert sizes[1]["seeds"] == 2 and sizes[1]["std"] > 0  # two different draws of one image per class
    two = [p["test_accuracy"] for p in record["points"] if p["per_class"] == 1]
    assert sizes[1]["std"] == pytest.approx(abs(two[0] - two[1]) / np.sqrt(2))  # the sample std (ddof=1)
    saved = json.loads(open(record["path"]).read())
    assert len(saved["points"]) == 6 and saved["sizes"] == record["sizes"]
    assert saved["code"]["source_sha256"] and saved["features"] == "r50"


def test_a_curve_run_again_reuses_its_points_and_adds_only_new_ones(store, monkeypatch):
    label_curve(store, "logreg", per_class=(1, 2), seeds=(0,), params=LOGREG, progress=False)
    fitted = []
    real = curves.fit_point
    monkeypatch.setattr(curves, "fit_point", lambda *a: fitted.append(a[7]) or real(*a))
    record = label_curve(store, "logreg", per_class=(1, 2, 5), seeds=(0,), params=LOGREG, progress=False)
    assert fitted == [5] and [s["per_class"] for s in record["sizes"]] == [1, 2, 5]
    other = label_curve(store, "logreg", per_class=(1,), seeds=(0,), params={"Cs": [1.0]}, progress=False)
    assert fitted == [5, 1]  # other parameters: nothing reused, and a file of their own
    kept = json.loads(open(record["path"]).read())  # a later, smaller request never drops the points kept
    assert other["path"] != record["path"] and [s["per_class"] for s in kept["sizes"]] == [1, 2, 5]
    label_curve(store, "logreg", per_class=(2,), seeds=(0,), params=LOGREG, progress=False)
    assert fitted == [5, 1] and len(json.loads(open(record["path"]).read())["points"]) == 3


def test_per_class_sizes_are_read_as_people_write_them():
    assert parse_per_class("10, 1,ALL,5") == (1, 5, 10, None)
    for bad in ("²", "1e3", "10000000000000000000000", "0", ""):
        with pytest.raises(UserError, match="--per-class"):
            parse_per_class(bad)


def test_the_report_names_a_curve_it_cannot_show_and_draws_the_others(store, tmp_path):
    from cnncodes.classifiers.evaluation.label_curve import saved_curves
    from cnncodes.classifiers.report.report import build_report
    from cnncodes.features.store import FeatureStore

    good = label_curve(store, "logreg", per_class=(1, 2), seeds=(0,), params=LOGREG, progress=False)
    folder = store / "curves"
    (folder / "garbled.json").write_text("{not json")
    (folder / "shapeless.json").write_text('{"sizes": [{}], "head": "logreg", "features": "r50", "label": "digit"}')
    moved = json.loads(open(good["path"]).read()) | {"fingerprint": "another"}
    (folder / "stale.json").write_text(json.dumps(moved))
    problems = {p.split("/")[-1]: c["problem"] for c in saved_curves(FeatureStore.open(store)) for p in [c["path"]]}
    assert problems[good["path"].split("/")[-1]] is None
    assert "cannot be read" in problems["garbled.json"] and "not a curve" in problems["shapeless.json"]
    assert "changed or is gone" in problems["stale.json"]
    text = build_report(store, tmp_path / "out").read_text(encoding="utf-8")
    for name in ("garbled.json", "shapeless.json", "stale.json"):
        assert f"Curve {name} left out" in text
    assert "Label budget: test accuracy" in text and (tmp_path / "out" / "label-curves.png").exists()


def test_the_cli_prints_the_table_and_refuses_bad_sizes(store):
    result = CliRunner().invoke(cli, ["curve", "--store", str(store), "--head", "logreg", "--per-class", "2,all",
                                      "--seeds", "1", "--param", "Cs=[0.1]", "--quiet"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("logreg on r50, label set digit") and "| 2 | 20 |" in result.output
    assert "| all | " in result.output and "curves" in lines[-1]
    for bad in ("0,5", "two", "5,,all"):
        result = CliRunner().invoke(cli, ["curve", "--store", str(store), "--head", "logreg", "--per-class", bad])
        assert result.exit_code != 0 and "--per-class" in result.output and "Traceback" not in result.output
    with pytest.raises(UserError, match="not a whole number from 1 to"):
        parse_per_class("-1")


def test_the_report_says_which_curve_wins_at_each_label_budget_and_by_how_much():
    from cnncodes.classifiers.report.report_codes import winners_table

    def curve(head, features, means, seconds):
        return {"head": head, "features": features, "label": "class",
                "sizes": [{"per_class": n, "mean": m, "std": 0.01, "fit_seconds": seconds, "labelled": 1, "seeds": 3}
                          for n, m in means.items()]}

    codes = curve("logreg", "lite0<b>", {10: 0.60, 100: 0.80, None: 0.84}, 5)
    pixels = curve("airbench", "pixels", {10: 0.25, 100: 0.45, None: 0.94}, 4000)
    lone = curve("dense", "other", {25: 0.7}, 9)  # a budget only one curve has: no row
    html = "".join(winners_table([codes, pixels, lone]))
    rows = html.split("<tr>")[2:]
    assert len(rows) == 3 and "<td>25</td>" not in html
    assert ("<td>10</td><td>logreg on lite0&lt;b&gt;</td><td>60.00 ± 1.00</td><td>airbench on pixels</td>"
            "<td>+35.00</td>") in rows[0]
    assert "<td>all</td><td>airbench on pixels</td><td>94.00 ± 1.00</td><td>logreg on lite0&lt;b&gt;</td><td>+10.00" \
        in rows[2] and "airbench 4000 s; logreg 5 s" in rows[2]
    assert winners_table([codes]) == []  # one curve: nothing to compare
