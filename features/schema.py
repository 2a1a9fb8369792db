"""Where things live in a store directory. README.md's "Store schema" section documents the same."""
from pathlib import Path

SCHEMA_VERSION = 1
DATA_FILE = "data.h5"            # images, labels, split, folds: written once by ingest
FEATURES_DIR = "features"        # one <name>.h5 per complete feature set
PARTS_SUFFIX = ".parts"          # <name>.parts/: committed chunks of a feature set in progress
RUNS_DIR = "runs"                # one folder per fit / kfold / baseline run
SPLITS = ("train", "test")       # split codes 0 and 1; ingest writes train rows first


def data_path(store: Path) -> Path:
    return Path(store) / DATA_FILE


def features_dir(store: Path) -> Path:
    return Path(store) / FEATURES_DIR


def feature_path(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}.h5"


def parts_dir(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}{PARTS_SUFFIX}"


def chunk_file(kind: str, start: int, count: int) -> str:
    """A committed chunk of a set in progress: `pooled-<start>_<rows>.npy` (and `spatial-...`)."""
    return f"{kind}-{start:09d}_{count}.npy"


def committed_chunks(parts: Path) -> dict[int, int]:
    """start row -> row count of every committed chunk (its pooled file is the commit mark)."""
    out = {}
    for p in Path(parts).glob("pooled-*.npy"):
        start, count = p.stem.split("-")[1].split("_")
        out[int(start)] = int(count)
    return out
