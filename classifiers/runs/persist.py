"""Fitted heads saved in formats that load without unpickling, so a run folder from anywhere cannot run
code when `predict` reads it.

    model.json   the head's class (one of an allow-list), its constructor parameters, and every fitted
                 value that is not an array: numbers, strings, dicts of numbers, nested estimators; sealed
                 (features/sealed.py), with the sha256 of each file below, so no byte of a head is unchecked
    model.npz    the fitted arrays (coefficients, classes, standardisation), read with allow_pickle=False
    model.keras  the network of a Keras head (dense, gap), read with Keras's safe mode

Classes are looked up by name in the allow-lists below, never imported from a name in the file.
"""
import inspect
import zipfile
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from cnncodes.classifiers.heads.registry import HEADS
from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.features.reading import reason
from cnncodes.features.sealed import FILES_KEY, SealBroken, check_listed_files, read_sealed, write_sealed

FORMAT = "cnncodes-head/2"  # 2: heads standardise through a StandardScaler; two-class SVMs are one problem
MODEL_FILE, ARRAYS_FILE = "model.json", "model.npz"
HEAD_CLASSES = {cls.__name__: cls for cls in HEADS.values()}
ESTIMATORS = {cls.__name__: cls for cls in (LogisticRegression, StandardScaler)}  # what heads wrap


def has_model(folder) -> bool:
    return (Path(folder) / MODEL_FILE).exists()


# -- saving ----------------------------------------------------------------------------------------------
def save_model(model, folder) -> Path:
    """Writes model.json, model.npz and, for a Keras head, model.keras into `folder`."""
    folder = Path(folder)
    if type(model) not in HEAD_CLASSES.values():
        raise TypeError(f"cannot save a {type(model).__name__}: not one of {', '.join(HEAD_CLASSES)}")
    arrays = {}
    description = {"format": FORMAT, **_describe(model, "", arrays, folder)}
    with open(folder / ARRAYS_FILE, "wb") as f:
        np.savez(f, **arrays)
    files = [ARRAYS_FILE, *(p.name for p in sorted(folder.glob("*.keras")))]
    listed = {name: file_digest(folder / name, "sha256") for name in files}
    write_sealed(folder / MODEL_FILE, {**description, FILES_KEY: listed})
    return folder


def _describe(estimator, prefix: str, arrays: dict, folder: Path) -> dict:
    fitted = {name: _encode(value, prefix + name, arrays, folder) for name, value in vars(estimator).items()
              if _is_fitted_name(name)}
    return {"class": type(estimator).__name__, "params": estimator.get_params(deep=False), "fitted": fitted}


def _encode(value, key: str, arrays: dict, folder: Path) -> dict:
    if isinstance(value, (np.ndarray, np.generic)):
        if np.asarray(value).dtype.hasobject:
            raise TypeError(f"{key} is an object array, which only a pickle could hold")
        arrays[key] = np.asarray(value)
        return {"array": key, "scalar": isinstance(value, np.generic)}
    if value is None or isinstance(value, (bool, int, float, str)):
        return {"value": value}
    if isinstance(value, (list, tuple)):
        return {"value": [_plain(v) for v in value]}
    if isinstance(value, dict):  # pairs, not an object: keys stay numbers (the C grid's scores)
        return {"pairs": [[_plain(k), _plain(v)] for k, v in value.items()]}
    if type(value) in ESTIMATORS.values():
        return {"estimator": _describe(value, key + ".", arrays, folder)}
    if type(value).__module__.split(".")[0] == "keras":
        file = f"{key.rstrip('_')}.keras"
        value.save(folder / file)
        return {"keras": file}
    raise TypeError(f"{key}: cannot save a {type(value).__name__} without pickling it")


def _plain(v):
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, (list, tuple, np.ndarray)):
        return [_plain(x) for x in v]
    return v


def _is_fitted_name(name: str) -> bool:
    """scikit-learn's convention: fitted state ends with '_'; private and dunder names are never fitted."""
    return name.isidentifier() and name.endswith("_") and not name.startswith("_")


