"""fit, kfold (local and on a 2-process LocalCluster, resumed after a kill), predict and report."""
import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from conftest import kill_midway, run_cli
from cnncodes.classifiers.fit import fit_head
from cnncodes.classifiers.kfold import kfold_scores
from cnncodes.classifiers.predict import predict_images
from cnncodes.classifiers.report import build_report
from cnncodes.features.errors import UserError
from cnncodes.features.store import FeatureStore


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
    saved = json.loads((run / "record.json").read_text())
    assert saved["test_accuracy"] == record["test_accuracy"] > 0.9
    assert saved["fingerprint"] == FeatureStore.open(store).feature_set("r50").fingerprint
    assert len(saved["per_class_accuracy"]) == 10 and np.array(saved["confusion"]).sum() == 359
    assert saved["params"]["Cs"] == [0.1, 1.0] and saved["chosen"]["C"] in (0.1, 1.0)
    _, dense = fit_head(store, "dense", params={"epochs": 3, "hidden": 32})
    assert dense["epochs"] == len(dense["history"]["val_loss"]) == 3


def test_fit_cli_prints_one_summary_line_and_progress(store):
    r = run_cli("fit", "--store", store, "--head", "logreg")
    assert r.returncode == 0, r.stderr
    summary, saved = r.stdout.strip().splitlines()
    assert summary.startswith("logreg on r50 (digit): test accuracy ") and "; chose C " in summary
    assert saved.startswith("saved to ") and Path(saved.split("saved to ")[1]).is_dir()
    assert "logreg: 100%" in r.stderr and "7/7" in r.stderr  # 6 values of C, then the final fit
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


def test_kfold_on_two_process_local_cluster_equals_local(store, tmp_path):
    other = tmp_path / "copy"
    shutil.copytree(store, other, ignore=shutil.ignore_patterns("runs"))
    params = {"svm": {"C": 0.1}, "logreg": {"Cs": [0.1]}}
    local = kfold_scores(store, ["svm", "logreg"], k=5, params=params, progress=False)
    cluster = kfold_scores(other, ["svm", "logreg"], k=5, params=params, workers=2, progress=False)
    assert local["tasks_run"] == cluster["tasks_run"] == 10
    assert [r["folds"] for r in local["rows"]] == [r["folds"] for r in cluster["rows"]]
    assert all(r["mean"] > 0.9 for r in local["rows"])


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
    record = json.loads((run / "record.json").read_text())
    record["feature_config"]["weights"] = str(weights)  # as if the features had been extracted from this copy
    (run / "record.json").write_text(json.dumps(record))
    image = tmp_path / "digit.png"
    cv2.imwrite(str(image), cv2.cvtColor(FeatureStore.open(store).images(split="test")[0], cv2.COLOR_RGB2BGR))
    assert len(predict_images(run, [image])[0]) == 5  # the same weights: accepted
    keras.utils.set_random_seed(8)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    with pytest.raises(UserError, match="not those the head's features were extracted with"):
        predict_images(run, [image])


def test_report_shows_every_run(store):
    fit_head(store, "logreg")
    kfold_scores(store, ["logreg"], k=5, params={"logreg": {"Cs": [0.1]}}, progress=False)
    page = build_report(store)
    text = page.read_text()
    assert "<h2>Runs</h2>" in text and "<th>test accuracy (%)</th>" in text and "k-fold cross-validation" in text
    runs_table = text.split("<h2>Runs</h2>")[1].split("</table>")[0]
    assert "(5-fold on train)" in runs_table  # the k-fold mean beside the fit run of the same head and features
    assert text.count("data:image/png;base64,") >= 2 and (page.parent / "samples.png").exists()  # confusion, samples
    for run in (store / "runs").glob("*-fit-*"):
        assert run.name in text


def test_kfold_never_reuses_folds_of_other_features_under_the_same_name(tmp_path):
    from cnncodes.pipeline.extract import FeatureConfig, extract_features
    from cnncodes.pipeline.ingest import IngestConfig, ingest

    quiet = dict(progress=False, log=lambda m: None)
    store = ingest(tmp_path / "d", IngestConfig("digits", limit=30), **quiet).path  # 3 rows a class: k <= 3
    params = {"logreg": {"Cs": [0.1]}}
    extract_features(store, FeatureConfig(weights="none", size=32, seed=0), name="codes", **quiet)
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 3
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 0
    (store / "features" / "codes.h5").unlink()
    extract_features(store, FeatureConfig(weights="none", size=32, seed=1), name="codes", **quiet)
    assert kfold_scores(store, ["logreg"], k=3, params=params, progress=False)["tasks_run"] == 3
