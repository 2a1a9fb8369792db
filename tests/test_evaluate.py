"""fit, kfold (local and on a 2-process LocalCluster, resumed after a kill), predict and report."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from cnncodes.classifiers.evaluation.fit import fit_head
from cnncodes.classifiers.evaluation.kfold import kfold_scores
from cnncodes.classifiers.report.report import build_report
from cnncodes.classifiers.serving.predict import predict_images
from cnncodes.features.errors import UserError
from cnncodes.features.sealed import read_sealed, write_sealed
from cnncodes.features.store import FeatureStore
from conftest import kill_midway, run_cli


@pytest.fixture(scope="module")
def store(digits_store, tmp_path_factory):
    """A private copy of the digits store, so runs written here do not leak into other tests."""
    copy = tmp_path_factory.mktemp("eval") / "digits"
    shutil.copytree(digits_store, copy)
    return copy


def test_fit_saves_head_and_full_run_record(store):
    run, record = fit_head(store, "svm", params={"Cs": (0.1, 1.0)})
    assert (run / "model.json").exists() and (run / "model.npz").exists()  # arrays + JSON: nothing to unpickle
    assert not (run / "model.joblib").exists()
    saved = read_sealed(run / "record.json")  # sealed: a changed byte is caught when it is read
    assert saved["test_accuracy"] == record["test_accuracy"] > 0.9
    assert saved["fingerprint"] == FeatureStore.open(store).feature_set("r50").fingerprint
    assert len(saved["per_class_accuracy"]) == 10 and np.array(saved["confusion"]).sum() == 359
    assert saved["params"]["Cs"] == [0.1, 1.0] and saved["chosen"]["C"] in (0.1, 1.0)
    _, dense = fit_head(store, "dense", params={"epochs": 3, "hidden": 32})
    assert dense["epochs"] == len(dense["history"]["val_loss"]) == 3
    _, upper = fit_head(store, "logreg", label="DIGIT", params={"Cs": [0.1]})  # names ignore case, as elsewhere
    assert upper["label"] == "digit"


@pytest.mark.slow
def test_fit_cli_prints_one_summary_line_and_progress(store):
    r = run_cli("fit", "--store", store, "--head", "logreg")
    assert r.returncode == 0, r.stderr
    summary, saved = r.stdout.strip().splitlines()
    assert summary.startswith("logreg on r50 (digit): test accuracy ") and "; chose C " in summary
    assert saved.startswith("saved to ") and Path(saved.split("saved to ")[1]).is_dir()
    assert "logreg: 100%" in r.stderr and "7/7" in r.stderr  # 6 values of C, then the final fit
    assert "\r" not in r.stderr  # a log file gets whole lines, not a terminal bar's redraws
    r = run_cli("fit", "--store", store, "--head", "svm", "--param", "Cs=[0.1,1.0]")
    assert r.returncode == 0 and "svm: 100%" in r.stderr and "7/7" in r.stderr  # 3 folds x 2 C + final
    r = run_cli("fit", "--store", store, "--head", "svm", "--param", "C=0.1", "--quiet")
    assert r.returncode == 0 and "svm:" not in r.stderr


@pytest.mark.parametrize("kwargs, message", [
    (dict(head="gap", spatial=True), "asked for spatial maps but feature set r50 has none"),
    (dict(head="svm", features="vgg"), "no feature set 'vgg'"),
    (dict(head="svm", label="coarse"), "unknown label set 'coarse'"),
])
def test_fit_bad_requests_are_clear_errors(store, kwargs, message):
    with pytest.raises(UserError, match=message):
        fit_head(store, **kwargs)


@pytest.mark.slow
def test_kfold_on_two_process_local_cluster_equals_local(store, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(store, other, ignore=shutil.ignore_patterns("runs"))
    params = {"svm": {"C": 0.1}, "logreg": {"Cs": [0.1]}}
    local = kfold_scores(store, ["svm", "logreg"], k=5, params=params, progress=False)
    cluster = kfold_scores(other, ["svm", "logreg"], k=5, params=params, workers=2, progress=False)
    assert local["tasks_run"] == cluster["tasks_run"] == 10
    assert [r["folds"] for r in local["rows"]] == [r["folds"] for r in cluster["rows"]]
    assert all(r["mean"] > 0.9 for r in local["rows"])


@pytest.mark.slow
def test_killed_kfold_redoes_only_what_is_missing(store, tmp_path):
    victim = tmp_path / "victim"
    shutil.copytree(store, victim, ignore=shutil.ignore_patterns("runs"))
    folds = victim / "runs" / "kfold-r50-k6-train" / "folds"
    kill_midway(["kfold", "--store", victim, "--head", "svm", "-k", 6, "--param", "svm.Cs=[0.1,1.0]", "--quiet"],
                lambda: len(list(folds.glob("*.json"))) >= 2)
    done = len(list(folds.glob("*.json")))
    assert 2 <= done < 6, "kfold was not killed midway"
    params = {"svm": {"Cs": [0.1, 1.0]}}
    resumed = kfold_scores(victim, ["svm"], k=6, params=params, progress=False)
    assert resumed["tasks_run"] == 6 - done
    clean = kfold_scores(store, ["svm"], k=6, params=params, progress=False)
    assert resumed["rows"][0]["folds"] == clean["rows"][0]["folds"]


def test_predict_gives_top5_names_for_image_files(store, tmp_path):
    run, record = fit_head(store, "logreg")
    s = FeatureStore.open(store)
    files = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        cv2.imwrite(str(path), cv2.cvtColor(s.images(split="test")[i], cv2.COLOR_RGB2BGR))
        files.append(path)
    answers = predict_images(run, files)
    for i, best in enumerate(answers):
        assert len(best) == 5 and best[0][1] >= best[1][1]
        assert best[0][0] == record["class_names"][record["test_predictions"][i]]
    with pytest.raises(UserError, match="not found"):
        predict_images(run, [tmp_path / "missing.png"])


def test_predict_refuses_a_weights_file_changed_since_extraction(store, tmp_path, resnet_weights):
    import keras

    run, _ = fit_head(store, "logreg", params={"Cs": [0.1]})
    weights = tmp_path / "mine.weights.h5"
    shutil.copy(resnet_weights, weights)
    record = read_sealed(run / "record.json")
    record["feature_config"]["weights"] = str(weights)  # as if the features had been extracted from this copy
    write_sealed(run / "record.json", record)
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), cv2.cvtColor(FeatureStore.open(store).images(split="test")[0], cv2.COLOR_RGB2BGR))
    assert len(predict_images(run, [image])[0]) == 5  # the same weights: accepted
    keras.utils.set_random_seed(8)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    with pytest.raises(UserError, match="not those the head's features were extracted with"):
        predict_images(run, [image])


def test_report_shows_every_run(store):
    fit_head(store, "logreg", params={"Cs": [0.1]})  # the parameters of the k-fold row, whose mean it shows
    kfold_scores(store, ["logreg"], k=5, params={"logreg": {"Cs": [0.1]}}, progress=False)
    page = build_report(store)
    text = page.read_text()
    assert "<h2>Runs</h2>" in text and "<th>test accuracy (%)</th>" in text and "k-fold cross-validation" in text
    runs_table = text.split("<h2>Runs</h2>")[1].split("</table>")[0]
    assert "(5-fold on train)" in runs_table  # the k-fold mean beside the fit run of the same head and features
    assert text.count("data:image/png;base64,") >= 2 and (page.parent / "samples.png").exists()  # confusion, samples
    for run in (store / "runs").glob("*-fit-*"):
        assert run.name in text


def fresh_copy(store, path):
    """The store without its runs: a k-fold table that holds only what a test computes."""
    return shutil.copytree(store, path, ignore=shutil.ignore_patterns("runs", "report"))


def test_kfold_keeps_and_prints_training_accuracy_and_chosen_hyperparameters(store, tmp_path):
    from cnncodes.classifiers.heads.registry import make_head

    store = fresh_copy(store, tmp_path / "copy")
    table = kfold_scores(store, ["logreg"], k=3, params={"logreg": {"Cs": [0.01, 1.0]}}, progress=False)
    folder = store / "runs" / "kfold-r50-k3-train"
    records = [json.loads(p.read_text()) for p in sorted((folder / "folds").glob("logreg-*.json"))]
    assert [r["fold"] for r in records] == [0, 1, 2]
    # the fitted head scored on the rows it trained on, as fit's train accuracy is
    s = FeatureStore.open(store)
    X, y, folds = s.features("r50", split="train"), s.labels("digit", split="train"), s.folds(3, on="train")
    train = (folds >= 0) & (folds != 0)
    model = make_head("logreg", Cs=[0.01, 1.0]).fit(X[train], y[train])
    assert records[0]["train_accuracy"] == float(model.score(X[train], y[train])) > records[0]["accuracy"]
    assert records[0]["chosen"] == {"C": model.C_}

    (row,) = table["rows"]
    assert row["train_accuracy"] == pytest.approx(np.mean([r["train_accuracy"] for r in records]))
    assert row["chosen"] == {"C": [r["chosen"]["C"] for r in records]} and row["settings"] == {"Cs": [0.01, 1.0]}
    saved = json.loads((folder / "table.json").read_text())["rows"][0]
    assert saved["train_accuracy"] == row["train_accuracy"] and saved["chosen"] == row["chosen"]

    r = run_cli("kfold", "--store", store, "--head", "logreg", "-k", 3, "--param", "Cs=[0.01,1.0]", "--quiet")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith((folder / "table.md").read_text())  # printed as saved
    header, _, line = r.stdout.splitlines()[2:5]
    cells = dict(zip(header.strip("| ").split(" | "), line.strip("| ").split(" | ")))
    assert cells["settings"] == "Cs=[0.01, 1]"
    assert cells["mean train accuracy (%)"] == f"{100 * row['train_accuracy']:.2f}"
    chosen = ", ".join(f"{r['chosen']['C']:g}" for r in records)
    assert cells["chosen hyperparameters (per fold)"] == f"C: {chosen}"  # e.g. "C: 1, 1, 0.01"


def test_kfold_rows_of_records_without_training_accuracy_or_chosen_values():
    """Pixel baselines' fold records (from train.py) and folds saved by an older cnncodes may lack them."""
    from cnncodes.classifiers.evaluation.kfold import format_table, table_row

    folds = [{"head": "cnn", "label": "digit", "fold": f, "params": {"epochs": 1}, "accuracy": 0.5 + f / 10,
              "seconds": 1.0, "epochs": 1} for f in range(3)]
    row = table_row(folds)
    assert row["train_accuracy"] is None and row["chosen"] == {} and row["params"]["epochs"] == 1
    text = format_table({"k": 3, "on": "train", "features": "pixels", "rows": [row]})
    assert "| cnn | digit | epochs=1 | 50.00 | 60.00 | 70.00 | 60.00 ± 10.00 | – | – | 3.0 |" in text

    folds[1].update(train_accuracy=0.9, chosen={"epochs_trained": 1, "best_epoch": 1})
    row = table_row(folds)
    assert row["train_accuracy"] is None  # not the mean of one fold
    assert row["chosen"] == {"epochs_trained": [None, 1, None], "best_epoch": [None, 1, None]}
    assert "epochs_trained: –, 1, –; best_epoch: –, 1, –" in format_table(
        {"k": 3, "on": "train", "features": "pixels", "rows": [row]})


