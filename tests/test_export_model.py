"""`cnncodes export-model`: one model of Keras's own layers, from raw uint8 images to what `predict` shows,
that loads and runs where cnncodes cannot be imported."""
import json
import shutil
import subprocess
import sys

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from cnncodes.cli import cli
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.backbones import BACKBONES
from conftest import run_cli

# Runs in a fresh interpreter in which `import cnncodes` fails: the exported files alone must do.
FRESH = """
import sys
sys.modules["cnncodes"] = None
import json, zipfile
import numpy as np
images = np.load(sys.argv[1])
out = {}
if sys.argv[2].endswith(".keras"):
    import keras
    model = keras.saving.load_model(sys.argv[2], safe_mode=True)
    out["scores"] = model.predict(images, verbose=0).tolist()
    out["classes"] = json.loads(zipfile.ZipFile(sys.argv[2]).read("classes.json"))["class_names"]
else:
    import tensorflow as tf
    interpreter = tf.lite.Interpreter(model_path=sys.argv[2])
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], images.shape)
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], images)
    interpreter.invoke()
    out["scores"] = interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).tolist()
    out["classes"] = json.load(open(sys.argv[2] + ".classes.json"))["class_names"]
print("RESULT " + json.dumps(out))
"""


def export(*args):
    """`cnncodes export-model ARGS` in this process (the subprocess runs are kept for what only they show)."""
    return CliRunner().invoke(cli, ["export-model", *map(str, args)])


