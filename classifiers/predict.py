"""`cnncodes predict`: top-5 classes for image files, their codes computed with the run's backbone setup."""
from dataclasses import fields, replace
from pathlib import Path

import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.features.limits import MAX_IMAGE_SIDE
from cnncodes.pipeline.backbones import BACKBONES
from cnncodes.pipeline.extract import DeviceStep, FeatureConfig, build_multi_extractor
from cnncodes.pipeline.images import decode_rgb, fit_square
from .runs import load_run
from .values import value_problem


def codes_of(run, parts: list, images: np.ndarray, batch_size: int, spatial: bool) -> np.ndarray:
    """The images' codes as the head's features were made: each part's cut from one pass per backbone setup
    (parts that differ only in their layer share it), joined in the parts' order."""
    names = {f.name for f in fields(FeatureConfig)}
    try:
        configs = [FeatureConfig(**{k: v for k, v in p.items() if k in names and k not in ("views", "augmentation")})
                   for p in parts]
    except (TypeError, ValueError) as e:
        raise UserError(f"{run}/record.json has a feature_config cnncodes cannot use ({e}): "
                        f"fit the head again") from None
    codes = [None] * len(configs)
    setups = {}
    for i, c in enumerate(configs):
        setups.setdefault(replace(c, layer=None), []).append(i)
    for setup, members in setups.items():
        model, _, digests = build_multi_extractor(setup, images.shape[1:3], [configs[i].layer for i in members])
        for i, digest in zip(members, digests):
            recorded = parts[i].get("weights_sha256")
            if recorded is not None and digest != recorded:
                raise UserError(f"the backbone weights ({setup.weights}) are not those the head's features were "
                                f"extracted with: restore them, or re-extract the features and fit again")
        outs = DeviceStep(model, batch_size)(images)
        stride = 2 if setup.spatial else 1
        for j, i in enumerate(members):
            codes[i] = outs[stride * j + 1] if spatial else outs[stride * j]
    return codes[0] if len(codes) == 1 else np.concatenate(codes, axis=1)


def scores(model, X) -> np.ndarray:
    """Class probabilities for heads that have them; the decision scores (margins) of those that do
    not (the SVM), which are not probabilities and are never shown as such."""
    if hasattr(model, "predict_proba"):
        return model.predict_proba(X)
    z = np.asarray(model.decision_function(X))
    return np.column_stack([-z, z]) if z.ndim == 1 else z  # two classes: one margin, for the second


def score_kind(model) -> str:
    return "probability" if hasattr(model, "predict_proba") else "decision score"


FIT_KEYS = {"feature_config": dict, "image_shape": list, "params": dict}  # what predict needs beyond any run's
FEATURE_CONFIG_RULES = {"backbone": "resnet50", "size": 224, "precision": "fp32", "seed": 0}  # name: its default


def load_fitted_head(run, trust_pickle: bool = False):
    """(record, head) of a run made by `cnncodes fit`, or one UserError saying what is wrong with it."""
    record, model = load_run(run, trust_pickle=trust_pickle)
    if model is None or record.get("kind") != "fit":
        raise UserError(f"{run} holds no fitted head: give a run made by `cnncodes fit`")
    missing = [k for k, kind in FIT_KEYS.items() if not isinstance(record.get(k), kind)]
    if missing:
        raise UserError(f"{run}/record.json lacks {', '.join(missing)}: the run is damaged or was not made by "
                        f"`cnncodes fit`; fit the head again")
    shape = record["image_shape"]
    if not (len(shape) == 3 and all(isinstance(n, int) and not isinstance(n, bool) for n in shape)
            and 1 <= shape[0] == shape[1] <= MAX_IMAGE_SIDE and shape[2] == 3):
        raise UserError(f"{run}/record.json has image_shape {shape!r}, not (side, side, 3) with a side of 1 to "
                        f"{MAX_IMAGE_SIDE}: fit the head again")
    parts = feature_parts(record)
    problems = [p for part in parts for p in config_problems(part)] if parts else ["no feature configuration"]
    if problems:
        raise UserError(f"{run}/record.json has a feature_config cnncodes cannot use ({problems[0]}): "
                        f"fit the head again")
    classes = np.asarray(getattr(model, "classes_", []))
    if classes.dtype.kind not in "iu" or not ((0 <= classes) & (classes < len(record["class_names"]))).all():
        raise UserError(f"{run}: the head's classes do not match the record's {len(record['class_names'])} "
                        f"class names: fit the head again")
    return record, model


def feature_parts(record) -> list:
    """The feature configurations the head's codes were made with: one, or one per set of an `A+B` join."""
    config = record["feature_config"]
    parts = config["parts"] if "parts" in config else [config]
    return parts if isinstance(parts, list) and all(isinstance(p, dict) for p in parts) else []


def config_problems(part: dict) -> list[str]:
    config = {name: part.get(name, default) for name, default in FEATURE_CONFIG_RULES.items()}
    problems = [p for p in (value_problem(name, value) for name, value in config.items()) if p]
    if not problems and config["size"] < BACKBONES[config["backbone"]].min_size:
        problems.append(f"size {config['size']} is under {config['backbone']}'s least, "
                        f"{BACKBONES[config['backbone']].min_size}")
    return problems


def predict_images(run, paths: list, top: int = 5, batch_size: int = 32,
                   trust_pickle: bool = False) -> list[list[tuple[str, float]]]:
    """Top classes per image with their scores (see `predict_scored`)."""
    return predict_scored(run, paths, top, batch_size, trust_pickle)[1]


def predict_scored(run, paths: list, top: int = 5, batch_size: int = 32,
                   trust_pickle: bool = False) -> tuple[str, list[list[tuple[str, float]]]]:
    """(what the scores are: "probability" or "decision score", top classes with their scores per
    image). `trust_pickle` loads a head saved by an older cnncodes as a pickle (model.joblib), which
    can run code: only for runs the user made."""
    record, model = load_fitted_head(run, trust_pickle)
    side = record["image_shape"][0]
    images = []
    for p in map(Path, paths):
        if not p.is_file():
            raise UserError(f"image {p} not found")
        img = decode_rgb(p.read_bytes())
        if img is None:
            raise UserError(f"{p} is not a readable image (JPEG, PNG or BMP)")
        images.append(fit_square(img, side))  # the same ingest rule the store's images went through
    spatial = record.get("spatial", record["params"].get("spatial"))  # runs before "spatial" was recorded: pooled
    X = codes_of(run, feature_parts(record), np.stack(images), batch_size, spatial)
    probs = scores(model, X)
    classes = np.asarray(model.classes_)
    out = []
    for p in probs:
        best = np.argsort(-p)[:top]
        out.append([(record["class_names"][int(classes[i])], float(p[i])) for i in best])
    return score_kind(model), out
