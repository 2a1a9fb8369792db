"""The int8 export's design, checked on training photos only (issue 38): which ops `export-model --quantize int8`
keeps in float32. It keeps the matrix products (FULLY_CONNECTED: the resize's and the head's); the choice was
first probed on 200 test photos. Here each variant is exported from the same fitted head and compared with the
float model on training photos its calibration did not use; the test split is never read.

    python bench/int8_design.py [--store bench/out/cifar10-full] [--images 500]

The store and head are bench/anchors.py's (Lite0's three cuts at 224, ImageNet weights; logreg, seed 0: made here
when missing). Writes one record per variant to bench/records/.
"""
import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from bench.anchors import CUTS, DATASET  # noqa: E402
from bench.conditions import conditions  # noqa: E402
from bench.records import begin, note_option, save  # noqa: E402

VARIANTS = {"every op int8": [], "matrix products float32 (the export's choice)": ["FULLY_CONNECTED"]}
PARAMS = {"Cs": [0.001, 0.003, 0.01], "random_state": 0}  # bench/anchors.py's head, seed 0
CALIBRATION = 200  # export-model's default


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Which ops an int8 export keeps in float32, checked on training photos "
                                            "only; writes records to bench/records/")
    p.add_argument("--store", default="bench/out/cifar10-full")
    p.add_argument("--images", type=int, default=500, help="training photos, beyond the calibration's, compared")
    note_option(p)
    return p


def fitted_before(store, features: str) -> dict | None:
    """The newest logreg run on these codes with the bench's settings, made by any code."""
    from cnncodes.classifiers.runs.records import all_runs

    runs = [r for r in all_runs(store) if r.get("kind") == "fit" and r["head"] == "logreg"
            and r["features"] == features and all(r["params"].get(k) == v for k, v in PARAMS.items())]
    return max(runs, key=lambda r: r["created"]) if runs else None


def tflite_answers(path: Path, images: np.ndarray) -> np.ndarray:
    import tensorflow as tf

    interpreter = tf.lite.Interpreter(model_path=str(path), num_threads=os.cpu_count())
    index_in, index_out = interpreter.get_input_details()[0]["index"], interpreter.get_output_details()[0]["index"]
    interpreter.resize_tensor_input(index_in, (1, *images.shape[1:]))
    interpreter.allocate_tensors()
    answers = []
    for img in images:
        interpreter.set_tensor(index_in, img[None])
        interpreter.invoke()
        answers.append(int(interpreter.get_tensor(index_out)[0].argmax()))
    return np.asarray(answers)


def main():
    args = parser().parse_args()
    run = begin(__file__, note=args.note)  # a clean commit, before any work
    from cnncodes.classifiers.evaluation.fit import fit_head
    from cnncodes.classifiers.serving import export_model
    from cnncodes.features.store import FeatureStore
    from cnncodes.pipeline.backbones import get_backbone
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_layers
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    os.chdir(ROOT)
    print(conditions({"store": args.store}), flush=True)
    quiet = dict(progress=False, log=lambda m: None)
    store = ingest(args.store, IngestConfig(DATASET), **quiet).path
    config = FeatureConfig("efficientnet_lite0", "imagenet", get_backbone("efficientnet_lite0").native_size)
    features = "+".join(r.name for r in extract_layers(store, config, CUTS[:3], **quiet))
    fitted = fitted_before(store, features)  # any code's: a new fit would score the test split again
    fit_run = Path(fitted["run"]) if fitted else fit_head(store, "logreg", features=features, params=PARAMS)[0]
    other = {} if fitted else {"fixed-codes": 1}  # fit_head scores the test split: counted in its family
    model, _, _ = export_model.build_export_model(fit_run)
    images = export_model.calibration_resize(
        export_model.training_draw(FeatureStore.open(store), CALIBRATION, CALIBRATION + args.images),
        model.input.shape[1:3])
    wanted = np.asarray(model.predict(images, batch_size=32, verbose=0)).argmax(1)
    print(f"\nint8 exports of {fit_run.name} against the float model, on {len(images)} training photos the "
          f"calibration did not use\n\n| ops kept in float32 | same class (%) | file (MB) |\n| --- | --- | --- |")
    for variant, ops in VARIANTS.items():
        export_model.FLOAT_OPS = ops
        start = time.time()
        data = export_model.tflite_bytes(model, "int8", store, CALIBRATION)
        seconds = time.time() - start
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "model.tflite"
            path.write_bytes(data)
            same = float(np.mean(tflite_answers(path, images) == wanted))
        print(f"| {variant} | {100 * same:.1f} | {len(data) / 1e6:.1f} |", flush=True)
        save(run, f"export-design/int8/{'-'.join(ops) or 'none'}", table="export-design", row=f"int8, {variant}",
             family="export", seeds=[0], test_accuracy=None, headline=False,
             weights="ImageNet (EfficientNet-Lite0, published)", agreement=same, images=len(images),
             megabytes=round(len(data) / 1e6, 2), wall_seconds=round(seconds, 1), features=features, head="logreg",
             fit_run=fit_run.name, other_scorings=other if ops else {})  # counted once, on one record


if __name__ == "__main__":
    main()
