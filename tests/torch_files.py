"""Writes PyTorch files byte for byte, hostile ones included, without PyTorch.

Placeholders below are pickled as globals of this module and renamed to PyTorch's names, so a test
can describe any tensor (negative strides, offsets past the end) that torch.save would never write.
"""
import pickle
import struct
from collections import OrderedDict

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
RENAMES = {b"ctorch_files\nFloatStorage\n": b"ctorch\nFloatStorage\n",
           b"ctorch_files\n_rebuild_tensor_v2\n": b"ctorch._utils\n_rebuild_tensor_v2\n"}


class FloatStorage:
    pass


def _rebuild_tensor_v2(*args):
    pass


class Tensor:
    def __init__(self, key, numel, offset, shape, stride):
        self.args = (("storage", FloatStorage, key, "cpu", numel, None), offset, shape, stride, False, OrderedDict())

    def __reduce__(self):
        return _rebuild_tensor_v2, self.args


class Pickler(pickle.Pickler):
    def persistent_id(self, obj):
        return obj if isinstance(obj, tuple) and obj[:1] == ("storage",) else None


def torch_pickle(obj) -> bytes:
    import io

    buffer = io.BytesIO()
    Pickler(buffer, protocol=2).dump(obj)
    data = buffer.getvalue()
    for placeholder, name in RENAMES.items():
        data = data.replace(placeholder, name)
    return data


def legacy_file(path, obj, storages: dict[str, np.ndarray]):
    """PyTorch's legacy layout: magic, protocol, sys info, the object, the storage keys, the storages."""
    with open(path, "wb") as f:
        for part in (LEGACY_MAGIC, 1001, {"little_endian": True}):
            pickle.dump(part, f, protocol=2)
        f.write(torch_pickle(obj))
        pickle.dump(list(storages), f, protocol=2)
        for values in storages.values():
            f.write(struct.pack("<q", len(values)) + values.astype("<f4").tobytes())
    return path