def run_fresh(tmp_path, images, model_path):
    np.save(tmp_path / "images.npy", images)
    done = subprocess.run([sys.executable, "-c", FRESH, str(tmp_path / "images.npy"), str(model_path)],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(l for l in done.stdout.splitlines() if l.startswith("RESULT "))
    result = json.loads(line[len("RESULT "):])
    return np.asarray(result["scores"]), result["classes"]


def predicted_scores(run, images):
    """What `cnncodes predict` computes for these (store-sized) images: scores in the head's class order."""
    from cnncodes.classifiers.serving.predict import codes_of, feature_parts, load_fitted_head, scores

    record, head = load_fitted_head(run)
    X = codes_of(run, feature_parts(record), images, 64, record.get("spatial", False))
    margins = not hasattr(head, "predict_proba") or type(head).__name__ == "LinearSVM"
    return (head.decision_function(X) if margins else scores(head, X)), record


@pytest.fixture(scope="module")
def fitted(digits_store, tmp_path_factory):
    """The digits store (ResNet50 codes at 32 from saved weights) with a logreg, an svm and a dense head, and a gap
    head on the same network's maps."""
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    store = shutil.copytree(digits_store, tmp_path_factory.mktemp("export") / "store")
    weights = FeatureStore.open(store).feature_set("r50").config["weights"]
    extract_features(store, FeatureConfig(weights=weights, size=32, spatial=True), name="r50-maps", progress=False,
                     log=lambda m: None)
    runs = {head: fit_head(store, head, features="r50", params=params, log=lambda m: None)[0]
            for head, params in (("logreg", {"Cs": [0.1]}), ("svm", {}), ("dense", {"epochs": 3}))}
    runs["gap"] = fit_head(store, "gap", features="r50-maps", spatial=True, params={"epochs": 3}, log=lambda m: None)[0]
    return store, runs


@pytest.mark.slow
@pytest.mark.parametrize("head", ["logreg", "svm", "dense", "gap"])  # every head fit makes
def test_the_keras_file_equals_predict_in_a_process_without_cnncodes(fitted, head, tmp_path):
    store, runs = fitted
    out = tmp_path / "model.keras"
    done = export("--model", runs[head], "--out", out)
    assert done.exit_code == 0 and "wrote" in done.output, done.output
    images = FeatureStore.open(store).images(split="test")
    scores, classes = run_fresh(tmp_path, images, out)
    expected, record = predicted_scores(runs[head], images)
    expected = np.column_stack([-expected, expected]) if expected.ndim == 1 else expected
    assert classes == record["class_names"]  # digits 0..9, in the head's class order
    assert (scores.argmax(1) == expected.argmax(1)).mean() >= 0.999
    assert np.abs(scores - expected).max() < 1e-4 * max(1.0, np.abs(expected).max())


@pytest.mark.slow
def test_tflite_files_run_without_cnncodes_and_quantized_ones_stay_close(fitted, tmp_path):
    store, runs = fitted
    images = FeatureStore.open(store).images(split="test")
    expected, _ = predicted_scores(runs["logreg"], images)
    for quantize in (None, "fp16", "int8"):
        out = tmp_path / f"model-{quantize}.tflite"
        options = ["--quantize", quantize] if quantize else []
        if quantize == "int8":  # as a user runs it: the converters' C++ chatter never reaches the console
            done = run_cli("export-model", "--model", runs["logreg"], "--out", out, *options)
            assert done.returncode == 0, done.stderr
            said = done.stdout + done.stderr
            assert "fully_quantize" not in said and "TensorSpec" not in done.stdout and "Warning" not in said
            # the backbone int8, matrices float
            assert int8_and_float_weights(out) == ({"CONV_2D"}, {"FULLY_CONNECTED"})
        else:
            said = export("--model", runs["logreg"], "--out", out, *options).output
        scores, classes = run_fresh(tmp_path, images, out)
        agreement = (scores.argmax(1) == expected.argmax(1)).mean()
        if quantize:  # how often the quantized file keeps the float answer, on 100 training images not calibrated on
            train = FeatureStore.open(store).images(split="train")
            checked = train[np.sort(np.random.default_rng(0).permutation(len(train))[200:300])]
            float_answers, _ = predicted_scores(runs["logreg"], checked)
            quantized_answers, _ = run_fresh(tmp_path, checked, out)
            kept = (quantized_answers.argmax(1) == float_answers.argmax(1)).mean()
            assert f"class on {100 * kept:.1f}% of {len(checked)} training images the calibration did not use" in said
        if quantize is None:
            assert np.abs(scores - expected).max() < 1e-4 and agreement >= 0.999
        elif quantize == "fp16":  # half-precision weights move the probabilities a little, the answers barely
            assert agreement >= 0.9, agreement
        # int8's accuracy depends on the network's activation ranges: the test's stand-in weights (random BatchNorm
        # statistics) are no guide, so bench/export.py measures it with real ImageNet weights
        assert np.allclose(scores.sum(axis=1), 1.0, atol=1e-2) and len(classes) == 10


def int8_and_float_weights(tflite_file) -> tuple[set, set]:
    """The ops (convolutions and matrix products) whose weights a .tflite file holds in int8, and in float32."""
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(tflite_file))
    dtypes = {t["index"]: t["dtype"] for t in interpreter.get_tensor_details()}
    found = {np.int8: set(), np.float32: set()}
    for op in interpreter._get_ops_details():  # no public listing of a model's ops and their tensors
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED") and dtypes[op["inputs"][1]] in found:
            found[dtypes[op["inputs"][1]]].add(op["op_name"])
    return found[np.int8], found[np.float32]


def test_a_savedmodel_folder_serves_the_same_scores_and_holds_the_class_names(fitted, tmp_path):
    import tensorflow as tf

    store, runs = fitted
    out = tmp_path / "served"
    assert export("--model", runs["logreg"], "--out", out).exit_code == 0
    images = FeatureStore.open(store).images(split="test")[:50]
    loaded = tf.saved_model.load(str(out))  # held: its variables live as long as it does
    served = loaded.serve(tf.constant(images)).numpy()
    expected, record = predicted_scores(runs["logreg"], images)
    assert np.abs(served - expected).max() < 1e-4
    assert json.loads((out / "classes.json").read_text())["class_names"] == record["class_names"]


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_the_portable_device_step_equals_the_extractors(name, tmp_path):
    """For every registered backbone (random weights, tiny sizes): resize, preprocessing and the folded backbone
    in built-in layers give the extractor's codes from the same uint8 images."""
    import keras

    from cnncodes.pipeline.extraction.extract import FeatureConfig, build_multi_extractor
    from cnncodes.pipeline.extraction.portable import portable_codes

    size = max(32, BACKBONES[name].min_size)
    setup = FeatureConfig(name, "none", size)
    images = np.random.default_rng(0).integers(0, 256, (4, 12, 12, 3), dtype=np.uint8)
    extractor, _, _ = build_multi_extractor(setup, (12, 12), [None])
    inputs = keras.Input((12, 12, 3), dtype="uint8")
    outputs, _ = portable_codes(inputs, (12, 12), 12, setup, [None], False, "")
    portable = keras.Model(inputs, outputs)
    want = np.asarray(extractor.predict(images, verbose=0))
    got = np.asarray(portable.predict(images, verbose=0))
    assert np.abs(got - want).max() <= 1e-5 * np.abs(want).max()


