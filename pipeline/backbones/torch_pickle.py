"""Reads a PyTorch state dict into numpy arrays, without PyTorch and without running pickled code.

A `.pth` file is a pickle whose tensors point at raw storages. `torch.load` unpickles it with
PyTorch's classes; here a restricted unpickler allows only what a state dict needs (the globals that
`torch.load(weights_only=True)` allows for plain tensors: OrderedDict, the tensor-rebuild functions,
the typed storage classes), and every other global is refused before anything is called. Both the
legacy format (torch < 1.6, several pickles and raw storages in one stream) and the zip format
(`archive/data.pkl` + `archive/data/<key>`) are read.
"""
import collections
import io
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# The typed storage classes PyTorch pickles, and the numpy dtype of their elements.
STORAGE_DTYPES = {
    "DoubleStorage": np.float64, "FloatStorage": np.float32, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class UnsafePickleError(ValueError):
    """The file names a global that a plain state dict never needs: it is refused, not called."""


@dataclass(frozen=True)
class StorageType:
    dtype: type


@dataclass
class Storage:
    dtype: type
    numel: int
    data: np.ndarray | None = None   # filled in once the raw bytes are read


@dataclass
class TensorRef:
    """What `_rebuild_tensor_v2` describes; made into an array once its storage's bytes are read."""
    storage: Storage
    offset: int
    shape: tuple
    stride: tuple

    def array(self) -> np.ndarray:
        if self.storage.data is None:
            raise ValueError("a tensor's storage is missing from the file")
        if not self.shape:
            return self.storage.data[self.offset].copy()
        flat = self.storage.data[self.offset:]
        itemsize = flat.dtype.itemsize
        end = self.offset + 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride))
        if end > len(self.storage.data):
            raise ValueError("a tensor reaches past the end of its storage")
        view = np.lib.stride_tricks.as_strided(flat, self.shape, tuple(s * itemsize for s in self.stride))
        return np.array(view)


def rebuild_tensor(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None, metadata=None):
    if not isinstance(storage, Storage):
        raise UnsafePickleError("a tensor is built from something that is not a storage")
    return TensorRef(storage, int(storage_offset), tuple(size), tuple(stride))


def rebuild_parameter(data, requires_grad=False, backward_hooks=None):
    return data


ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): rebuild_tensor,
    ("torch._utils", "_rebuild_tensor"): rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): rebuild_parameter,
    **{("torch", name): StorageType(dtype) for name, dtype in STORAGE_DTYPES.items()},
}


class StateDictUnpickler(pickle.Unpickler):
    """Only ALLOWED globals; storages become `Storage` records keyed as the file names them."""

    def __init__(self, file, storages: dict):
        super().__init__(file)
        self.storages = storages

    def find_class(self, module, name):
        try:
            return ALLOWED[module, name]
        except KeyError:
            raise UnsafePickleError(f"it names {module}.{name}, which a state dict of tensors never needs") from None

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view); zip: ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType)):
            raise UnsafePickleError(f"unexpected persistent id {str(pid)[:60]}")
        storage_type, key, numel = pid[1], str(pid[2]), int(pid[4])
        storage = self.storages.setdefault(key, Storage(storage_type.dtype, numel))
        if len(pid) == 6 and pid[5] is not None:
            raise UnsafePickleError("storage views (torch < 0.4 files) are not supported")
        return storage


def materialize(obj):
    """The unpickled object with every TensorRef made into a numpy array."""
    if isinstance(obj, TensorRef):
        return obj.array()
    if isinstance(obj, dict):
        return type(obj)((k, materialize(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(materialize(v) for v in obj)
    return obj


def read_legacy(f) -> object:
    if restricted_loads(read_plain_pickle(f)) != LEGACY_MAGIC:
        raise ValueError("not a PyTorch file (wrong magic number)")
    restricted_loads(read_plain_pickle(f))  # protocol version
    restricted_loads(read_plain_pickle(f))  # sys info
    storages = {}
    result = restricted_loads(read_plain_pickle(f), storages)
    keys = restricted_loads(read_plain_pickle(f))
    for key in keys:
        storage = storages[str(key)]
        (numel,) = struct.unpack("<q", f.read(8))
        if numel != storage.numel:
            raise ValueError(f"storage {key} holds {numel} elements, the tensors expect {storage.numel}")
        raw = f.read(numel * np.dtype(storage.dtype).itemsize)
        if len(raw) != numel * np.dtype(storage.dtype).itemsize:
            raise ValueError("the file ends inside a storage (truncated)")
        storage.data = np.frombuffer(raw, storage.dtype)
    return result


def read_plain_pickle(f) -> bytes:
    """The bytes of the next pickle in the stream, found with pickletools (nothing is executed)."""
    import pickletools

    start = f.tell()
    for opcode, _, _ in pickletools.genops(f):
        if opcode.name == "STOP":
            break
    end = f.tell()
    f.seek(start)
    return f.read(end - start)


def restricted_loads(data: bytes, storages: dict | None = None):
    return StateDictUnpickler(io.BytesIO(data), {} if storages is None else storages).load()


def read_zip(path: Path) -> object:
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        pkl = next((n for n in names if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise ValueError("a zip file without data.pkl is not a PyTorch file")
        root = pkl[: -len("data.pkl")]
        storages = {}
        result = restricted_loads(z.read(pkl), storages)
        for key, storage in storages.items():
            raw = z.read(f"{root}data/{key}")
            if len(raw) < storage.numel * np.dtype(storage.dtype).itemsize:
                raise ValueError(f"storage {key} is shorter than its tensors need")
            storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return result


def load_state_dict(path) -> dict[str, np.ndarray]:
    """name -> numpy array of a PyTorch state dict file (.pth / .pt), read safely.

    Raises UnsafePickleError for a file that names anything but tensors and containers, ValueError
    for one that is damaged or not a PyTorch file.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            result = read_zip(path)
        else:
            with open(path, "rb") as f:
                result = read_legacy(f)
    except (UnsafePickleError, FileNotFoundError):
        raise
    except (pickle.UnpicklingError, EOFError, KeyError, IndexError, struct.error, zipfile.BadZipFile,
            UnicodeDecodeError, ValueError) as e:
        raise ValueError(f"damaged or not a PyTorch state dict ({type(e).__name__}: {e})") from None
    if not isinstance(result, dict):
        raise ValueError(f"holds a {type(result).__name__}, not a state dict")
    return {str(k): np.asarray(v) for k, v in materialize(result).items()}