def test_kfold_table_keeps_every_head_and_setting_computed_on_its_folds(store, tmp_path):
    from cnncodes.classifiers.runs.records import kfold_tables

    store = fresh_copy(store, tmp_path / "copy")
    folder = store / "runs" / "kfold-r50-k3-train"
    logreg, svm = {"logreg": {"Cs": [0.1]}}, {"svm": {"C": 0.1}}
    first = kfold_scores(store, ["logreg"], k=3, params=logreg, progress=False)
    kfold_scores(store, ["svm"], k=3, params=svm, progress=False)
    other = kfold_scores(store, ["logreg"], k=3, params={"logreg": {"Cs": [1.0]}}, progress=False)
    assert [r["head"] for r in other["rows"]] == ["logreg", "logreg", "svm"]  # not only this run's head
    rows = [(r["head"], r["settings"]) for r in other["rows"]]
    assert rows == [("logreg", {"Cs": [0.1]}), ("logreg", {"Cs": [1.0]}), ("svm", {"C": 0.1})]
    again = kfold_scores(store, ["logreg"], k=3, params=logreg, progress=False)  # a re-run replaces its row
    assert again["tasks_run"] == 0 and [(r["head"], r["settings"]) for r in again["rows"]] == rows
    assert again["rows"][0]["folds"] == first["rows"][0]["folds"]
    (saved,) = kfold_tables(store)  # what `runs` and `report` read
    assert [(r["head"], r["settings"]) for r in saved["rows"]] == rows
    md = (folder / "table.md").read_text()
    for row in ("| logreg | digit | Cs=[0.1] |", "| logreg | digit | Cs=[1] |", "| svm | digit | C=0.1 |"):
        assert row in md

    # a fold file of other features that had this name (another digest), or a half-written one, is no row
    (svm_fold,) = (folder / "folds").glob("svm-digit-fold0-*.json")
    stray = read_sealed(svm_fold)
    write_sealed(folder / "folds" / "svm-digit-fold0-00000000.json", {**stray, "accuracy": 0.0})
    (folder / "folds" / "svm-digit-fold1-11111111.json").write_text('{"accuracy": 0.5, "he')
    assert kfold_scores(store, ["svm"], k=3, params=svm, progress=False)["rows"] == again["rows"]