@pytest.mark.parametrize("shape", [(40, 50), (50, 40), (20, 28), (12, 12)])
def test_the_models_scaling_and_centre_crop_is_the_ingests(shape):
    """Images of another size are brought to the store's side in the model as fit_square brings them in the
    ingest: exactly on float images; on uint8 ones within OpenCV's fixed-point rounding (1 level)."""
    from cnncodes.pipeline.extraction.portable import fit_square_matrices
    from cnncodes.pipeline.images import fit_square

    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, (*shape, 3)).astype(np.float32)
    rows, cols = fit_square_matrices(shape, 16)
    ours = np.einsum("Hh,hwc,Ww->HWc", rows, img, cols)
    assert np.abs(ours - fit_square(img, 16)).max() < 1e-3
    ours8 = np.round(np.clip(ours, 0, 255))
    assert np.abs(ours8 - fit_square(img.astype(np.uint8), 16)).max() <= 1


def test_the_device_resize_and_the_portable_one_round_the_same_pixels():
    """The extractor's resize and the exported model's sum their products in one order, so near-half values
    (which an einsum summed to the other side) round alike: every pixel equal, not only close."""
    import keras

    from cnncodes.pipeline.extraction.portable import matrix_resize
    from cnncodes.pipeline.layers import BicubicResize

    images = np.random.default_rng(3).integers(0, 256, (256, 32, 32, 3)).astype(np.uint8)
    device = BicubicResize((32, 32), 224)
    inputs = keras.Input((32, 32, 3), dtype="uint8")
    portable = keras.Model(inputs, matrix_resize(keras.layers.Rescaling(1.0)(inputs), device.rows, device.cols, "r"))
    for lo in range(0, len(images), 64):
        batch = images[lo:lo + 64]
        assert np.array_equal(np.asarray(device(batch)), np.asarray(portable(batch)))


def test_the_rounding_layer_rounds_halves_to_even_as_the_extractor_does():
    import keras

    from cnncodes.pipeline.extraction.portable import ROUNDING_BINS

    x = np.concatenate([np.arange(256) + 0.5, np.arange(256) - 1e-4, np.arange(256) + 0.4999,
                        np.random.default_rng(0).uniform(0, 255, 1000)]).astype(np.float32)
    x = np.clip(x, 0, 255)
    layer = keras.layers.Discretization(bin_boundaries=ROUNDING_BINS, output_mode="int")
    assert np.array_equal(np.asarray(layer(x)), np.asarray(keras.ops.round(x)).astype(int))


