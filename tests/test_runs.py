"""Runs as a system of record (issue 12): heads saved without pickles, damaged runs skipped and named,
a report that escapes every name from data, fit refusing a read-only store before it trains."""
import json
import os
import pickle
import shutil

import h5py
import numpy as np
import pytest

from cnncodes.classifiers.evaluation.fit import fit_head
from cnncodes.classifiers.heads.heads import LogRegHead
from cnncodes.classifiers.heads.registry import HEADS, make_head
from cnncodes.classifiers.report import report
from cnncodes.classifiers.report.report import build_report
from cnncodes.classifiers.runs.persist import load_model, save_model
from cnncodes.classifiers.runs.records import (
    all_runs,
    classification_record,
    damage_warnings,
    damaged_runs,
    format_runs,
    kfold_tables,
    latest_runs,
    load_run,
    save_run,
)
from cnncodes.classifiers.serving.predict import predict_images
from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.features.sealed import read_sealed, seal, write_sealed
from cnncodes.features.store import FeatureStore
from conftest import kill_midway, run_cli, write_mixed_tree

SCRIPT = "<script>alert(1)</script>"
IMG = '"><img src=x onerror=alert(1)>'
MATH = r"$\frac{$"  # mathtext that does not parse: matplotlib raises on it unless drawn as plain text
HOSTILE = (SCRIPT, IMG, MATH)


