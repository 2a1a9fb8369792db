"""Reads a PyTorch state dict into numpy arrays, without PyTorch and without running pickled code.

A `.pth` file is a pickle whose tensors point at raw storages. `torch.load` unpickles it with
PyTorch's classes; here a restricted unpickler allows only what a state dict needs (the globals that
`torch.load(weights_only=True)` allows for plain tensors: OrderedDict, the tensor-rebuild functions,
the typed storage classes), and every other global is refused before anything is called. The file
is hostile until proven otherwise: each load gets its own copies of the allowed objects (so a
pickle's BUILD cannot change them for later loads), every tensor is checked to lie inside its
storage, and nothing is allocated beyond what the file itself holds. Both the legacy format (torch
< 1.6: several pickles and the raw storages in one stream) and the zip format (`archive/data.pkl` +
`archive/data/<key>`, stored uncompressed by torch.save) are read.
"""
import io
import pickle
import pickletools
import struct
import zipfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# The typed storage classes PyTorch pickles, and the numpy dtype their bytes are read as.
STORAGE_DTYPES = {
    "DoubleStorage": "<f8", "FloatStorage": "<f4", "HalfStorage": "<f2", "BFloat16Storage": "<u2",
    "LongStorage": "<i8", "IntStorage": "<i4", "ShortStorage": "<i2", "CharStorage": "i1",
    "ByteStorage": "u1", "BoolStorage": "?",
}


class UnsafePickleError(ValueError):
    """The file names a global that a plain state dict never needs: it is refused, not called."""


class NotAStateDict(ValueError):
    """Damaged, not a PyTorch file, or not a state dict of tensors cnncodes reads."""


@dataclass
class StorageType:
    name: str


@dataclass
class Storage:
    dtype: np.dtype
    numel: int
    bfloat16: bool
    data: np.ndarray | None = None   # filled in once the raw bytes are read


@dataclass
class TensorRef:
    """What `_rebuild_tensor_v2` describes; made into an array once its storage's bytes are read."""
    storage: object
    offset: object
    shape: object
    stride: object

    def array(self) -> np.ndarray:
        storage = self.storage
        if not (isinstance(storage, Storage) and isinstance(storage.data, np.ndarray)):
            raise NotAStateDict("a tensor's storage is missing from the file")
        shape, stride, offset = self.shape, self.stride, self.offset
        if not (isinstance(shape, tuple) and isinstance(stride, tuple) and len(shape) == len(stride)
                and all(type(v) is int and v >= 0 for v in (*shape, *stride, offset))):
            raise NotAStateDict("a tensor has a malformed shape, stride or offset")
        count = int(np.prod(shape, dtype=object))
        if count > storage.numel:  # a state dict's tensor never holds more elements than its storage
            raise NotAStateDict(f"a tensor of shape {shape} claims more elements than its storage holds")
        itemsize = storage.data.dtype.itemsize
        # np.ndarray checks that the strided view lies inside the buffer
        view = np.ndarray(shape, storage.data.dtype, buffer=storage.data, offset=offset * itemsize,
                          strides=tuple(s * itemsize for s in stride))
        if storage.bfloat16:  # the upper half of a float32
            return (view.astype(np.uint32) << 16).view(np.float32)
        return np.array(view)


class StateDictUnpickler(pickle.Unpickler):
    """Only the globals a state dict of tensors needs, fresh for every load; storages become
    `Storage` records keyed as the file names them."""

    def __init__(self, data: bytes, storages: dict):
        super().__init__(io.BytesIO(data))
        self.storages = storages

    def find_class(self, module, name):
        if module == "collections" and name == "OrderedDict":
            return type("OrderedDict", (OrderedDict,), {})  # a subclass of its own: BUILD changes only it
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return lambda storage, offset, size, stride, *rest: TensorRef(storage, offset, size, stride)
        if module == "torch._utils" and name == "_rebuild_parameter":
            return lambda data, *rest: data
        if module == "torch" and name in STORAGE_DTYPES:
            return StorageType(name)
        if module == "torch" and name.endswith("Storage"):
            raise NotAStateDict(f"it holds {name} tensors, which cnncodes does not read")
        raise UnsafePickleError(f"it names {module}.{name}, which a state dict of tensors never needs")

    def persistent_load(self, pid):
        # legacy: ('storage', type, key, location, numel, view); zip: ('storage', type, key, location, numel)
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"
                and isinstance(pid[1], StorageType) and pid[1].name in STORAGE_DTYPES
                and isinstance(pid[2], str) and type(pid[4]) is int and pid[4] >= 0):
            raise NotAStateDict(f"a malformed storage reference ({type(pid).__name__})")
        if len(pid) == 6 and pid[5] is not None:
            raise NotAStateDict("storage views (files of torch < 0.4) are not supported")
        name, key, numel = pid[1].name, pid[2], pid[4]
        storage = self.storages.setdefault(key, Storage(np.dtype(STORAGE_DTYPES[name]), numel,
                                                        name == "BFloat16Storage"))
        if storage.numel != numel or storage.dtype != np.dtype(STORAGE_DTYPES[name]):
            raise NotAStateDict(f"storage {key} is described two ways")
        return storage


