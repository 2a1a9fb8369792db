"""Data sources: what `--dataset` names. Each gives labels up front and decodes images on demand."""
from dataclasses import dataclass
from typing import Callable

import numpy as np

from features.errors import UserError


@dataclass
class Source:
    """A data set before ingest. `read(indices)` returns (images uint8 n x S x S x 3, bad indices)."""
    name: str
    labels: dict[str, np.ndarray]          # label set -> class index per sample; the first is primary
    class_names: dict[str, list[str]]
    split: np.ndarray | None               # 0 train / 1 test per sample; None: ingest holds out a part
    read: Callable[[np.ndarray], tuple[np.ndarray, list[int]]]
    sample_names: Callable[[int], str]     # for error messages: a file path, or "train[12]"
    description: str
    close: Callable[[], None] = lambda: None


def dataset_name(spec: str) -> str:
    """Short name for the default store folder: cifar100, digits, folder:x/cifar10-jpg.tar -> cifar10-jpg."""
    if spec.startswith("folder:"):
        from pathlib import Path
        name = Path(spec[len("folder:"):].rstrip("/")).name
        for ext in (".tar.gz", ".tgz", ".tar", ".zip"):
            if name.endswith(ext):
                return name[: -len(ext)]
        return name
    return spec


def open_source(spec: str, *, data_dir=None, verify: bool = True, image_size: int | None = None) -> Source:
    if spec in ("cifar10", "cifar100"):
        from .cifar import cifar_source
        return cifar_source(spec, data_dir=data_dir, verify=verify)
    if spec == "digits":
        return digits_source()
    if spec.startswith("folder:"):
        from .folders import folder_source
        return folder_source(spec[len("folder:"):], image_size=image_size)
    raise UserError(f"unknown dataset {spec!r}: use cifar100, cifar10, digits or folder:PATH")


def in_memory_source(name, images, labels, class_names, split, description) -> Source:
    return Source(name=name, labels=labels, class_names=class_names, split=split,
                  read=lambda idx: (images[idx], []), sample_names=lambda i: f"{name}[{i}]",
                  description=description)


def digits_source() -> Source:
    """scikit-learn's bundled 8x8 digits (0..16 grey levels) as 8x8 RGB uint8: the offline default."""
    from sklearn.datasets import load_digits

    d = load_digits()
    grey = np.round(d.images * (255 / 16)).astype(np.uint8)
    images = np.repeat(grey[..., None], 3, axis=-1)
    return in_memory_source("digits", images, {"label": d.target.astype(np.int64)},
                            {"label": [str(i) for i in range(10)]}, None, "sklearn.datasets.load_digits")
