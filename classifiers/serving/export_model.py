"""`cnncodes export-model`: a fitted head and everything before it as one Keras model of built-in layers.

uint8 RGB images in (a batch of one size, `--input-size`, by default the store's), class probabilities out
(for the SVM its decision scores, so named): the ingest's scaling and centre crop, the device resize, the
preprocessing, the backbone with BatchNorm folded, the pooled cut (or the cuts joined), the standardisation
and the head. Written by the suffix of --out:

    PATH.keras   loads with `keras.saving.load_model` (safe mode) where cnncodes is not installed
    DIR          a SavedModel (`model.export`) for TF Serving, TensorFlow backend only
    PATH.tflite  float32, or float16 / int8 weights with --quantize (int8 calibrated on the store's images)

The class names travel with the model: in the .keras file (`classes.json` in its zip) and the SavedModel
folder, and beside a .tflite file as PATH.classes.json. Nothing is left at --out unless all of it was written.
"""
import contextlib
import io
import json
import os
import warnings
import zipfile
from pathlib import Path

import cv2
import keras
import numpy as np

from cnncodes.classifiers.baselines.train import build
from cnncodes.classifiers.heads.heads import KerasHead, LogRegHead
from cnncodes.classifiers.heads.knn import KnnHead
from cnncodes.classifiers.runs.records import load_run
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features import schema
from cnncodes.features.errors import MAX_IMAGE_SIDE, UserError
from cnncodes.features.outputs import atomic_write, check_new_output
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.extraction.portable import portable_clone, portable_codes

from .predict import check_weights, checked_fitted_head, feature_parts, part_configs, record_spatial, shared_setups

FORMATS = {".keras": "keras", ".tflite": "tflite", "": "savedmodel"}
QUANTIZE = ("fp16", "int8")
CLASSES_FILE = "classes.json"


def export_format(out: Path, quantize: str | None) -> str:
    """The format --out's suffix names; one line naming the fix when it names none or is already there."""
    out = Path(out)
    kind = FORMATS.get(out.suffix.lower())
    if kind is None:
        raise UserError(f"--out {out}: {out.suffix!r} names no model format; end it in .keras or .tflite, "
                        f"or give a folder name without a suffix for a SavedModel")
    check_new_output(out)
    if kind == "tflite":  # its classes beside it, written with it
        check_new_output(out.with_name(out.name + ".classes.json"), option="--out's class names")
    if quantize is not None and kind != "tflite":
        raise UserError(f"--quantize {quantize} is for a .tflite model: give --out PATH.tflite, or drop --quantize")
    if quantize is not None and quantize not in QUANTIZE:
        raise UserError(f"--quantize {quantize}: choose one of {', '.join(QUANTIZE)}")
    if kind in ("savedmodel", "tflite") and keras.backend.backend() != "tensorflow":
        raise UserError(f"a {'SavedModel' if kind == 'savedmodel' else '.tflite model'} is written by TensorFlow: "
                        f"run with KERAS_BACKEND=tensorflow (the default), or write a .keras file")
    return kind


def build_export_model(run, input_hw: tuple | None = None, trust_pickle: bool = False):
    """(model, class names in output order, "probability" or "decision score") for the head fitted in `run`, or
    the pixel baseline trained there."""
    record, head = load_run(run, trust_pickle)  # read once: a baseline's record, or a fitted head checked below
    if record.get("kind") == "baseline":
        return baseline_model(Path(run), record, input_hw), list(record["class_names"]), "probability"
    record, head = checked_fitted_head(run, record, head)
    if isinstance(head, KnnHead):  # a model of built-in layers has no top-k search over stored rows
        raise UserError(f"{run}: a knn head searches its {len(head.codes_):,} training codes at every prediction, "
                        f"which Keras's built-in layers cannot do: use `cnncodes predict --model {run}`, or fit and "
                        f"export another head (logreg, svm, dense, gap)")
    side = record["image_shape"][0]
    in_hw = tuple(input_hw) if input_hw else (side, side)
    if not all(1 <= n <= MAX_IMAGE_SIDE for n in in_hw):
        raise UserError(f"--input-size {in_hw[0]}x{in_hw[1]}: each side must be 1 to {MAX_IMAGE_SIDE}")
    spatial = record_spatial(record)
    parts = feature_parts(record)
    if spatial and len(parts) > 1:
        raise UserError(f"{run}: a head fitted on joined spatial maps cannot be exported; fit it on one set")
    configs = part_configs(parts, run)
    if any(c.flip_average for c in configs):
        raise UserError(f"{run}: the head's features are flip-averaged, which export-model does not build yet; "
                        f"fit the head on a set extracted without --flip-average")

    images = keras.Input((*in_hw, 3), dtype="uint8", name="images")
    setups = shared_setups(configs)
    codes = [None] * len(configs)
    for g, (setup, members) in enumerate(setups.items()):
        outs, digests = portable_codes(images, in_hw, side, setup, [configs[i].layer for i in members], spatial,
                                       prefix=f"part{g}_" if len(setups) > 1 else "")
        check_weights(parts, members, digests, setup)
        for i, out in zip(members, outs):
            codes[i] = out
    x = codes[0] if len(codes) == 1 else keras.layers.Concatenate(name="joined_codes")(codes)
    # the SVM's calibrated probabilities (probability=True) are an average of calibrators, not one layer: its
    # margins go out, named so; every other head's probabilities are its softmax
    kind = "probability" if isinstance(head, (KerasHead, LogRegHead)) else "decision score"
    outputs = head_layers(head, x, "probabilities" if kind == "probability" else "decision_scores")
    model = keras.Model(images, outputs, name="cnncodes_classifier")
    class_names = [record["class_names"][int(c)] for c in head.classes_]
    return model, class_names, kind


