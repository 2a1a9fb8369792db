"""CIFAR-10 and CIFAR-100 from the official python-version archives, found locally or downloaded."""
import os
import pickle
import tarfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from features.errors import UserError
from features.fingerprint import file_digest
from .sources import in_memory_source


@dataclass(frozen=True)
class Archive:
    file: str                 # official file name
    keras_file: str           # the name Keras's own cifar loader caches it under
    url: str
    md5: str
    folder: str               # top folder inside the archive
    train: tuple
    test: tuple
    meta: str
    labels: dict              # our label set -> key in the batch dicts
    names: dict               # our label set -> key in the meta dict


ARCHIVES = {
    "cifar10": Archive(
        "cifar-10-python.tar.gz", "cifar-10-batches-py.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
        "batches.meta", {"label": b"labels"}, {"label": b"label_names"}),
    "cifar100": Archive(
        "cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python", ("train",), ("test",), "meta",
        {"fine": b"fine_labels", "coarse": b"coarse_labels"},
        {"fine": b"fine_label_names", "coarse": b"coarse_label_names"}),
}


def search_dirs(data_dir=None) -> list[Path]:
    dirs = [data_dir, os.environ.get("CNNCODES_DATA"), Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"]
    return [Path(d) for d in dirs if d]


def locate_archive(archive: Archive, data_dir=None) -> Path:
    """The archive from --data-dir, $CNNCODES_DATA or Keras's cache, else downloaded into that cache."""
    dirs = search_dirs(data_dir)
    for d in dirs:
        for name in (archive.file, archive.keras_file):
            if (d / name).is_file():
                return d / name
    try:
        import keras

        # Keras's own download-and-cache: resumable, verified against the official md5.
        return Path(keras.utils.get_file(archive.file, archive.url, file_hash=archive.md5, cache_subdir="datasets"))
    except Exception as e:
        where = ", ".join(str(d) for d in dirs)
        raise UserError(f"{archive.file} not found in {where} and its download failed ({type(e).__name__}): "
                        f"put the official archive in one of those folders or pass --data-dir") from None


def read_archive(path: Path, archive: Archive):
    try:
        with tarfile.open(path) as tar:
            def load(member):
                with tar.extractfile(f"{archive.folder}/{member}") as f:
                    return pickle.load(f, encoding="bytes")

            meta = load(archive.meta)
            parts = {split: [load(m) for m in members] for split, members in (("train", archive.train), ("test", archive.test))}
    except (tarfile.TarError, KeyError, EOFError, OSError, pickle.UnpicklingError, ValueError) as e:
        raise UserError(f"{path} is not a readable CIFAR archive ({type(e).__name__}: {e}): delete it and download it again") from None
    images, labels, split = [], {k: [] for k in archive.labels}, []
    for code, (_, batches) in enumerate(parts.items()):
        for b in batches:
            data = np.asarray(b[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
            images.append(data)
            split.append(np.full(len(data), code, np.uint8))
            for ours, key in archive.labels.items():
                labels[ours].append(np.asarray(b[key], dtype=np.int64))
    names = {ours: [n.decode() for n in meta[key]] for ours, key in archive.names.items()}
    return (np.ascontiguousarray(np.concatenate(images)), {k: np.concatenate(v) for k, v in labels.items()},
            names, np.concatenate(split))


def cifar_source(name: str, data_dir=None, verify: bool = True):
    archive = ARCHIVES[name]
    path = locate_archive(archive, data_dir)
    if verify and (md5 := file_digest(path)) != archive.md5:
        raise UserError(f"{path} has md5 {md5}, not the official {archive.md5}: the file is corrupt or not the "
                        f"official archive; delete it to download it again (or pass --no-verify for a re-packed copy)")
    images, labels, names, split = read_archive(path, archive)
    return in_memory_source(name, images, labels, names, split, f"{path}")
