"""`cnncodes predict`: top-5 classes for image files, their codes computed with the run's backbone setup."""
from dataclasses import fields
from pathlib import Path

import numpy as np

from features.errors import UserError
from .runs import load_run


def scores(model, X) -> np.ndarray:
    """Class probabilities; a softmax of the margins for heads without predict_proba (the SVM)."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    z = model.decision_function(X)
    z = np.exp(z - z.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


def predict_images(run, paths: list, top: int = 5, batch_size: int = 32) -> list[list[tuple[str, float]]]:
    from pipeline.extract import DeviceStep, FeatureConfig, build_extractor
    from pipeline.images import decode_rgb, fit_square

    record, model = load_run(run)
    if model is None or record.get("kind") != "fit":
        raise UserError(f"{run} holds no fitted head: give a run made by `cnncodes fit`")
    side = record["image_shape"][0]
    images = []
    for p in map(Path, paths):
        if not p.is_file():
            raise UserError(f"image {p} not found")
        img = decode_rgb(p.read_bytes())
        if img is None:
            raise UserError(f"{p} is not a readable image (JPEG, PNG or BMP)")
        images.append(fit_square(img, side))  # the same ingest rule the store's images went through
    names = {f.name for f in fields(FeatureConfig)}
    config = FeatureConfig(**{k: v for k, v in record["feature_config"].items() if k in names})
    extractor, digest = build_extractor(config, (side, side))
    recorded = record["feature_config"].get("weights_sha256")
    if recorded is not None and digest != recorded:
        raise UserError(f"the backbone weights ({config.weights}) are not those the head's features were "
                        f"extracted with: restore them, or re-extract the features and fit again")
    outs = DeviceStep(extractor, batch_size)(np.stack(images))
    X = outs[1] if record["params"].get("spatial") else outs[0]
    probs = scores(model, X)
    classes = np.asarray(model.classes_)
    out = []
    for p in probs:
        best = np.argsort(-p)[:top]
        out.append([(record["class_names"][int(classes[i])], float(p[i])) for i in best])
    return out
