"""Where things live in a store directory. README.md's "Store schema" section documents the same."""
from pathlib import Path

SCHEMA_VERSION = 2               # 2: per-row sources, Fletcher-32 checksums, folds computed on demand
DATA_FILE = "data.h5"            # images, labels, split, sources, folds: written once by ingest
FOLDS_DIR = "folds"              # <on>-k<K>.npy: fold assignments computed after ingest, when first asked for
FEATURES_DIR = "features"        # one <name>.h5 per complete feature set
PARTS_SUFFIX = ".parts"          # <name>.parts/: committed chunks of a feature set in progress
RUNS_DIR = "runs"                # one folder per fit / kfold / baseline run
SPLITS = ("train", "test")       # split codes 0 and 1; ingest writes train rows first


# Every numeric dataset carries Fletcher-32 checksums per chunk: a damaged chunk fails the read
# instead of feeding a head. (HDF5 cannot filter variable-length strings: sources are fixed-length.)
CHECKSUM = {"fletcher32": True}


def data_path(store: Path) -> Path:
    return Path(store) / DATA_FILE


def features_dir(store: Path) -> Path:
    return Path(store) / FEATURES_DIR


def feature_path(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}.h5"


def parts_dir(store: Path, name: str) -> Path:
    return features_dir(store) / f"{name}{PARTS_SUFFIX}"


def folds_path(store: Path, on: str, k: int) -> Path:
    return Path(store) / FOLDS_DIR / f"{on}-k{k}.npy"


def chunk_file(kind: str, start: int, count: int, crc: int | None = None) -> str:
    """A committed chunk of a set in progress: `pooled-<start>_<rows>-<crc32>.npy` (and `spatial-...`).
    The CRC of the file's bytes is in its name, so a chunk damaged on disk is caught before assembly."""
    return f"{kind}-{start:09d}_{count}" + (f"-{crc:08x}" if crc is not None else "") + ".npy"


def chunk_files(parts: Path, kind: str = "pooled") -> dict[int, tuple[int, Path]]:
    """start row -> (row count, file) of every committed chunk of `kind` (pooled files are the commit mark)."""
    out = {}
    for p in Path(parts).glob(f"{kind}-*.npy"):
        rows = p.stem.split("-")[1]
        start, count = rows.split("_")
        out[int(start)] = (int(count), p)
    return out


def committed_chunks(parts: Path) -> dict[int, int]:
    """start row -> row count of every committed chunk."""
    return {start: count for start, (count, _) in chunk_files(parts).items()}
