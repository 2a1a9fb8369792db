"""Data sources: what `--dataset` names. Each source lives in its own module below this registry; a new
one is a new file and one line here."""
from pathlib import Path

from cnncodes.features.errors import UserError

from .cifar import cifar_source
from .contract import Source, in_memory_source  # noqa: F401  (re-exported: the contract every source returns)
from .digits import digits_source
from .folders import folder_source

# --dataset NAME -> opener(data_dir, verify); `folder:PATH` is the one source named by a path.
NAMED_SOURCES = {
    "cifar100": lambda data_dir, verify: cifar_source("cifar100", data_dir=data_dir, verify=verify),
    "cifar10": lambda data_dir, verify: cifar_source("cifar10", data_dir=data_dir, verify=verify),
    "digits": lambda data_dir, verify: digits_source(),
}
FOLDER = "folder:"


def canonical_dataset(spec: str) -> str:
    """--dataset as the store records it: names and the folder: prefix in any case (DIGITS, Folder:x);
    the path after folder: as given. An unknown name or an empty path is one UserError, before anything is
    created (an empty path would otherwise be the current folder)."""
    if spec.lower().startswith(FOLDER):
        if not spec[len(FOLDER):]:
            raise UserError(f"--dataset {spec!r} names no folder: give {FOLDER}PATH, a directory, .tar or .zip of "
                            f"class folders")
        return FOLDER + spec[len(FOLDER):]
    if spec.lower() in NAMED_SOURCES:
        return spec.lower()
    raise UserError(f"unknown dataset {spec!r}: use {', '.join(NAMED_SOURCES)} or {FOLDER}PATH")


def dataset_name(spec: str) -> str:
    """Short name for the default store folder: cifar100, digits, folder:x/cifar10-jpg.tar -> cifar10-jpg."""
    if spec.startswith(FOLDER):
        name = Path(spec[len(FOLDER):].rstrip("/")).name
        for ext in (".tar.gz", ".tgz", ".tar", ".zip"):
            if name.endswith(ext):
                return name[: -len(ext)]
        return name
    return spec


def open_source(spec: str, *, data_dir=None, verify: bool = True, image_size: int | None = None) -> Source:
    spec = canonical_dataset(spec)
    if spec.startswith(FOLDER):
        return folder_source(spec[len(FOLDER):], image_size=image_size)
    return NAMED_SOURCES[spec](data_dir, verify)