# -- 1. heads load without unpickling ------------------------------------------------------------------------
def tiny_data(spatial=False, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(60) % 3
    X = rng.normal(size=(60, 2, 2, 6) if spatial else (60, 6)).astype(np.float32)
    X[np.arange(60), ..., y] += 2.0  # learnable: class k is bright in channel k
    return X, y


# (quick parameters, spatial maps?) for each registered head: one added to the registry needs its entry
SAVED = {"logreg": ({"Cs": (0.1, 1.0)}, False), "svm": ({"Cs": (0.1, 1.0)}, False),
         "dense": ({"epochs": 2, "hidden": 8}, False), "gap": ({"epochs": 2}, True),
         "knn": ({"standardize": True}, True)}  # knn pools the maps; its default (raw codes) is saved in test_knn.py


@pytest.mark.parametrize("head, params, spatial", [(head, *SAVED[head]) for head in HEADS]
                         + [("svm", {"Cs": (0.1, 1.0), "probability": True}, False)])
def test_saved_head_predicts_exactly_as_the_fitted_one(tmp_path, head, params, spatial):
    X, y = tiny_data(spatial)
    model = make_head(head, **params).fit(X, y)
    save_model(model, tmp_path)
    with np.load(tmp_path / "model.npz", allow_pickle=False) as npz:  # plain arrays only
        assert "classes_" in npz.files
    loaded = load_model(tmp_path)
    assert type(loaded) is type(model) and loaded.get_params() == model.get_params()
    assert np.array_equal(loaded.predict(X), model.predict(X))
    scores = "decision_function" if head == "svm" else "predict_proba"
    assert np.array_equal(getattr(loaded, scores)(X), getattr(model, scores)(X))
    assert hasattr(loaded, "predict_proba") == hasattr(model, "predict_proba")
    if params.get("probability"):  # a calibrated SVM's sigmoids come back too
        assert np.array_equal(loaded.predict_proba(X), model.predict_proba(X))
    if head == "logreg":  # the wrapped scikit-learn estimator is rebuilt from its arrays
        assert type(loaded.model_).__name__ == "LogisticRegression"
        assert np.array_equal(loaded.model_.coef_, model.model_.coef_) and loaded.C_ == model.C_
        assert loaded.scores_ == model.scores_  # C values stay numbers, not JSON's string keys
    if head in ("dense", "gap"):
        assert (tmp_path / "model.keras").exists() and loaded.history_ == model.history_
    assert type(loaded.scaler_).__name__ == "StandardScaler"  # the standardisation, rebuilt from its arrays
    assert np.array_equal(loaded.scaler_.scale_, model.scaler_.scale_) and loaded.n_features_in_ == model.n_features_in_
    assert loaded.validation_score_ == model.validation_score_ and loaded.chosen_params_ == model.chosen_params_


def test_a_head_saved_in_an_older_format_is_refused_with_the_fix(saved_logreg):
    description = read_sealed(saved_logreg / "model.json")
    description["format"] = "cnncodes-head/1"  # standardised by hand, two-class SVMs as two problems
    write_sealed(saved_logreg / "model.json", description)
    with pytest.raises(UserError, match="a head saved by another cnncodes \\(cnncodes-head/1.*re-fit the head"):
        load_model(saved_logreg)


@pytest.fixture
def saved_logreg(tmp_path):
    X, y = tiny_data()
    save_model(make_head("logreg", Cs=(0.1,)).fit(X, y), tmp_path)
    return tmp_path


def test_a_model_npz_holding_an_object_array_is_refused(saved_logreg):
    with np.load(saved_logreg / "model.npz") as npz:
        arrays = dict(npz)
    arrays["classes_"] = np.array([0, "x", None], dtype=object)  # loadable only by unpickling
    np.savez(saved_logreg / "model.npz", **arrays)
    with pytest.raises(UserError, match="model.npz fails its checksum"):
        load_model(saved_logreg)
    rehash(saved_logreg, "model.npz")  # a forger who reseals gets no further
    with pytest.raises(UserError, match="model.npz holds something other than plain arrays.*refused"):
        load_model(saved_logreg)


def rehash(folder, name):
    description = read_sealed(folder / "model.json")
    description["files"][name] = file_digest(folder / name, "sha256")
    write_sealed(folder / "model.json", description)


@pytest.mark.parametrize("where", ["head", "nested estimator"])
def test_a_class_name_outside_the_allow_list_is_refused(saved_logreg, where):
    description = read_sealed(saved_logreg / "model.json")  # resealed: what a forger would do
    target = description if where == "head" else description["fitted"]["model_"]["estimator"]
    target["class"] = "Popen"
    write_sealed(saved_logreg / "model.json", description)
    with pytest.raises(UserError, match="names the class 'Popen', which cnncodes does not load"):
        load_model(saved_logreg)


def test_a_keras_network_with_code_in_it_is_refused(tmp_path):
    import keras

    X, y = tiny_data()
    save_model(make_head("gap", epochs=1).fit(X, y), tmp_path)
    inputs = keras.Input((6,))
    keras.Model(inputs, keras.layers.Lambda(lambda x: x * 2)(inputs)).save(tmp_path / "model.keras")
    with pytest.raises(UserError, match="model.keras fails its checksum"):
        load_model(tmp_path)
    rehash(tmp_path, "model.keras")  # a forger who reseals gets no further
    with pytest.raises(UserError, match="cannot be loaded in Keras's safe mode"):
        load_model(tmp_path)


@pytest.mark.parametrize("damage, message", [
    (lambda folder: flip_a_byte(folder / "model.npz"), "model.npz fails its checksum"),
    (lambda folder: edit(folder / "model.json", '"max_iter": 1000', '"max_iter": 1001'),
     "model.json fails its checksum"),
    (lambda folder: (folder / "model.json").write_text(json.dumps(read_sealed(folder / "model.json"))),
     "model.json has no checksum"),
])
def test_a_head_whose_files_changed_on_disk_is_refused(saved_logreg, damage, message):
    damage(saved_logreg)
    with pytest.raises(UserError, match=f"{message}.*re-fit the head"):
        load_model(saved_logreg)


def flip_a_byte(path):
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 1
    path.write_bytes(bytes(data))


def edit(path, old: str, new: str):
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


class Payload:
    """What a planted model.joblib can do when unpickled: here, create a marker file."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return open, (str(self.marker), "w")


def fake_fit_record(n_classes=3, n_test=6) -> dict:
    y = np.arange(n_test) % n_classes
    return {"kind": "fit", "head": "logreg", "label": "label", "features": "codes", "params": {},
            "feature_config": {"weights": "none"}, "image_shape": [32, 32, 3],
            "class_names": [f"c{i}" for i in range(n_classes)], **classification_record(y, y, n_classes)}


def test_a_planted_model_joblib_is_refused_before_it_is_unpickled(tmp_path):
    run, marker = tmp_path / "runs" / "planted", tmp_path / "marker"
    run.mkdir(parents=True)
    save_run(run, fake_fit_record())
    (run / "model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    for load in (lambda: load_run(run), lambda: predict_images(run, [tmp_path / "x.png"])):
        with pytest.raises(UserError, match="saved by an older cnncodes as a pickle, which can run code: "
                                            "re-fit it, or pass --trust-model"):
            load()
    assert not marker.exists()
    load_run(run, trust_pickle=True)  # the user vouches for it: the legacy path still loads (and runs it)
    assert marker.exists()


def test_predict_cli_refuses_a_planted_pickle_in_one_line(tmp_path):
    run, marker = tmp_path / "run", tmp_path / "marker"
    run.mkdir()
    save_run(run, fake_fit_record())
    (run / "model.joblib").write_bytes(pickle.dumps(Payload(marker)))
    (tmp_path / "x.png").write_bytes(b"")  # the run is refused before any image is read
    r = run_cli("predict", "--model", run, tmp_path / "x.png")
    assert r.returncode == 1 and not marker.exists()
    assert r.stderr.strip().count("\n") == 0 and "--trust-model" in r.stderr


# -- 2. one damaged run never takes the others down -------------------------------------------------------------
def write_runs(root):
    """One good fit run and eight damaged ones, as a crash, a disk error, a hand edit or an older cnncodes
    leaves them."""
    good = root / "runs" / "20260101-000000-fit-logreg-label"
    good.mkdir(parents=True)
    save_run(good, {**fake_fit_record(), "train_accuracy": None})  # optional numbers may be null
    edited = json.dumps(seal(fake_fit_record()), indent=1).replace('"test_accuracy": 1.0', '"test_accuracy": 0.97')
    damaged = {
        "truncated": json.dumps(fake_fit_record())[:100],
        "not-json": "\x00\xff garbage",
        "no-accuracy": sealed_text({k: v for k, v in fake_fit_record().items() if k != "test_accuracy"}),
        "a-list": "[1, 2]",
        "bad-prediction": sealed_text({**fake_fit_record(), "test_predictions": [0, 1, 7, 0, 1, 2]}),
        "unsealed": json.dumps(fake_fit_record()),  # a run of cnncodes 0.2, or a record written by hand
        "edited": edited,
        "nan": sealed_text({**fake_fit_record(), "train_accuracy": float("nan")}),
    }
    assert edited != sealed_text(fake_fit_record())
    for name, text in damaged.items():
        (root / "runs" / name).mkdir()
        (root / "runs" / name / "record.json").write_text(text)
    table = root / "runs" / "kfold-codes-k5-train"
    table.mkdir()
    (table / "table.json").write_text('{"kind": "kfold", "k": 5, "rows": [')
    return good, damaged


def sealed_text(obj) -> str:
    return json.dumps(seal(obj), indent=1)


def test_damaged_run_records_and_kfold_tables_are_skipped_and_named(tmp_path):
    good, damaged = write_runs(tmp_path)
    assert [r["run"] for r in all_runs(tmp_path)] == [str(good)]
    assert [r["run"] for r in latest_runs(tmp_path)] == [str(good)]
    assert "logreg" in format_runs(all_runs(tmp_path)) and kfold_tables(tmp_path) == []
    why = {folder.name: reason for folder, reason in damaged_runs(tmp_path)}
    assert set(why) == set(damaged) | {"kfold-codes-k5-train"}
    assert why["no-accuracy"] == "record.json lacks test_accuracy"
    assert why["truncated"].startswith("record.json cannot be read")
    assert "not class indices" in why["bad-prediction"]
    assert why["unsealed"] == "record.json has no checksum (written by cnncodes before 0.3, or edited by hand)"
    assert why["edited"] == "record.json fails its checksum (changed on disk or edited by hand)"
    assert why["nan"] == "record.json holds a number that is not finite (NaN or inf)"
    assert why["kfold-codes-k5-train"].startswith("table.json cannot be read")
    warnings = damage_warnings(tmp_path)
    assert len(warnings) == 9 and all(w.startswith("warning: skipped ") for w in warnings)
    for name, message in [("no-accuracy", "record.json lacks test_accuracy"), ("edited", "record.json fails its")]:
        with pytest.raises(UserError, match=rf"{name} is damaged \({message}"):
            load_run(tmp_path / "runs" / name)


# -- 3. the report: names from data escaped and drawn as plain text; sources; misclassified images -------------
@pytest.fixture(scope="module")
def hostile_store(tmp_path_factory):
    """A folder data set whose root and class folders carry HTML and mathtext, with tiny random codes, and
    a second label set named `<script>...`, as a hand-edited or foreign data.h5 could have."""
    from cnncodes.features import schema
    from cnncodes.features.data_file import text_array
    from cnncodes.features.fingerprint import NAMES_SEAL, name_keys, text_digest
    from cnncodes.features.writers import seal_attrs
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    base = tmp_path_factory.mktemp("hostile")
    root = write_mixed_tree(base / "<svg onload=alert(1)>", classes=(IMG, MATH, "<b>bee"), per_class=6)
    quiet = dict(progress=False, log=lambda m: None)
    store = ingest(base / "store", IngestConfig(f"folder:{root}"), **quiet).path
    extract_features(store, FeatureConfig(weights="none", size=32), name="codes", **quiet)
    with h5py.File(store / "data.h5", "r+") as f:  # written (and sealed) as ingest writes a label set
        f.create_dataset(f"labels/{SCRIPT}", data=f["labels/class"][:], **schema.CHECKSUM)
        f.create_dataset(f"label_names/{SCRIPT}", data=text_array([SCRIPT, "x", "y"]), **schema.CHECKSUM)
        seal_attrs(f, {"label_sets": json.dumps(["class", SCRIPT]),
                       NAMES_SEAL: text_digest(f, name_keys(["class", SCRIPT]))})
    for label in ("class", SCRIPT):
        fit_head(store, "logreg", label=label, params={"Cs": [0.1]})
    return store


def copy_of(store, tmp_path):
    shutil.copytree(store, tmp_path / "store")
    return tmp_path / "store"


def test_report_escapes_every_name_from_data_and_draws_them_as_plain_text(hostile_store, tmp_path):
    store = copy_of(hostile_store, tmp_path)
    assert {r["label"] for r in all_runs(store)} == {"class", SCRIPT}
    assert all("<" not in r["run"] for r in all_runs(store))  # run folders are named safely
    page = build_report(store, tmp_path / "out")  # a class named $\frac{$ used to crash matplotlib
    text = page.read_text(encoding="utf-8")
    for name in (SCRIPT, IMG, "<svg onload=alert(1)>", "<b>bee"):
        assert name not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text and "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in text
    assert "<script" not in text and "<img src=x" not in text and "<svg" not in text
    # 2 confusion matrices, 2 runs' misclassified thumbnails, samples, the map, the neighbors
    assert text.count("data:image/png;base64,") == 7
    assert (tmp_path / "out" / "samples.png").exists()


def test_report_lists_the_misclassified_test_images_surest_first_with_thumbnails(hostile_store, tmp_path, monkeypatch):
    store = copy_of(hostile_store, tmp_path)
    s = FeatureStore.open(store)
    (run,) = [r for r in all_runs(store) if r["label"] == "class"]
    truth, sources = s.labels("class", split="test"), s.sources(split="test")
    wrong = np.flatnonzero(np.array(run["test_predictions"]) != truth)
    assert 2 <= len(wrong) < len(truth), "the tiny random-weight codes should get some test images wrong"
    confidence = np.array(run["test_confidence"])
    assert len(confidence) == len(truth) and ((confidence > 0) & (confidence <= 1)).all()  # logreg: probabilities
    surest = wrong[np.argsort(-confidence[wrong], kind="stable")]
    out = tmp_path / "out"
    text = build_report(store, out).read_text(encoding="utf-8")
    assert f"{len(wrong)} of {len(truth)} test images, surest first" in text
    name = os.path.basename(run["run"])
    table = text.split(f"Latest run {report.esc(name)} ")[1].split("Misclassified")[1].split("</table>")[0]
    for i in surest:  # every wrong image, in order of the run's confidence
        row = [sources[i], run["class_names"][truth[i]], run["class_names"][run["test_predictions"][i]],
               f"{confidence[i]:.3g}"]
        assert "<tr>" + "".join(f"<td>{report.esc(c)}</td>" for c in row) + "</tr>" in table
    positions = [table.index(report.esc(sources[i])) for i in surest]
    assert positions == sorted(positions)
    assert (out / f"{name}-misclassified.png").exists()
    monkeypatch.setattr(report, "MISCLASSIFIED_ROWS", 1)  # long lists are cut, and say so
    text = build_report(store).read_text(encoding="utf-8")
    section = text.split(f"Latest run {report.esc(name)} ")[1].split("Misclassified")[1].split("</table>")[0]
    assert "; the first 1 listed" in section and report.esc(sources[surest[0]]) in section
    assert report.esc(sources[surest[1]]) not in section


def test_a_run_without_confidences_lists_its_wrong_images_in_store_order(hostile_store, tmp_path):
    from cnncodes.classifiers.report.report import wrong_surest_first

    truth = np.array([0, 1, 1, 0])
    run = {"test_predictions": [1, 1, 0, 1], "test_confidence": [0.2, 0.9, 0.7, 0.6]}
    assert wrong_surest_first(run, truth)[0].tolist() == [2, 3, 0] and wrong_surest_first(run, truth)[1]
    del run["test_confidence"]
    assert wrong_surest_first(run, truth)[0].tolist() == [0, 2, 3] and not wrong_surest_first(run, truth)[1]


def test_report_on_a_store_made_before_sources_says_so(hostile_store, tmp_path):
    store = copy_of(hostile_store, tmp_path)
    with h5py.File(store / "data.h5", "r+") as f:
        del f["sources"]
    assert FeatureStore.open(store).sources(split="test") is None
    text = build_report(store).read_text(encoding="utf-8")
    assert "sources not recorded (store made before cnncodes recorded them)" in text
    assert "Misclassified test images" in text


def test_report_names_damaged_runs_and_shows_the_rest(hostile_store, tmp_path):
    store = copy_of(hostile_store, tmp_path)
    write_runs(store)
    text = build_report(store).read_text(encoding="utf-8")
    damaged = text.split("<h2>Damaged runs</h2>")[1].split("</ul>")[0]
    assert "<li>no-accuracy: record.json lacks test_accuracy</li>" in damaged
    assert "kfold-codes-k5-train: table.json cannot be read" in damaged and damaged.count("<li>") == 9
    for r in all_runs(store):
        assert f"Latest run {report.esc(os.path.basename(r['run']))} " in text


# -- 4, 5. fit on a read-only store; predict on what is not a fitted run ------------------------------------------
def test_fit_on_a_read_only_store_fails_before_training(hostile_store, tmp_path, monkeypatch):
    if os.geteuid() == 0:
        pytest.skip("root ignores file permissions")
    store = copy_of(hostile_store, tmp_path)
    runs = store / "runs"
    monkeypatch.setattr(LogRegHead, "fit", lambda *a: pytest.fail("trained before checking the store"))
    runs.chmod(0o555)
    try:
        with pytest.raises(UserError, match=f"cannot create a run folder in {runs} .*make it writable"):
            fit_head(store, "logreg")
    finally:
        runs.chmod(0o755)
    assert len(list(runs.iterdir())) == 2  # nothing half-made


def test_predict_on_what_is_not_a_fitted_run_is_one_clear_error(hostile_store, tmp_path):
    store = copy_of(hostile_store, tmp_path)
    (run,) = [r for r in all_runs(store) if r["label"] == "class"]
    run = store / "runs" / os.path.basename(run["run"])
    image = tmp_path / "x.png"
    with pytest.raises(UserError, match="is not a run folder"):
        predict_images(store, [image])
    record = read_sealed(run / "record.json")
    for edit, message in [  # sealed again after the edit: each is caught by what it breaks, not only the seal
        ({k: v for k, v in record.items() if k != "feature_config"}, "lacks feature_config"),
        ({**record, "kind": "baseline"}, "holds no fitted head"),
        ({**record, "image_shape": "big"}, "lacks image_shape"),
        ({**record, "image_shape": [100000, 100000, 3]}, "image_shape \\[100000, 100000, 3\\], not \\(side, side"),
        ({**record, "feature_config": {**record["feature_config"], "size": 100000}}, "size takes a whole number"),
        ({**record, "feature_config": {**record["feature_config"], "size": 8}}, "size 8 is under resnet50's least"),
        ({**record, "feature_config": {**record["feature_config"], "backbone": "bogus"}}, "backbone takes one of"),
        ({**record, "class_names": ["only one"]}, "confusion matrix that is not 1 x 1"),
    ]:
        write_sealed(run / "record.json", edit)
        with pytest.raises(UserError, match=message):
            predict_images(run, [image])
    write_sealed(run / "record.json", record)
    (run / "model.json").write_text("{")
    with pytest.raises(UserError, match="model.json cannot be read"):
        predict_images(run, [image])


# -- issue 19: a killed or disk-full fit leaves no run; text from data never reaches the terminal raw ----------
def test_a_killed_fit_leaves_no_run_and_the_next_fit_removes_its_folder(hostile_store, tmp_path):
    """A SIGKILLed fit left an empty run folder that stayed."""
    from cnncodes.features.outputs import new_staging, release, staging_owner

    store = copy_of(hostile_store, tmp_path)
    runs = store / "runs"
    before = sorted(p.name for p in runs.iterdir())

    alive = new_staging(runs / "20260101-000000-fit-svm-class")  # a fit still running (its lock held): kept
    (alive / "20260101-000000-fit-svm-class").mkdir()
    (alive / "20260101-000000-fit-svm-class" / "record.json").write_text("{}")  # written, not yet published

    def staged():
        return [p for p in runs.iterdir() if staging_owner(p.name) and p != alive]

    kill_midway(["fit", "--store", store, "--head", "dense", "--epochs", 100000, "--param", "patience=100000"],
                lambda: any(staged()))
    (killed,) = staged()
    assert sorted(p.name for p in runs.iterdir() if not p.name.startswith(".")) == before
    assert len(all_runs(store)) == len(before) and not damaged_runs(store)
    run, _ = fit_head(store, "logreg", label="class", params={"Cs": [0.1]})
    assert not killed.exists() and alive.exists() and run.parent == runs and not run.name.startswith(".")
    release(alive)
    assert len(all_runs(store)) == len(before) + 1


@pytest.mark.parametrize("full", ["record", "model"])
def test_a_full_disk_while_saving_a_run_is_one_line_and_leaves_nothing(hostile_store, tmp_path, monkeypatch, full):
    import errno

    from click.testing import CliRunner

    from cnncodes.classifiers.runs import persist, records
    from cnncodes.cli import cli
    from cnncodes.pipeline import console

    store = copy_of(hostile_store, tmp_path)
    before = sorted((store / "runs").iterdir())

    def no_space(path, *args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
    monkeypatch.setattr(records if full == "record" else persist, "write_sealed", no_space)
    monkeypatch.setattr(console, "_installed", True)  # no native-stderr filter in a test
    result = CliRunner().invoke(cli, ["fit", "--store", str(store), "--head", "logreg", "--param", "Cs=[0.1]",
                                      "--quiet"])
    assert result.exit_code == 1 and not isinstance(result.exception, OSError)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: No space left on device") and "free space" in line
    assert sorted((store / "runs").iterdir()) == before  # no half-written run, hidden or not


def test_runs_table_shows_names_from_data_without_control_characters():
    from hostile import CONTROL

    hostile = "\x1b]0;pwned\x07\x1b[2J"  # would set the window title, then clear the screen
    record = {**fake_fit_record(), "head": hostile, "label": hostile, "features": hostile, "params": {hostile: 1},
              "feature_config": {"weights": hostile}, "run": "x"}
    text = format_runs([record], tables=[])
    assert not CONTROL.search(text) and text.count("\\x1b]0;pwned\\x07") >= 4


# -- issue 20: a run names the code that made it ------------------------------------------------------------------
def test_a_run_records_the_code_that_made_it(hostile_store):
    import cnncodes
    from cnncodes.features.provenance import code_version

    code = code_version()
    assert code.keys() == {"version", "source_sha256", "commit"} and code["version"] == cnncodes.__version__
    assert len(code["source_sha256"]) == 64 and (code["commit"] is None or len(code["commit"]) == 40)
    records = all_runs(hostile_store)  # made by fit_head
    assert records and all(r["code"] == code for r in records)


def package_copy(tmp_path):
    """The package's .py files under a new root, beside files that are not part of it."""
    from cnncodes.features import provenance

    copy = tmp_path / "cnncodes"
    for file in provenance.package_files(provenance.ROOT):
        target = copy / file.relative_to(provenance.ROOT)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, target)
    for other in ("tests/test_x.py", "bench/x.py", "README.md"):
        (copy / other).parent.mkdir(exist_ok=True)
        (copy / other).write_text("not the package\n")
    return copy


