"""Reports that cannot mislead (issues 13, 14): runs are what fit/baseline made on the test split, per-fold
baselines belong to their k-fold table, repeats show the latest (never the best test accuracy), rankings
use validation or k-fold scores, and the figures explain themselves. Records are written by hand on a
digits store without features: nothing here trains."""
import json
import shutil
from dataclasses import asdict

import matplotlib
import numpy as np
import pytest

from cnncodes.classifiers.evaluation.kfold import run_params
from cnncodes.classifiers.heads.svm import LinearSVM
from cnncodes.classifiers.report import report_figures
from cnncodes.classifiers.report.report import build_report, esc
from cnncodes.classifiers.runs.records import all_runs, classification_record, format_runs, latest_runs
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features.sealed import read_sealed, write_sealed
from cnncodes.features.store import FeatureStore

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def digits_images(tmp_path_factory):
    """The 1,797 digits ingested (about a second), no feature set: the report only needs test images and labels."""
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    store = tmp_path_factory.mktemp("report") / "digits"
    ingest(store, IngestConfig("digits"), progress=False, log=lambda m: None)
    return store


@pytest.fixture
def store(digits_images, tmp_path):
    shutil.copytree(digits_images, tmp_path / "store")
    return tmp_path / "store"


def write_record(store, folder, *, test=0.9, created="2026-01-01T00:00:00", rows=None, **fields):
    """A run record as `fit` writes it, predicting the test split with accuracy `test` (or `rows`
    predictions of a fold, for a per-fold baseline)."""
    s = FeatureStore.open(store)
    truth = s.labels("digit", split="test")[:rows] if rows else s.labels("digit", split="test")
    predicted = truth.copy()
    wrong = round((1 - test) * len(truth))
    predicted[:wrong] = (truth[:wrong] + 1) % 10
    record = {"kind": "fit", "head": "logreg", "label": "digit", "features": "r50", "fingerprint": "f1",
              "class_names": s.class_names("digit"), "params": {"Cs": [0.1, 1.0]}, "fit_seconds": 1.5,
              "train_accuracy": 0.99, "created": created, **classification_record(truth, predicted, 10), **fields}
    run = store / "runs" / folder
    run.mkdir(parents=True)
    write_sealed(run / "record.json", record)
    return run


def percent_of(run) -> str:
    """The run's test accuracy as the tables print it (359 test images: 0.95 is 94.99%)."""
    return f"{100 * json.loads((run / 'record.json').read_text())['test_accuracy']:.2f}"


def write_kfold_table(store, features, rows, k=3):
    """`rows`: (head, mean) with write_record's default parameters, or (head, mean, every parameter)."""
    folder = store / "runs" / f"kfold-{features}-k{k}-train"
    folder.mkdir(parents=True)
    table = {"kind": "kfold", "features": features, "fingerprint": None, "k": k, "on": "train", "wall_seconds": 9.0,
             "rows": [{"head": head, "label": "digit", "folds": [mean] * k, "mean": mean, "std": 0.01, "seconds": 3.0,
                       "params": params[0] if params else {"Cs": [0.1, 1.0]}} for head, mean, *params in rows]}
    write_sealed(folder / "table.json", table)


def runs_table(page) -> str:
    """The runs table's HTML."""
    return page.read_text(encoding="utf-8").split("<h2>Runs</h2>")[1].split("</table>")[0]


def test_report_after_a_baseline_kfold_shows_its_table_not_its_fold_records_as_runs(store):
    folds = [write_record(store, f"2026010{f}-000000-baseline-cnn-digit-abc{f}", kind="baseline", head="cnn",
                          features="pixels 8px", rows=200, params={"kind": "cnn", "fold": f, "k": 3})
             for f in range(3)]
    write_kfold_table(store, "pixels", [("cnn", 0.87)])
    assert latest_runs(store) == [] and format_runs(all_runs(store)).count("\n") == 1  # the header alone
    text = build_report(store).read_text(encoding="utf-8")
    assert "No runs yet" in text and "3-fold on train, features pixels" in text
    assert "<th>fold 0 (%)</th>" in text and "<th>mean ± std (%)</th>" in text
    assert "87.00 ± 1.00" in text and "The 3 per-fold baseline runs in the store belong to these tables" in text
    assert not any(f.name in text for f in folds)

    fit = write_record(store, "20260105-000000-fit-logreg-digit")  # with a run, the samples are of it
    text = build_report(store).read_text(encoding="utf-8")
    assert fit.name in text and not any(f.name in text for f in folds) and "Sample test images" in text


