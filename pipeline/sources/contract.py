"""What every data source hands to ingest: the `Source` contract. Sources import this; nothing here
imports a source."""
from dataclasses import dataclass, field
from typing import Callable

import numpy as np


@dataclass
class Source:
    """A data set before ingest. `read(indices)` returns (images uint8 n x S x S x 3, bad indices)."""
    name: str
    labels: dict[str, np.ndarray]          # label set -> class index per sample; the first is primary
    class_names: dict[str, list[str]]
    split: np.ndarray | None               # 0 train / 1 test per sample; None: ingest holds out a part
    read: Callable[[np.ndarray], tuple[np.ndarray, list[int]]]
    sample_names: Callable[[int], str]     # for error messages: a file path, or "train[12]"
    origin: Callable[[int], str]           # recorded per row: "train/cat/0001.jpg", "data_batch_3[17]"
    description: str
    skipped_members: list[str] = field(default_factory=list)  # archive members outside the root, never read
    # Why sample i came back bad from `read`, e.g. "larger than the 50-megapixel limit (30000x30000)".
    bad_reason: Callable[[int], str] = lambda i: "not a readable image"
    close: Callable[[], None] = lambda: None
    in_memory: bool = False  # already decoded in memory: ingest copies them, and shows no images/s rate


def in_memory_source(name, images, labels, class_names, split, description, origin) -> Source:
    return Source(name=name, labels=labels, class_names=class_names, split=split,
                  read=lambda idx: (images[idx], []), sample_names=lambda i: f"{name}[{i}]",
                  origin=origin, description=description, in_memory=True)