def test_bad_requests_are_one_line_and_leave_nothing_behind(fitted, tmp_path):
    store, runs = fitted
    taken = tmp_path / "taken.keras"
    taken.write_text("mine")
    damaged = tmp_path / "damaged"
    shutil.copytree(runs["logreg"], damaged)
    (damaged / "model.npz").write_bytes(b"not arrays")
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(runs["logreg"], elsewhere)  # a run folder outside its store: nothing to calibrate int8 on
    for args, says in (
            (["--model", runs["logreg"], "--out", tmp_path / "m.onnx"], "names no model format"),
            (["--model", runs["logreg"], "--out", taken], "already exists"),
            (["--model", runs["logreg"], "--out", tmp_path / "m.keras", "--quantize", "int8"], "is for a .tflite"),
            (["--model", elsewhere, "--out", tmp_path / "m.tflite", "--quantize", "int8"], "calibrates on images"),
            (["--model", runs["logreg"], "--out", tmp_path / "no" / "m.keras"], "its folder does not exist"),
            (["--model", runs["logreg"], "--out", "/proc/m.keras"], "/proc/m.keras: its folder cannot be written"),
            (["--model", damaged, "--out", tmp_path / "m.keras"], "damaged"),
            (["--model", runs["logreg"], "--out", tmp_path / "m.keras", "--input-size", "0x9"], "is not N or HxW")):
        done = export(*args)
        lines = done.output.strip().splitlines()
        assert done.exit_code != 0 and len(lines) == 1 and says in lines[0], (args, done.output)
    assert taken.read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["damaged", "elsewhere", "taken.keras"]


def test_images_of_another_size_are_scaled_and_cropped_inside_the_model(fitted, tmp_path):
    """--input-size 20x14: the model takes the camera's size and does the ingest's fit_square itself."""
    import keras

    from cnncodes.pipeline.images import fit_square

    store, runs = fitted
    out = tmp_path / "wide.keras"
    assert export("--model", runs["logreg"], "--out", out, "--input-size", "14x20").exit_code == 0
    small = FeatureStore.open(store).images(split="test")[:40]
    wide = np.stack([cv2.resize(img, (20, 14), interpolation=cv2.INTER_CUBIC) for img in small])
    model = keras.saving.load_model(out)
    assert model.input.shape[1:] == (14, 20, 3)
    expected, _ = predicted_scores(runs["logreg"], np.stack([fit_square(img, small.shape[1]) for img in wide]))
    got = model.predict(wide, verbose=0)
    assert (got.argmax(1) == expected.argmax(1)).mean() >= 0.95  # uint8 rounding of the ingest may differ by 1 level


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cnn", "finetune"])  # wrn is built-in layers only: nothing of ours to replace
def test_a_pixel_baseline_exports_to_the_same_probabilities(digits_store, kind, tmp_path):
    """The trained network, its resize and preprocessing in built-in layers, run without cnncodes: the
    probabilities the baseline's own model gives (8x8 digits, so the CNN upsamples on the device too)."""
    from test_baselines import ON_8PX

    from cnncodes.classifiers.baselines.train import build, train_baseline

    store = shutil.copytree(digits_store, tmp_path / "store")
    run, record = train_baseline(store, ON_8PX[kind], progress=False, log=lambda m: None)
    out = tmp_path / "baseline.keras"
    done = export("--model", run, "--out", out)
    assert done.exit_code == 0, done.output
    images = FeatureStore.open(store).images(split="test")
    trained = build(ON_8PX[kind], tuple(record["image_shape"]), len(record["class_names"])).model
    trained.load_weights(run / "model.weights.h5")
    expected = trained.predict(images, verbose=0)
    scores, classes = run_fresh(tmp_path, images, out)
    assert classes == record["class_names"]
    assert (scores.argmax(1) == np.asarray(record["test_predictions"])).mean() >= 0.999
    assert np.abs(scores - expected).max() < 1e-4


def test_weights_changed_since_extraction_are_refused_as_predict_refuses_them(fitted, tmp_path, resnet_weights):
    import keras

    from cnncodes.features.sealed import read_sealed, write_sealed

    store, runs = fitted
    run = shutil.copytree(runs["logreg"], tmp_path / "run")
    weights = tmp_path / "mine.weights.h5"
    keras.utils.set_random_seed(8)
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
    record = read_sealed(run / "record.json")
    record["feature_config"]["weights"] = str(weights)  # as if the codes came from this file, which has changed
    write_sealed(run / "record.json", record)
    done = export("--model", run, "--out", tmp_path / "m.keras")
    assert done.exit_code == 1 and "not those the head's features were extracted with" in done.output
    assert not (tmp_path / "m.keras").exists()