def test_repeated_runs_of_one_configuration_show_the_latest_not_the_best(store):
    older = write_record(store, "20260101-000000-fit-logreg-digit", test=0.95, created="2026-01-01T00:00:00")
    newer = write_record(store, "20260102-000000-fit-logreg-digit", test=0.80, created="2026-01-02T00:00:00")
    (latest,) = latest_runs(store)
    assert latest["run"] == str(newer) and latest["configuration_runs"] == 2
    assert [r["run"] for r in latest_runs(store, every=True)] == [str(newer), str(older)]
    best, shown = percent_of(older), percent_of(newer)
    text = format_runs(latest_runs(store))
    assert shown in text and best not in text

    table = runs_table(build_report(store))
    assert f"<td>{shown}</td>" in table and best not in table and "<td>2</td>" in table  # 2 runs of it
    text = (store / "report" / "index.html").read_text(encoding="utf-8")
    assert "All 2 runs of this configuration" in text and older.name in text  # shown, never picked from


def test_rankings_use_validation_or_kfold_scores_never_test_accuracy(store):
    write_record(store, "a-svm", head="svm", test=0.95, validation_accuracy=0.80)
    write_record(store, "b-logreg", head="logreg", test=0.85, validation_accuracy=0.90)
    write_record(store, "c-cnn", kind="baseline", head="cnn", features="pixels 8px", test=0.70,
                 validation_accuracy=None,  # a baseline without --patience: ranked by its k-fold mean
                 params=asdict(BaselineConfig("cnn", label="digit", epochs=2)))
    write_record(store, "d-dense", head="dense", test=0.99)  # no validation score, no k-fold table: last
    write_kfold_table(store, "pixels", [("cnn", 0.85, run_params("cnn", {"epochs": 2}))])  # as kfold writes it
    assert [r["head"] for r in latest_runs(store)] == ["logreg", "cnn", "svm", "dense"]

    lines = format_runs(latest_runs(store)).splitlines()
    assert "validation accuracy (%)" in lines[0] and "test accuracy (%)" in lines[0] and "label set" in lines[0]
    assert [line.split()[0] for line in lines[1:]] == ["logreg", "cnn", "svm", "dense"]
    assert "85.00 ± 1.00 (3-fold on train)" in lines[2]

    table = runs_table(build_report(store))
    for column in ("validation accuracy (%)", "test accuracy (%)", "train accuracy (%)", "fit time (s)", "label set"):
        assert f"<th>{column}</th>" in table
    rows = table.split("<tr>")[2:]
    assert [row.split("<td>")[3].split("</td>")[0] for row in rows] == ["logreg", "cnn", "svm", "dense"]
    assert [row.split("<td>")[2].split("</td>")[0] for row in rows] == ["validation", "k-fold mean", "validation",
                                                                        "unranked"]


def test_a_kfold_mean_is_shown_only_beside_runs_of_the_same_parameters(store):
    svm = LinearSVM().get_params()  # every parameter, as fit records them
    fixed = write_record(store, "20260101-000000-fit-svm-digit", head="svm", params={**svm, "C": 0.01}, test=0.95)
    others = [
        write_record(store, "20260101-000001-fit-svm-digit", head="svm",
                     params={**svm, "C": 0.01, "probability": True}),
        write_record(store, "20260101-000002-fit-svm-digit", head="svm", params=svm),  # C cross-validated
        write_record(store, "20260101-000003-fit-svm-digit", head="svm", params={**svm, "C": 0.01},
                     spatial=True),  # k-fold runs on the pooled codes, never on spatial maps
    ]
    write_kfold_table(store, "r50", [("svm", 0.77, run_params("svm", {"C": 0.01})),
                                     ("svm", 0.55)])  # a row without parameters (an older table) matches no run
    runs = latest_runs(store)
    assert {r["run"]: kfold_scores_beside(r, store) for r in runs} == {
        str(fixed): ["77.00 ± 1.00 (3-fold on train)"], **{str(run): [] for run in others}}

    lines = format_runs(runs).splitlines()[1:]
    (shown,) = [line for line in lines if "3-fold" in line]
    assert len(lines) == 4 and percent_of(fixed) in shown
    assert sum("r50 (spatial maps)" in line for line in lines) == 1  # the spatial run tells itself apart
    table = runs_table(build_report(store))
    assert table.count("77.00 ± 1.00") == 1 and "55.00" not in table

    other_code = write_record(store, "20251231-000000-fit-svm-digit", head="svm", params={**svm, "C": 0.01},
                              created="2025-12-31T00:00:00", code={"source_sha256": "made-by-other-code"})
    views = write_record(store, "20260101-000004-fit-svm-digit", head="svm", params={**svm, "C": 0.01}, views=2)
    assert kfold_scores_beside(read_sealed(other_code / "record.json"), store) == []  # the table's code kept none
    assert kfold_scores_beside(read_sealed(views / "record.json"), store) == []  # its table would be its own
    assert "r50 (+ 2 views)" in format_runs(latest_runs(store))


