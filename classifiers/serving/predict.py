"""`cnncodes predict`: top classes for image files, folders, globs and lists of paths, their codes computed with
the run's backbone setup a chunk at a time; a file that cannot be read is reported, never fatal to the rest."""
from dataclasses import dataclass, fields, replace
from pathlib import Path

import numpy as np

from cnncodes.classifiers.heads.scoring import score_kind, scores
from cnncodes.classifiers.heads.value_rules import value_problem
from cnncodes.classifiers.runs.records import load_run
from cnncodes.features.errors import MAX_IMAGE_SIDE, UserError
from cnncodes.features.outputs import write_csv
from cnncodes.pipeline.backbones import BACKBONES
from cnncodes.pipeline.console import progress_bar
from cnncodes.pipeline.extraction.extract import DeviceStep, FeatureConfig, build_multi_extractor

from .image_inputs import as_inputs, read_input


class CodeMaker:
    """The run's backbone setups built once (parts that differ only in their layer share one pass), so that
    any number of batches of store-sized images get their codes as the head's features were made: each part's
    cut, joined in the parts' order."""

    def __init__(self, parts: list, image_hw: tuple, batch_size: int, spatial: bool, run=""):
        self.configs = part_configs(parts, run)
        self.spatial, self.steps = spatial, []
        for setup, members in shared_setups(self.configs).items():
            model, _, digests = build_multi_extractor(setup, tuple(image_hw), [self.configs[i].layer for i in members])
            check_weights(parts, members, digests, setup)
            self.steps.append((DeviceStep(model, batch_size), members, 2 if setup.spatial else 1))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        codes = [None] * len(self.configs)
        for step, members, stride in self.steps:
            outs = step(images)
            for j, i in enumerate(members):
                codes[i] = outs[stride * j + 1] if self.spatial else outs[stride * j]
        return codes[0] if len(codes) == 1 else np.concatenate(codes, axis=1)


def part_configs(parts: list, run="") -> list[FeatureConfig]:
    """The FeatureConfig of each part the head's features were made from (views play no part in a code)."""
    names = {f.name for f in fields(FeatureConfig)}
    try:
        return [FeatureConfig(**{k: v for k, v in p.items() if k in names and k not in ("views", "augmentation")})
                for p in parts]
    except (TypeError, ValueError) as e:
        raise UserError(f"{run}/record.json has a feature_config cnncodes cannot use ({e}): "
                        "fit the head again") from None


def shared_setups(configs: list) -> dict:
    """{backbone setup: the parts cut from it}: parts that differ only in their layer share one pass."""
    setups = {}
    for i, c in enumerate(configs):
        setups.setdefault(replace(c, layer=None), []).append(i)
    return setups


def check_weights(parts: list, members: list, digests: list, setup):
    """One line when the backbone's weights as loaded now are not those a part's features were made with."""
    for i, digest in zip(members, digests):
        recorded = parts[i].get("weights_sha256")
        if recorded is not None and digest != recorded:
            raise UserError(f"the backbone weights ({setup.weights}) are not those the head's features were "
                            f"extracted with: restore them, or re-extract the features and fit again")


def codes_of(run, parts: list, images: np.ndarray, batch_size: int, spatial: bool) -> np.ndarray:
    """The images' codes as the head's features were made (see CodeMaker)."""
    return CodeMaker(parts, images.shape[1:3], batch_size, spatial, run)(images)


FIT_KEYS = {"feature_config": dict, "image_shape": list, "params": dict}  # what predict needs beyond any run's
FEATURE_CONFIG_RULES = {"backbone": "resnet50", "size": 224, "precision": "fp32", "seed": 0}  # name: its default


def load_fitted_head(run, trust_pickle: bool = False):
    """(record, head) of a run made by `cnncodes fit`, or one UserError saying what is wrong with it."""
    return checked_fitted_head(run, *load_run(run, trust_pickle=trust_pickle))


def checked_fitted_head(run, record: dict, model):
    """(record, head) of a run loaded by runs.load_run, if it is one `cnncodes fit` made; else one UserError."""
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


def record_spatial(record) -> bool:
    """Whether the head learned spatial maps; runs from before "spatial" was recorded keep it in their params."""
    return bool(record.get("spatial", record["params"].get("spatial")))


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


@dataclass
class Prediction:
    path: str
    top: list            # (class name, score), best first; empty when the file could not be read
    error: str | None = None  # why it could not be read


def predict_images(run, paths: list, top: int = 5, batch_size: int = 32,
                   trust_pickle: bool = False) -> list[list[tuple[str, float]]]:
    """Top classes per image with their scores (see `predict_scored`)."""
    return predict_scored(run, paths, top, batch_size, trust_pickle)[1]


def predict_scored(run, paths: list, top: int = 5, batch_size: int = 32,
                   trust_pickle: bool = False) -> tuple[str, list[list[tuple[str, float]]]]:
    """(what the scores are: "probability" or "decision score", top classes with their scores per image);
    a file that cannot be read is one UserError. `trust_pickle` loads a head saved by an older cnncodes as a
    pickle (model.joblib), which can run code: only for runs the user made."""
    kind, predictions = predict_files(run, [str(p) for p in paths], top, batch_size, trust_pickle)
    for p in predictions:
        if p.error:
            raise UserError(f"{p.path}: {p.error}")
    return kind, [p.top for p in predictions]


def predict_files(run, paths: list, top: int = 5, batch_size: int = 32, trust_pickle: bool = False,
                  chunk: int = 512, progress: bool = False) -> tuple[str, list[Prediction]]:
    """(score kind, one Prediction per path, in order). Images are read, brought to the store's size by the
    ingest rule and scored a chunk at a time, so memory stays flat for any number of files; a file that is
    missing or does not decode gets its reason instead of classes, and the others go on."""
    record, model = load_fitted_head(run, trust_pickle)
    paths = as_inputs(paths)
    side = record["image_shape"][0]
    spatial = record_spatial(record)
    codes = None  # built at the first readable image: a list of unreadable files costs no backbone
    classes, names = np.asarray(model.classes_), record["class_names"]
    out = []
    with progress_bar(total=len(paths), desc="predict", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            batch = [(given.path, *read_input(given, side)) for given in paths[start:start + chunk]]
            good = [(path, img) for path, img, _ in batch if img is not None]
            scored = {}
            if good:
                codes = codes or CodeMaker(feature_parts(record), (side, side), batch_size, spatial, run)
                probs = scores(model, codes(np.stack([img for _, img in good])))
                for (path, _), p in zip(good, probs):
                    best = np.argsort(-p)[:top]
                    scored[path] = [(names[int(classes[i])], float(p[i])) for i in best]
            for path, img, error in batch:
                out.append(Prediction(path, scored[path] if img is not None else [], error))
            bar.update(len(batch))
    return score_kind(model), out


def write_predictions_csv(out: Path, predictions: list, top: int):
    """path, class, score, then the next classes and scores up to --top, and why a file could not be read;
    published only where nothing is yet, whole (features/outputs.py)."""
    header = ["path", "class", "score"] + [f"{c}_{k}" for k in range(2, top + 1) for c in ("class", "score")]
    rows = ([p.path] + [c for name, score in p.top for c in (name, f"{score:.6g}")]
            + [""] * (len(header) - 1 - 2 * len(p.top)) + [p.error or ""] for p in predictions)
    write_csv(out, header + ["error"], rows)