def test_runs_show_a_kfold_mean_only_beside_runs_of_its_parameters(store, tmp_path):
    from cnncodes.classifiers.runs.records import format_runs, latest_runs

    store = fresh_copy(store, tmp_path / "copy")
    fit_head(store, "logreg", params={"Cs": [0.1]})
    fit_head(store, "logreg", params={"Cs": [1.0]})
    kfold_scores(store, ["logreg"], k=3, params={"logreg": {"Cs": [0.1]}}, progress=False)
    lines = format_runs(latest_runs(store)).splitlines()[1:]
    (same,) = [line for line in lines if line.endswith("Cs=[0.1]")]
    (other,) = [line for line in lines if line.endswith("Cs=[1]")]
    assert "(3-fold on train)" in same and "fold" not in other


def test_kfold_never_reuses_folds_of_other_features_under_the_same_name(tmp_path):
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    quiet = dict(progress=False, log=lambda m: None)
    store = ingest(tmp_path / "d", IngestConfig("digits", limit=30), **quiet).path  # 3 rows a class: k <= 3
    params = {"logreg": {"Cs": [0.1]}}
    extract_features(store, FeatureConfig(weights="none", size=32, seed=0), name="codes", **quiet)
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 3
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 0
    (store / "features" / "codes.h5").unlink()
    extract_features(store, FeatureConfig(weights="none", size=32, seed=1), name="codes", **quiet)
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 3