# -- loading ---------------------------------------------------------------------------------------------
def load_model(folder):
    """The head saved in `folder`, rebuilt from data alone; anything unexpected is one UserError."""
    folder = Path(folder)
    refit = "re-fit the head with `cnncodes fit`"
    try:
        description = read_sealed(folder / MODEL_FILE)
    except SealBroken as e:
        raise UserError(f"{folder / MODEL_FILE} {e}: {refit}") from None
    if not str(description.get("format", "")).startswith("cnncodes-head/"):
        raise UserError(f"{folder / MODEL_FILE} is not a cnncodes head of format {FORMAT}: {refit}")
    if description["format"] != FORMAT:
        raise UserError(f"{folder / MODEL_FILE} holds a head saved by another cnncodes ({description['format']}; "
                        f"this one reads {FORMAT}): {refit}")
    check_files(folder, description.get(FILES_KEY), refit)
    arrays = _load_arrays(folder / ARRAYS_FILE, refit)
    try:
        return _rebuild(description, HEAD_CLASSES, arrays, folder)
    except UserError as e:
        raise UserError(f"{folder / MODEL_FILE}: {e}: {refit}") from None
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise UserError(f"{folder / MODEL_FILE} is damaged ({reason(e)}): {refit}") from None


def check_files(folder: Path, files, refit: str):
    """Each file of the head as it was saved: model.npz and every .keras file match their sha256."""
    if not (isinstance(files, dict) and ARRAYS_FILE in files):
        raise UserError(f"{folder / MODEL_FILE} lists no checksums of its files: {refit}")
    try:
        check_listed_files(folder / MODEL_FILE, {FILES_KEY: files})  # as `info --check` checks them
    except SealBroken as e:
        raise UserError(f"{folder}/{e}: {refit}") from None


def _load_arrays(path: Path, refit: str) -> dict:
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {key: npz[key] for key in npz.files}
    except ValueError as e:  # numpy's answer to an object array when pickles are not allowed
        raise UserError(f"{path} holds something other than plain arrays ({reason(e)}), which would need a "
                        f"pickle to load: refused; {refit}") from None
    except (OSError, EOFError, zipfile.BadZipFile) as e:
        raise UserError(f"{path} cannot be read ({reason(e)}): {refit}") from None


def _rebuild(description: dict, allowed: dict, arrays: dict, folder: Path):
    name = description["class"]
    if name not in allowed:
        raise UserError(f"it names the class {name!r}, which cnncodes does not load here "
                        f"(it loads {', '.join(allowed)})")
    cls = allowed[name]
    estimator = cls(**_params(cls, description["params"]))
    for attr, encoded in description["fitted"].items():
        if not _is_fitted_name(attr):
            raise UserError(f"{attr!r} is not a fitted attribute")
        setattr(estimator, attr, _decode(encoded, arrays, folder))
    return estimator


def _params(cls, params: dict) -> dict:
    """Constructor parameters, only those the class takes; JSON lists back to tuples where the default is one."""
    signature = inspect.signature(cls).parameters
    unknown = set(params) - set(signature)
    if unknown:
        raise UserError(f"{cls.__name__} takes no parameter {', '.join(sorted(unknown))}")
    return {k: tuple(v) if isinstance(v, list) and isinstance(signature[k].default, tuple) else v
            for k, v in params.items()}


def _decode(encoded: dict, arrays: dict, folder: Path):
    if not isinstance(encoded, dict):
        raise UserError(f"a fitted value is {type(encoded).__name__}, not a description")
    if "array" in encoded:
        array = arrays[encoded["array"]]
        return array[()] if encoded.get("scalar") else array
    if "value" in encoded:
        return encoded["value"]
    if "pairs" in encoded:
        return {_hashable(k): v for k, v in encoded["pairs"]}
    if "estimator" in encoded:
        return _rebuild(encoded["estimator"], ESTIMATORS, arrays, folder)
    if "keras" in encoded:
        return _load_keras(folder, encoded["keras"])
    raise UserError(f"unknown fitted value {sorted(encoded)}")


def _hashable(key):
    return tuple(key) if isinstance(key, list) else key


def _load_keras(folder: Path, file: str):
    import keras  # the backend: only to read back a Keras head's network, never to list or read runs

    path = folder / Path(file).name  # only a file beside model.json
    if path.suffix != ".keras" or not path.is_file():
        raise UserError(f"its network {file!r} is not a .keras file in {folder}")
    try:  # safe mode: no Lambda layers or other serialised code; no optimizer, only predictions are needed
        return keras.saving.load_model(path, safe_mode=True, compile=False)
    except Exception as e:  # whatever Keras raises on a damaged or hostile file
        raise UserError(f"its network {path.name} cannot be loaded in Keras's safe mode ({reason(e)})") from None