def kfold_scores_beside(run, store) -> list[str]:
    from cnncodes.classifiers.runs.ranking import cross_validated_scores, cross_validated_text
    from cnncodes.classifiers.runs.records import kfold_tables

    return [cross_validated_text([s]) for s in cross_validated_scores(run, kfold_tables(store))]


def test_confusion_matrix_has_counts_class_names_and_a_colour_bar():
    cm = [[5, 1, 0], [2, 7, 0], [0, 0, 9]]
    names = ["$x$", "b", "c"]
    fig = report_figures.confusion_figure(cm, names, plt)
    ax, bar = fig.axes
    assert [t.get_text() for t in ax.texts] == ["5", "1", "0", "2", "7", "0", "0", "0", "9"]
    assert [t.get_text() for t in ax.get_xticklabels()] == names == [t.get_text() for t in ax.get_yticklabels()]
    assert bar.get_ylabel() == "test images"
    plt.close(fig)

    big = report_figures.confusion_figure(np.eye(30, dtype=int), [str(i) for i in range(30)], plt)
    assert len(big.axes) == 2 and len(big.axes[0].texts) == 0  # too many classes to write in: colours and bar only
    plt.close(big)


def test_learning_curves_count_epochs_from_one_in_whole_numbers():
    fig = report_figures.curves_figure({"loss": [0.9, 0.5, 0.4], "val_loss": [1.0, 0.7, 0.6],
                                        "accuracy": [0.5, 0.7, 0.8]}, plt)
    loss, accuracy = fig.axes
    assert [list(line.get_xdata()) for line in loss.lines] == [[1, 2, 3], [1, 2, 3]]
    assert [line.get_label() for line in loss.lines] == ["training", "validation"]
    assert all(float(x).is_integer() for x in loss.get_xticks())
    plt.close(fig)


def test_the_sample_grid_marks_wrong_predictions():
    assert report_figures.prediction_mark(3, 3) == report_figures.Mark("✓", "green", 1.5)
    wrong = report_figures.prediction_mark(2, 3)
    assert wrong.symbol == "✗" and wrong.colour == "red"

    images = np.zeros((2, 8, 8, 3), np.uint8)
    fig = report_figures.sample_figure(images, [1, 0], np.array([1, 1]), ["<b>zero", "one"], ["a/x.png", "b/y.png"],
                                       plt)
    titles = {ax.get_title(): ax for ax in fig.axes if ax.get_title()}
    assert set(titles) == {"✓ one\n(one)", "✗ <b>zero\n(one)"}
    assert matplotlib.colors.to_hex(titles["✗ <b>zero\n(one)"].spines["top"].get_edgecolor()) == "#ff0000"
    assert [t.get_text() for ax in titles.values() for t in ax.texts] == ["x.png", "y.png"]  # sources kept
    plt.close(fig)


SCRIPT = "<script>alert(1)</script>"


def test_report_escapes_hostile_strings_in_records(store):
    write_record(store, "20260101-000000-fit-x", head=SCRIPT, features='"><img src=x onerror=alert(1)>',
                 params={SCRIPT: SCRIPT}, chosen={"C": SCRIPT}, validation_accuracy=0.5,
                 code={"commit": SCRIPT, "version": SCRIPT})
    write_record(store, "20260101-000001-fit-x", head=SCRIPT, features="r50", params={SCRIPT: 1})
    text = build_report(store).read_text(encoding="utf-8")
    assert "<script" not in text and "<img src=x" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and esc('"><img src=x onerror=alert(1)>') in text


def test_each_run_names_the_code_that_made_it(store):
    source = {"version": "0.3.0", "source_sha256": "ab" * 32, "commit": None}
    write_record(store, "20260101-000000-fit-logreg-digit", code=source)
    write_record(store, "20260101-000000-fit-svm-digit", head="svm", code={**source, "commit": "c0ffee" + "0" * 34})
    write_record(store, "20260101-000000-fit-gap-digit", head="gap")  # made before runs recorded their code
    text = build_report(store).read_text(encoding="utf-8")
    assert "Code: source abababababab (cnncodes 0.3.0)." in text
    assert "Code: commit c0ffee0000 (cnncodes 0.3.0)." in text and "Code: not recorded." in text


def test_report_with_no_runs_says_so(store):
    text = build_report(store).read_text(encoding="utf-8")
    assert "No runs yet" in text and "<img" not in text