def next_pickle(data: bytes, start: int) -> tuple[bytes, int]:
    """The bytes of the pickle that starts at `start`, found with pickletools (nothing is executed)."""
    stream = io.BytesIO(data)
    stream.seek(start)
    for opcode, _, _ in pickletools.genops(stream):
        if opcode.name == "STOP":
            return data[start:stream.tell()], stream.tell()
    raise NotAStateDict("a pickle without its end")


def unpickle(data: bytes, storages: dict | None = None):
    return StateDictUnpickler(data, {} if storages is None else storages).load()


def read_legacy(data: bytes) -> tuple[object, dict]:
    pos, parts = 0, []
    for _ in range(5):  # magic number, protocol version, sys info, the object, the storage keys
        part, pos = next_pickle(data, pos)
        parts.append(part)
    if unpickle(parts[0]) != LEGACY_MAGIC:
        raise NotAStateDict("not a PyTorch file (wrong magic number)")
    storages = {}
    result = unpickle(parts[3], storages)
    keys = unpickle(parts[4])
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise NotAStateDict("a malformed list of storages")
    for key in keys:
        storage = storages.get(key)
        if storage is None or pos + 8 > len(data):
            raise NotAStateDict(f"storage {key} is not where the file says")
        (numel,) = struct.unpack_from("<q", data, pos)
        size = numel * storage.dtype.itemsize
        if numel != storage.numel or pos + 8 + size > len(data):
            raise NotAStateDict(f"storage {key} is cut short or mislabelled (truncated file?)")
        storage.data = np.frombuffer(data, storage.dtype, count=numel, offset=pos + 8)
        pos += 8 + size
    return result, storages


def read_zip(path: Path) -> tuple[object, dict]:
    with zipfile.ZipFile(path) as z:
        members = {i.filename: i for i in z.infolist()}
        pkl = next((n for n in members if n.endswith("/data.pkl") or n == "data.pkl"), None)
        if pkl is None:
            raise NotAStateDict("a zip file without data.pkl is not a PyTorch file")

        def read(name: str) -> bytes:
            info = members.get(name)
            if info is None:
                raise NotAStateDict(f"{name} is missing")
            if info.compress_type != zipfile.ZIP_STORED:  # torch.save never compresses: no zip bombs
                raise NotAStateDict(f"{name} is compressed, which torch.save never does")
            return z.read(info)

        root = pkl[: -len("data.pkl")]
        storages = {}
        result = unpickle(read(pkl), storages)
        for key, storage in storages.items():
            raw = read(f"{root}data/{key}")
            if len(raw) < storage.numel * storage.dtype.itemsize:
                raise NotAStateDict(f"storage {key} is shorter than its tensors need")
            storage.data = np.frombuffer(raw, storage.dtype, count=storage.numel)
    return result, storages


def is_torch_file(path) -> bool:
    """Whether a file is laid out as torch.save writes it (a zip holding data.pkl, or the legacy format's magic
    number first), judged by its first bytes and zip directory alone: no tensor is read."""
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as z:
                return any(n == "data.pkl" or n.endswith("/data.pkl") for n in z.namelist())
        with open(path, "rb") as f:
            return unpickle(next_pickle(f.read(64), 0)[0]) == LEGACY_MAGIC
    except (OSError, zipfile.BadZipFile, ValueError, pickle.UnpicklingError, EOFError):
        return False


def read_state_dict(path) -> dict[str, np.ndarray]:
    """name -> numpy array of a PyTorch state dict file (.pth / .pt), read safely.

    Accepts a flat {name: tensor} dict, or one under a "state_dict" key (training checkpoints).
    Raises UnsafePickleError for a file that names anything but tensors and containers, NotAStateDict
    (a ValueError) for one that is damaged, not a PyTorch file, or not a state dict.
    """
    path = Path(path)
    try:
        if zipfile.is_zipfile(path):
            result, _ = read_zip(path)
        else:
            result, _ = read_legacy(path.read_bytes())
        if isinstance(result, dict) and isinstance(result.get("state_dict"), dict):
            result = result["state_dict"]
        if not (isinstance(result, dict) and all(isinstance(k, str) and isinstance(v, TensorRef)
                                                 for k, v in result.items())):
            raise NotAStateDict(f"it holds a {type(result).__name__}, not a state dict of tensors")
        return {k: v.array() for k, v in result.items()}
    except (UnsafePickleError, NotAStateDict, OSError):
        raise
    except Exception as e:  # anything else a crafted or damaged file can raise
        raise NotAStateDict(f"damaged or not a PyTorch state dict ({type(e).__name__}: {str(e)[:120]})") from None