def baseline_model(run: Path, record: dict, input_hw: tuple | None):
    """A pixel baseline's trained network (cnn, finetune, wrn) in built-in layers, for the store's image size."""
    side = record["image_shape"][0]
    if input_hw and tuple(input_hw) != (side, side):
        raise UserError(f"--input-size: a baseline takes images of the store's size, {side}x{side}; "
                        f"bring them to it first (cnncodes predict does), or drop --input-size")
    try:
        config = BaselineConfig(**record["params"])
    except (TypeError, ValueError, KeyError) as e:
        raise UserError(f"{run}/record.json has baseline settings cnncodes cannot use ({e}): train it again") from None
    if config.from_features:
        raise UserError(f"{run} was fine-tuned from cached maps, so it holds only the layers above the cut; "
                        f"export-model needs a fine-tune from pixels")
    if not (run / "model.weights.h5").is_file():
        raise UserError(f"{run} has no model.weights.h5: the run did not finish, or is damaged; train it again")
    built = build(config, tuple(record["image_shape"]), len(record["class_names"]))
    try:
        built.model.load_weights(run / "model.weights.h5")
    except (ValueError, OSError) as e:
        raise UserError(f"{run}/model.weights.h5 does not fit the baseline its record describes ({e}): "
                        f"train it again") from None
    return portable_clone(built.model)


def head_layers(head, x, output_name: str):
    """The head's outputs on codes `x`: a linear head (logreg, svm) as one Dense layer with the standardisation
    folded in; a Keras head (dense, gap) as a Normalization before its own network."""
    scaler = head.scaler_
    mean = scaler.mean_.astype(np.float64) if scaler is not None else 0.0
    scale = scaler.scale_.astype(np.float64) if scaler is not None else 1.0
    if isinstance(head, KerasHead):
        if scaler is not None:
            x = keras.layers.Normalization(mean=scaler.mean_, variance=scaler.scale_ ** 2, name="standardize")(x)
        network = head.model_
        return keras.layers.Identity(name=output_name)(network(x))
    if len(x.shape) == 4:  # maps: the linear heads learn their pooled vectors (inputs.as_vectors)
        x = keras.layers.GlobalAveragePooling2D(name="pooled")(x)
    linear = head.model_ if isinstance(head, LogRegHead) else head  # logreg wraps scikit-learn's; the SVM is its own
    W, b = np.asarray(linear.coef_, np.float64), np.asarray(linear.intercept_, np.float64).reshape(-1)
    W, b = W / scale, b - (W / scale) @ np.broadcast_to(mean, W.shape[1:])  # x -> (x - mean) / scale folded in
    probabilities = output_name == "probabilities"
    if W.shape[0] == 1:  # two classes, one score for the second: [0, z] under softmax, [-z, z] as margins
        W, b = ((np.vstack([0 * W, W]), np.array([0.0, b[0]])) if probabilities
                else (np.vstack([-W, W]), np.array([-b[0], b[0]])))
    dense = keras.layers.Dense(len(W), activation="softmax" if probabilities else None, name=output_name)
    outputs = dense(x)  # built by the call: its weights can be set at once
    dense.set_weights([W.T.astype(np.float32), b.astype(np.float32)])
    return outputs


def export_model(run, out, quantize: str | None = None, input_hw: tuple | None = None, store=None,
                 calibration_images: int = 200, trust_pickle: bool = False, log=print) -> dict:
    """Writes the model to `out` in the format its suffix names; returns what was written. int8 calibrates on
    `store`'s training images (default: the store the run folder lies in, STORE/runs/RUN)."""
    out, run = Path(out), Path(run)
    kind = export_format(out, quantize)
    if quantize == "int8":
        store = Path(store) if store is not None else run.resolve().parent.parent
        if not (store / schema.DATA_FILE).is_file():
            raise UserError(f"--quantize int8 calibrates on images, and {store} is not a store: give --store DIR, "
                            f"the store the head was fitted from")
    model, class_names, score = build_export_model(run, input_hw, trust_pickle)
    classes = {"class_names": class_names, "output": score, "input": "uint8 RGB images, (batch, "
               f"{model.input.shape[1]}, {model.input.shape[2]}, 3)"}
    side_files = [out.with_name(out.name + ".classes.json")] if kind == "tflite" else []
    # the model and its classes land together or not at all
    with atomic_write(out, *side_files, exclusive=True) as (staged, *beside):
        if kind == "keras":
            model.save(staged)
            with zipfile.ZipFile(staged, "a") as z:
                z.writestr(CLASSES_FILE, json.dumps(classes, indent=1))
        elif kind == "savedmodel":
            model.export(staged, format="tf_saved_model", verbose=False)
            (staged / CLASSES_FILE).write_text(json.dumps(classes, indent=1))
        else:
            staged.write_bytes(tflite_bytes(model, quantize, store, calibration_images))
            if quantize:
                agreement = quantized_agreement(model, staged,
                                                store if store is not None else run.resolve().parent.parent,
                                                calibration_images)
                log(f"export-model: {agreement}")
            beside[0].write_text(json.dumps(classes, indent=1))
    log(f"export-model: wrote {out} ({kind}{f', {quantize}' if quantize else ''}): uint8 images of "
        f"{model.input.shape[1]}x{model.input.shape[2]} in, {len(class_names)} classes' "
        f"{'probabilities' if score == 'probability' else 'decision scores'} out")
    return {"path": str(out), "format": kind, "quantize": quantize, "classes": class_names, "output": score}


