"""Ingest: a source's images, labels, split and folds into the store's data file, once."""
import json
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from features import schema
from features.errors import UserError
from features.folds import stratified_folds, stratified_holdout, stratified_subset
from features.store import FeatureStore
from features.writers import DataFileWriter
from .sources import open_source


@dataclass(frozen=True)
class IngestConfig:
    dataset: str
    limit: int | None = None        # a stratified subset of N images per split
    holdout: float = 0.2            # test fraction for sources without their own split
    seed: int = 0
    image_size: int | None = None   # folder sources: the square ingest size (default: first image's shorter side)
    skip_bad: bool = False
    folds: tuple = (5, 6, 10)


def check_writable(store: Path, need_bytes: int = 0):
    """Stops before any work if the store folder cannot be written or the disk is too full."""
    try:
        store.mkdir(parents=True, exist_ok=True)
        probe = store / ".write-probe"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as e:
        raise UserError(f"cannot write to store {store} ({e.strerror}): choose another --store") from None
    free = shutil.disk_usage(store).free
    if need_bytes > free:
        raise UserError(f"too little disk for {store}: about {need_bytes / 1e9:.2f} GB needed, "
                        f"{free / 1e9:.2f} GB free; free space or choose another --store")


def select_rows(source, config: IngestConfig) -> tuple[np.ndarray, np.ndarray]:
    """Sample indices to ingest, train rows first, and their split codes."""
    primary = next(iter(source.labels.values()))
    split = source.split if source.split is not None else stratified_holdout(primary, config.holdout, config.seed)
    chosen = []
    for code in (0, 1):
        idx = np.flatnonzero(split == code)
        if config.limit:
            idx = idx[stratified_subset(primary[idx], config.limit, config.seed + code)]
        chosen.append(idx)
    rows = np.concatenate(chosen)
    return rows, split[rows]


def ingest(store: Path, config: IngestConfig, *, data_dir=None, verify: bool = True, progress: bool = True,
           log=print) -> FeatureStore:
    store = Path(store)
    wanted = json.dumps(asdict(config), sort_keys=True)
    if schema.data_path(store).exists():
        existing = FeatureStore.open(store)
        if existing.attrs.get("ingest_config") != wanted:
            raise UserError(f"{store} already holds {existing.dataset} ingested with other settings "
                            f"({existing.attrs.get('ingest_config')}): use another --store, or delete {store}")
        log(f"data: {store} already ingested ({existing.n} images), reusing it")
        return existing
    check_writable(store)
    source = open_source(config.dataset, data_dir=data_dir, verify=verify, image_size=config.image_size)
    try:
        return _write(store, source, config, wanted, progress, log)
    finally:
        source.close()


def _write(store, source, config, wanted, progress, log):
    rows, split = select_rows(source, config)
    first, _ = source.read(rows[:1])
    shape = first.shape[1:] if len(first) else None
    if shape is None:
        raise UserError(f"{source.sample_names(int(rows[0]))} is not a readable image: fix it, or pass --image-size and --skip-bad")
    check_writable(store, need_bytes=len(rows) * int(np.prod(shape)))
    writer = DataFileWriter(store, shape, rows_per_chunk=max(1, min(256, (1 << 20) // int(np.prod(shape)))))
    kept, skipped = [], []
    start = time.time()
    try:
        with tqdm(total=len(rows), unit="img", desc=f"ingest {source.name}", disable=not progress) as bar:
            for lo in range(0, len(rows), 512):
                batch = rows[lo:lo + 512]
                images, bad = source.read(batch)
                if bad and not config.skip_bad:
                    raise UserError(f"{source.sample_names(bad[0])} is not a readable image: fix or remove it, "
                                    f"or pass --skip-bad to skip and record it")
                skipped += [source.sample_names(i) for i in bad]
                kept.append(batch[~np.isin(batch, bad)])
                writer.append(images)
                bar.update(len(batch))
        keep = np.concatenate(kept)
        keep_split = split[np.isin(rows, keep)]
        labels = {name: values[keep] for name, values in source.labels.items()}
        primary = next(iter(labels.values()))
        folds = {(on, k): stratified_folds(primary, k, config.seed, member)
                 for on, member in (("train", keep_split == 0), ("all", np.ones(len(keep), bool)))
                 for k in config.folds}
        attrs = {"dataset": source.name, "source": source.description, "ingest_config": wanted,
                 "seed": config.seed, "ingest_seconds": round(time.time() - start, 2),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        writer.finish(labels=labels, class_names=source.class_names, split=keep_split, folds=folds,
                      attrs=attrs, skipped=skipped)
    except BaseException:
        writer.abort()
        raise
    if skipped:
        log(f"data: skipped {len(skipped)} unreadable images (listed in {schema.DATA_FILE}:/skipped)")
    log(f"data: {len(keep)} images of {source.name} ingested into {store}")
    return FeatureStore.open(store)