def test_an_edited_fold_result_is_computed_again_and_said_once(store, tmp_path):
    """An edited fold .json (0.57 -> 0.97) was shown by kfold and report as it stood."""
    store = fresh_copy(store, tmp_path / "copy")
    params = {"logreg": {"Cs": [0.1]}}
    first = kfold_scores(store, ["logreg"], k=3, params=params, progress=False)
    folds = sorted((store / "runs" / "kfold-r50-k3-train" / "folds").glob("*.json"))
    text = folds[0].read_text()
    accuracy = f'"accuracy": {read_sealed(folds[0])["accuracy"]}'
    assert accuracy in text
    folds[0].write_text(text.replace(accuracy, '"accuracy": 0.97'))  # the seal no longer holds
    folds[1].write_text(json.dumps(read_sealed(folds[1])))  # no seal: as cnncodes 0.2 wrote them
    said = []
    again = kfold_scores(store, ["logreg"], labels=["DIGIT"], k=3, params=params, progress=False, log=said.append)
    assert again["tasks_run"] == 2 and [r["folds"] for r in again["rows"]] == [r["folds"] for r in first["rows"]]
    assert len(said) == 1 and "computing again 2 saved fold result(s)" in said[0] and "fail their checksum" in said[0]
    assert read_sealed(folds[0])["accuracy"] != 0.97


def test_a_fold_result_of_other_code_is_computed_again_and_said_once(store, tmp_path):
    """bench/transfer.py reprinted figures after a head's code changed: a finished fold counts only for its code."""
    from cnncodes.features.provenance import code_version

    store = fresh_copy(store, tmp_path / "copy")
    params = {"logreg": {"Cs": [0.1]}}
    first = kfold_scores(store, ["logreg"], k=3, params=params, progress=False)
    folds = sorted((store / "runs" / "kfold-r50-k3-train" / "folds").glob("*.json"))
    assert first["code"] == code_version() and all(read_sealed(f)["code"] == code_version() for f in folds)
    other = read_sealed(folds[0])
    write_sealed(folds[0], {**other, "accuracy": 0.97, "code": {**other["code"], "source_sha256": "0" * 64}})
    older = read_sealed(folds[1])
    write_sealed(folds[1], {k: v for k, v in older.items() if k != "code"})  # as cnncodes wrote them before
    said = []
    again = kfold_scores(store, ["logreg"], k=3, params=params, progress=False, log=said.append)
    assert again["tasks_run"] == 2 and [r["folds"] for r in again["rows"]] == [r["folds"] for r in first["rows"]]
    assert len(said) == 1 and "computing again 2 saved fold result(s)" in said[0] and "made by other code" in said[0]
    assert read_sealed(folds[0])["code"] == code_version()


