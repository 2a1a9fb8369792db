"""CIFAR-10 and CIFAR-100 from the official python-version archives, found locally or downloaded."""
import os
import pickle
import tarfile
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import file_digest

from .contract import in_memory_source
from .safe_pickle import ForbiddenGlobal, load_data


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
    dirs = [data_dir, os.environ.get("CNNCODES_DATA"),
            Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")) / "datasets"]
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


def unreadable(path: Path, e: Exception) -> UserError:
    return UserError(f"{path} is not a readable CIFAR archive ({type(e).__name__}: {e}): "
                     "delete it and download it again")


def load_members(path: Path, archive: Archive) -> tuple[dict, dict]:
    """The meta dict and {split: [(member, batch dict)]}, unpickled by the data-only unpickler."""
    try:
        with tarfile.open(path) as tar:
            def load(member):
                with tar.extractfile(f"{archive.folder}/{member}") as f:
                    try:
                        return load_data(f)
                    except ForbiddenGlobal as e:
                        raise UserError(f"{path} holds code or objects a CIFAR archive never holds ({e} in {member}): "
                                        f"it is not the official archive and nothing of it was run; delete it and "
                                        f"download it again") from None

            meta = load(archive.meta)
            parts = {split: [(m, load(m)) for m in members]
                     for split, members in (("train", archive.train), ("test", archive.test))}
    except (tarfile.TarError, KeyError, EOFError, OSError, zlib.error, pickle.UnpicklingError, ValueError,
            TypeError, AttributeError, IndexError, MemoryError) as e:
        raise unreadable(path, e) from None
    return meta, parts


def text(name) -> str:
    """A class name from the meta dict (bytes in the official archives) as valid UTF-8 text."""
    return name.decode("utf-8", "backslashreplace") if isinstance(name, bytes) else str(name)


def parse_batch(batch: dict, archive: Archive, class_counts: dict) -> tuple[np.ndarray, dict]:
    """HWC uint8 images and label arrays of one batch dict, checked against each other and the class lists."""
    data = np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    labels = {ours: np.asarray(batch[key], dtype=np.int64).reshape(-1) for ours, key in archive.labels.items()}
    for ours, values in labels.items():
        if len(values) != len(data) or (len(values) and not 0 <= values.min() <= values.max() < class_counts[ours]):
            raise ValueError(f"{len(values)} {ours} labels for {len(data)} images, or labels outside the "
                             f"{class_counts[ours]} classes")
    return data, labels


def read_archive(path: Path, archive: Archive):
    """Images, label sets, class names, split, and per sample its origin "member[index in that member]"."""
    meta, parts = load_members(path, archive)
    images, labels, split, origins = [], {k: [] for k in archive.labels}, [], []
    try:
        names = {ours: [text(n) for n in meta[key]] for ours, key in archive.names.items()}
        for code, batches in enumerate(parts.values()):
            for member, batch in batches:
                data, batch_labels = parse_batch(batch, archive, {k: len(v) for k, v in names.items()})
                images.append(data)
                split.append(np.full(len(data), code, np.uint8))
                origins.append((member, len(data)))
                for ours, values in batch_labels.items():
                    labels[ours].append(values)
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise unreadable(path, e) from None
    return (np.ascontiguousarray(np.concatenate(images)), {k: np.concatenate(v) for k, v in labels.items()},
            names, np.concatenate(split), batch_origin(origins))


def batch_origin(members: list[tuple[str, int]]):
    """origin(i) for samples concatenated from batches [(member, count)]: "data_batch_3[17]"."""
    starts = np.cumsum([0] + [n for _, n in members])

    def origin(i: int) -> str:
        b = int(np.searchsorted(starts, i, side="right")) - 1
        return f"{members[b][0]}[{i - starts[b]}]"
    return origin


def cifar_source(name: str, data_dir=None, verify: bool = True):
    archive = ARCHIVES[name]
    path = locate_archive(archive, data_dir)
    if verify and (md5 := file_digest(path)) != archive.md5:
        raise UserError(f"{path} has md5 {md5}, not the official {archive.md5}: the file is corrupt or not the "
                        f"official archive; delete it to download it again (or pass --no-verify for a re-packed copy)")
    images, labels, names, split, origin = read_archive(path, archive)
    return in_memory_source(name, images, labels, names, split, f"{path}", origin=origin)
