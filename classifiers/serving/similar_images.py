"""`cnncodes neighbors`: the stored images most like given ones, by cosine similarity of their CNN codes.

The given images are read and brought to the store's size by the ingest rule, and their codes made as the
feature set's own were (its configuration: backbone, weights, size, cut, flip averaging; predict.CodeMaker), a
chunk at a time; the store's codes are searched in blocks (neighbors.nearest), read lazily, so memory stays flat
in the images given and in the rows stored. A file that cannot be read is reported, never fatal to the rest.
`neighbor_examples` gives the report the same search for stored test rows."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnncodes.classifiers.heads.neighbors import nearest
from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.outputs import write_csv
from cnncodes.features.store import FeatureStore
from cnncodes.pipeline.console import progress_bar

from .image_inputs import as_inputs, read_input
from .predict import CodeMaker, part_configs

SPLITS = ("train", "test", "all")
CHUNK = 512  # images read and coded at a time, as predict does


@dataclass
class Neighbor:
    rank: int          # 1: the most similar
    similarity: float  # cosine similarity of the codes
    row: int           # the store's row (train rows first, then test)
    split: str
    label: str         # its class in the store's first label set
    source: str        # where the store's image came from ("" for stores made before sources were recorded)


@dataclass
class Lookup:
    path: str
    neighbors: list    # Neighbor, most similar first; empty when the file could not be read
    error: str | None = None  # why it could not be read


class Catalogue:
    """What is shown of each searched row: its store row, split, class name and source."""

    def __init__(self, store: FeatureStore, split: str):
        rows = store.rows(split)
        self.rows = np.arange(rows.start, rows.stop)
        self.splits = np.asarray(schema.SPLITS)[store.split[rows]]
        self.labels = np.asarray(store.class_names())[store.labels(split=split)]
        sources = store.sources(split=split)
        self.sources = sources if sources is not None else np.full(len(self.rows), "")

    def neighbors(self, index, similarity) -> list[Neighbor]:
        return [Neighbor(rank, float(s), int(self.rows[i]), str(self.splits[i]), str(self.labels[i]),
                          str(self.sources[i])) for rank, (i, s) in enumerate(zip(index, similarity), 1)]


def searched_codes(store: FeatureStore, features: str | None, split: str):
    """(feature set info, its codes of `split` as a lazy array): one UserError for an unknown split, a store without
    feature sets, an unknown set (FeatureStore.feature_set says which there are) or a split without rows."""
    if split not in SPLITS:
        raise UserError(f"--split {split!r}: choose one of {', '.join(SPLITS)}")
    info = store.feature_set(features)
    if store.rows(split).stop == store.rows(split).start:
        raise UserError(f"{store.path} has no {split} rows to search: choose --split all")
    return info, store.features(info.name, split=split, lazy=True)


def feature_parts(store: FeatureStore, info) -> list[dict]:
    """The configuration of each part of the set (one, or one per set of a join `A+B`), checked before any image is
    read, so that codes of new images can be made as the set's were."""
    parts = info.config["parts"] if info.parts else [info.config]
    try:
        part_configs(parts)
    except UserError:
        raise UserError(f"feature set {info.name} was made with a configuration this cnncodes cannot repeat on new "
                        f"images: extract it again with `cnncodes features --store {store.path}`") from None
    return parts


def similar_images(store_dir, paths: list, *, features: str | None = None, k: int = 8, split: str = "train",
                   batch_size: int = 32, chunk: int = CHUNK, progress: bool = False) -> tuple[str, list[Lookup]]:
    """(the feature set's name, one Lookup per path, in order): each image's k most similar stored images of `split`
    (train, test or all). The backbone is built at the first readable image: a list of unreadable files costs none."""
    if k < 1:
        raise UserError(f"--k {k}: ask for at least 1 neighbor")
    store = FeatureStore.open(store_dir)
    paths = as_inputs(paths)
    info, base = searched_codes(store, features, split)
    parts = feature_parts(store, info)
    catalogue = Catalogue(store, split)
    side = store.image_shape[0]
    codes, out = None, []
    with progress_bar(total=len(paths), desc="neighbors", unit="img", disable=not progress) as bar:
        for start in range(0, len(paths), chunk):
            batch = [(given.path, *read_input(given, side)) for given in paths[start:start + chunk]]
            good = [img for _, img, _ in batch if img is not None]
            found = iter([])
            if good:
                codes = codes or CodeMaker(parts, (side, side), batch_size, spatial=False)
                hits = nearest(codes(np.stack(good)), base, k)
                found = iter(zip(hits.index, hits.similarity))
            for path, img, error in batch:
                out.append(Lookup(path, catalogue.neighbors(*next(found)) if img is not None else [], error))
            bar.update(len(batch))
    return info.name, out


def write_neighbors_csv(out: Path, lookups: list[Lookup]):
    """One line per image and neighbor (path, rank, similarity, split, label, source, row), and one per unreadable
    image with its reason; published only where nothing is yet, whole (features/outputs.py)."""
    def rows():
        for lookup in lookups:
            for n in lookup.neighbors:
                yield [lookup.path, n.rank, f"{n.similarity:.6f}", n.split, n.label, n.source, n.row, ""]
            if lookup.error:
                yield [lookup.path, "", "", "", "", "", "", lookup.error]

    write_csv(out, ["path", "rank", "similarity", "split", "label", "source", "row", "error"], rows())


def neighbor_examples(store, features: str | None = None, rows: int = 6, k: int = 5, seed: int = 0) -> list[dict]:
    """For a seeded draw of `rows` test rows, their `k` most similar training rows by the set's stored codes: one
    dict per test row, in store order, with `query` (its store row), `label` and `source`, and `neighbors` (store
    rows, most similar first), `similarities`, `labels` and `sources` of the training rows. A store row indexes
    `store.images()` and every other accessor read without a split."""
    store = store if isinstance(store, FeatureStore) else FeatureStore.open(store)
    info, train = searched_codes(store, features, "train")
    test = store.rows("test")
    drawn = np.random.default_rng(seed).choice(test.stop - test.start, min(rows, test.stop - test.start), replace=False)
    queries = test.start + np.sort(drawn)
    codes = np.asarray(store.features(info.name, lazy=True)[queries], dtype=np.float32)  # only the drawn rows read
    found = nearest(codes, train, k)
    catalogue, everyone = Catalogue(store, "train"), Catalogue(store, "all")
    examples = []
    for q, index, similarity in zip(queries, found.index, found.similarity):
        shown = catalogue.neighbors(index, similarity)
        examples.append({"query": int(q), "label": str(everyone.labels[q]), "source": str(everyone.sources[q]),
                         "neighbors": [n.row for n in shown], "similarities": [n.similarity for n in shown],
                         "labels": [n.label for n in shown], "sources": [n.source for n in shown]})
    return examples