def test_the_source_hash_covers_the_package_files_and_changes_with_any_byte_of_them(tmp_path):
    from cnncodes.features.provenance import ROOT, source_sha256

    copy = package_copy(tmp_path)
    assert source_sha256(copy) == source_sha256(ROOT)  # tests/, bench/ and other files are not part of it
    heads = copy / "classifiers" / "heads" / "heads.py"
    original = heads.read_bytes()
    heads.write_bytes(original.replace(b"import", b"imporT", 1))
    assert source_sha256(copy) != source_sha256(ROOT)
    heads.write_bytes(original)
    (copy / "pipeline" / "new.py").write_text("")  # an added module is other code too
    assert source_sha256(copy) != source_sha256(ROOT)


def test_the_commit_is_named_only_for_an_unchanged_checkout_and_git_never_fails_a_run(tmp_path, monkeypatch):
    import subprocess

    from cnncodes.features import provenance

    copy = package_copy(tmp_path)
    assert provenance.git_commit(copy) is None  # not a repository
    git = ["git", "-C", str(copy), "-c", "user.name=t", "-c", "user.email=t@t", "-c", "commit.gpgsign=false"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run(git + args, check=True, capture_output=True)
    head = subprocess.run(git + ["rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    assert provenance.git_commit(copy) == head
    (copy / "tests" / "test_x.py").write_text("changed\n")  # not the package: still that commit
    assert provenance.git_commit(copy) == head
    (copy / "features" / "errors.py").write_text("changed\n")
    assert provenance.git_commit(copy) is None  # the source is not the commit's
    subprocess.run(git + ["checkout", "-q", "--", "features/errors.py"], check=True)
    (copy / "classifiers" / "untracked.py").write_text("")
    assert provenance.git_commit(copy) is None
    (copy / "classifiers" / "untracked.py").unlink()
    monkeypatch.setattr(provenance, "GIT", str(tmp_path / "no-git"))
    assert provenance.git_commit(copy) is None  # no git: no commit, and no error