@pytest.mark.parametrize("other", [{"version": "0.3.0", "source_sha256": "0" * 64, "commit": None}, None])
def test_a_fold_computed_by_a_worker_running_other_code_is_kept_as_its_codes_and_left_out(store, tmp_path,
                                                                                           monkeypatch, other):
    """A local cluster's workers import the checkout when they start: edited mid-run, they ran other code than
    the process that writes the table, whose commit a fold must not claim; a worker too old to say (None) ran
    other code too."""
    from cnncodes.classifiers.evaluation import kfold

    store = fresh_copy(store, tmp_path / "copy")
    real = kfold.run_fold

    def worker(*a):
        result = real(*a)
        if a[3] == 1:
            result = {k: v for k, v in result.items() if k != "code"} | ({"code": other} if other else {})
        return result

    monkeypatch.setattr(kfold, "run_fold", worker)
    said = []
    table = kfold_scores(store, ["logreg"], k=3, params={"logreg": {"Cs": [0.1]}}, progress=False, log=said.append)
    fold1 = next((store / "runs" / "kfold-r50-k3-train" / "folds").glob("logreg-*-fold1-*.json"))
    assert read_sealed(fold1)["code"] == other and table["rows"] == []
    assert len(said) == 1 and "1 fold(s) were computed by other code" in said[0]


def test_bench_transfer_reuses_only_a_fit_made_by_this_code(tmp_path, monkeypatch):
    import importlib.util

    from cnncodes.classifiers.heads.heads import LogRegHead
    from cnncodes.classifiers.runs.records import new_run_dir, save_run
    from cnncodes.features import provenance

    spec = importlib.util.spec_from_file_location("bench_transfer", Path(__file__).parents[1] / "bench" / "transfer.py")
    transfer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(transfer)

    def fake_fit(store, head, features):  # a run record as fit_head saves one, without the minutes of fitting
        record = {"kind": "fit", "head": head, "label": "digit", "features": features, "test_accuracy": 0.5,
                  "params": LogRegHead().get_params(), "class_names": ["a", "b"], "confusion": [[1, 0], [0, 1]],
                  "test_predictions": [0, 1]}
        return save_run(new_run_dir(store, "fit", head, "digit"), record), record

    monkeypatch.setattr(transfer, "fit_head", fake_fit)

    def runs():
        return len(list((tmp_path / "runs").glob("*/record.json")))

    transfer.fitted(tmp_path, "logreg", "r50", refit=False)
    transfer.fitted(tmp_path, "logreg", "r50", refit=False)
    assert runs() == 1  # reused
    code = provenance.code_version()
    monkeypatch.setattr(provenance, "code_version", lambda: {**code, "source_sha256": "0" * 64})  # the code changed
    transfer.fitted(tmp_path, "logreg", "r50", refit=False)
    assert runs() == 2  # fitted again, not the figure of the code before


def test_kfold_checks_every_fold_before_dask_starts(store, tmp_path, monkeypatch):
    """cv=1000 and backbone=bogus were refused inside a Dask worker, whose traceback came first."""
    from cnncodes.classifiers.evaluation import kfold
    from cnncodes.features.errors import BadParameter

    store = fresh_copy(store, tmp_path / "copy")
    monkeypatch.setattr(kfold, "dask_client", lambda *a: pytest.fail("Dask started before the checks"))
    smallest = min(np.unique(FeatureStore.open(store).labels(split="train")[FeatureStore.open(store).folds(3) != 0],
                             return_counts=True)[1])
    with pytest.raises(BadParameter, match=f"cv=1000 folds .* the smallest class has {smallest}"):
        kfold_scores(store, ["svm"], k=3, params={"svm": {"cv": 1000}}, progress=False)
    with pytest.raises(BadParameter, match="head finetune: backbone takes one of resnet50"):
        kfold_scores(store, ["finetune"], k=3, params={"finetune": {"backbone": "bogus"}}, progress=False)
    with pytest.raises(UserError, match="resnet50 has no layer 'conv9'"):
        kfold_scores(store, ["finetune"], k=3, params={"finetune": {"unfreeze_from": "conv9"}}, progress=False)
    assert not (store / "runs").exists()


def test_kfold_table_shows_names_from_data_without_control_characters():
    from cnncodes.classifiers.evaluation.kfold import format_table, table_row

    hostile = "\x1b]0;pwned\x07\x1b[2J"  # would set the window title, then clear the screen
    folds = [{"head": "logreg", "label": hostile, "fold": f, "params": {"Cs": [0.1], hostile: hostile},
              "accuracy": 0.5, "seconds": 1.0} for f in range(2)]
    text = format_table({"k": 2, "on": "train", "features": hostile, "rows": [table_row(folds)]})
    assert "\x1b" not in text and "\x07" not in text and "\\x1b]0;pwned\\x07" in text