def tflite_bytes(model, quantize: str | None, store, calibration_images: int) -> bytes:
    import tensorflow as tf  # the converter is TensorFlow's own; export_format refuses other backends first

    with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():  # the converter's own chatter
        warnings.simplefilter("ignore")
        converter = tf.lite.TFLiteConverter.from_keras_model(model)
        if quantize == "fp16":
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.target_spec.supported_types = [tf.float16]
        elif quantize == "int8":  # weights and activations, their ranges from the calibration images
            images = calibration_batch(store, model.input.shape[1:3], calibration_images)
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            converter.representative_dataset = lambda: ([img[None]] for img in images)
            # The matrix products stay float32 (a few hundred KB): int8 weights of the resize round the pixels
            # differently, and a standardised head's weights span 500x within a row, so most of them quantize
            # to 0 (the probe in bench/HISTORY.md: 66% of answers kept with them in int8, 87% without). TFLite
            # keeps ops in float only through its quantization debugger, which calibrates twice (its instrumented
            # model first): an export of a minute rather than half of one.
            debugger = tf.lite.experimental.QuantizationDebugger(
                converter=converter, debug_dataset=lambda: ([img[None]] for img in images[:1]),
                debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_ops=FLOAT_OPS))
            return debugger.get_nondebug_quantized_model()
        return converter.convert()


FLOAT_OPS = ["FULLY_CONNECTED"]  # TFLite ops an int8 export keeps in float32 (its Dense layers)


AGREEMENT_IMAGES = 100  # training images each quantized export is checked on: seconds, and a stated share


def quantized_agreement(model, tflite_file: Path, store, calibrated: int, n: int = AGREEMENT_IMAGES) -> str:
    """How often the quantized file gives the float model's class, on up to n of the store's training images that
    the calibration (its first `calibrated` of the same draw) did not use: never the test split, which is for the
    scores alone (quantization can cost much: bench/HISTORY.md). One sentence; what could not be checked, if not."""
    import tensorflow as tf

    store = Path(store)
    if not (store / schema.DATA_FILE).is_file():
        return f"not checked against the float model: {store} is not a store (give --store DIR)"
    s = FeatureStore.open(store)
    images = training_draw(s, calibrated, calibrated + n)
    if not len(images):
        return "not checked against the float model: the calibration used every training image of the store"
    images = calibration_resize(images, model.input.shape[1:3])
    wanted = np.asarray(model.predict(images, batch_size=32, verbose=0)).argmax(1)
    with warnings.catch_warnings():  # tf.lite.Interpreter's notice that LiteRT will replace it
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(tflite_file), num_threads=os.cpu_count())
    index_in, index_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(index_in, (1, *images.shape[1:]))
    interpreter.allocate_tensors()
    got = []
    for img in images:
        interpreter.set_tensor(index_in, img[None])
        interpreter.invoke()
        got.append(int(interpreter.get_tensor(index_out)[0].argmax()))
    same = float(np.mean(np.asarray(got) == wanted))
    advice = "" if same >= 0.99 else ": check it on your data before you ship it"
    return (f"the quantized model gives the float model's class on {100 * same:.1f}% of {len(images)} training "
            f"images the calibration did not use{advice}")


def calibration_resize(images: np.ndarray, in_hw) -> np.ndarray:
    return np.stack([img if img.shape[:2] == tuple(in_hw) else cv2.resize(img, (in_hw[1], in_hw[0])) for img in images])


def calibration_batch(store, in_hw, n: int) -> np.ndarray:
    """Up to n training images of the store (the first of a seeded draw), resized to the model's input size."""
    return calibration_resize(training_draw(FeatureStore.open(store), 0, n), in_hw)


def training_draw(store: FeatureStore, start: int, stop: int) -> np.ndarray:
    """Training images start to stop of one seeded order of them, in store order: the calibration takes the first,
    the agreement check the next, so the two never share an image."""
    images = store.images(split="train")
    pick = np.random.default_rng(0).permutation(len(images))[start:stop]
    return images[np.sort(pick)]
