"""Ingest: a source's images, labels, split and folds into the store's data file, once."""
import errno
import json
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.folds import stratified_folds, stratified_holdout, stratified_subset
from cnncodes.features.store import FeatureStore
from cnncodes.features.writers import DataFileWriter, store_lock
from .console import progress_bar
from .sources import canonical_dataset, open_source


@dataclass(frozen=True)
class IngestConfig:
    dataset: str
    limit: int | None = None        # a stratified subset of N images per split
    holdout: float = 0.2            # test fraction for sources without their own split
    seed: int = 0
    image_size: int | None = None   # folder sources: the square ingest size (default: first image's shorter side)
    skip_bad: bool = False
    folds: tuple = ()               # k values whose assignments ingest computes; any k is also computed when asked for

    def check(self):
        """Settings that cannot give a usable store stop before any work."""
        if not 0 < self.holdout < 1:
            raise UserError(f"--holdout {self.holdout}: the test fraction must be between 0 and 1, e.g. 0.2")
        if self.limit is not None and self.limit < 1:
            raise UserError(f"--limit {self.limit}: give a positive number of images per split")
        if self.image_size is not None and not 1 <= self.image_size <= 1024:
            raise UserError(f"--image-size {self.image_size}: give a side between 1 and 1024 pixels")
        bad = [k for k in self.folds if k < 2]
        if bad:
            raise UserError(f"--folds {bad[0]}: k-fold needs at least 2 folds")


def human_bytes(n: float) -> str:
    for unit, size in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.2f} {unit}"
    return f"{int(n)} bytes"


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
        raise UserError(f"too little disk for {store}: about {human_bytes(need_bytes)} needed, "
                        f"{human_bytes(free)} free; free space or choose another --store")


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
    for code, idx in enumerate(chosen):
        if len(idx) == 0:
            raise UserError(f"the {('training', 'test')[code]} split of {source.name} would be empty: "
                            f"{'lower' if code == 0 else 'raise'} --holdout (now {config.holdout}) or add images")
    rows = np.concatenate(chosen)
    return rows, split[rows]


def ingest(store: Path, config: IngestConfig, *, data_dir=None, verify: bool = True, progress: bool = True,
           log=print) -> FeatureStore:
    store = Path(store)
    config.check()
    config = replace(config, dataset=canonical_dataset(config.dataset))
    wanted = json.dumps(asdict(config), sort_keys=True)
    if schema.data_path(store).exists():
        return reuse(store, wanted, log)
    made = [p for p in (store, *store.parents) if not p.exists()]  # the folders this ingest creates
    check_writable(store)
    with store_lock(store):  # before anything is created: a second first-time ingest stops here
        if schema.data_path(store).exists():  # another process finished it while we waited
            return reuse(store, wanted, log)
        try:
            source = open_source(config.dataset, data_dir=data_dir, verify=verify, image_size=config.image_size)
            try:
                return _write(store, source, config, wanted, progress, log)
            finally:
                source.close()
        except BaseException:
            if made:  # a failed first ingest leaves no half-made store, removed while the lock is held
                remove_made(made)
            raise


def remove_made(made: list[Path]):
    """Removes the store folder this ingest created and, of the parents it created, those left empty (a
    sibling store another process is making keeps its parent)."""
    shutil.rmtree(made[0], ignore_errors=True)
    for parent in made[1:]:
        try:
            parent.rmdir()
        except OSError:
            return


def same_content(stored: str | None, wanted: str) -> bool:
    """Whether two ingest settings give the same rows; which folds were precomputed does not matter."""
    try:
        a, b = json.loads(stored), json.loads(wanted)
    except (TypeError, json.JSONDecodeError):
        return False
    return {k: v for k, v in a.items() if k != "folds"} == {k: v for k, v in b.items() if k != "folds"}


def reuse(store: Path, wanted: str, log) -> FeatureStore:
    existing = FeatureStore.open(store)
    if not same_content(existing.attrs.get("ingest_config"), wanted):
        raise UserError(f"{store} already holds {existing.dataset} ingested with other settings "
                        f"({existing.attrs.get('ingest_config')}): use another --store, or delete {store}")
    log(f"data: {store} already ingested ({existing.n} images), reusing it")
    return existing


def check_folds(labels: np.ndarray, member: np.ndarray, ks, on: str, class_names: list[str]):
    classes, counts = np.unique(labels[member], return_counts=True)
    for k in ks:
        if counts.min() < k:
            raise UserError(f"--folds {k}: the smallest class over {on}, {class_names[classes[counts.argmin()]]!r}, "
                            f"has {counts.min()} images, too few for {k} stratified folds; leave {k} out of --folds")


def _write(store, source, config, wanted, progress, log):
    rows, split = select_rows(source, config)
    if source.skipped_members:
        log(f"data: skipped {len(source.skipped_members)} archive members outside its root (absolute or '..' "
            f"paths, never read): {', '.join(source.skipped_members[:3])}{' ...' if len(source.skipped_members) > 3 else ''}")
    first, _ = source.read(rows[:16])  # the shape of the first readable image: a bad one may be skipped
    shape = first.shape[1:] if len(first) else None
    if shape is None:
        raise UserError(f"{source.sample_names(int(rows[0]))} is {source.bad_reason(int(rows[0]))}: fix it, "
                        f"or pass --image-size and --skip-bad")
    check_writable(store, need_bytes=len(rows) * int(np.prod(shape)))
    writer = DataFileWriter(store, shape, rows_per_chunk=max(1, min(256, (1 << 20) // int(np.prod(shape)))))
    kept, skipped = [], []
    start = time.time()
    try:
        # a rate for decoding files; an in-memory copy's would be a meaningless million images/s
        bar_format = "{l_bar}{bar}| {n_fmt}/{total_fmt} [{elapsed}]" if source.in_memory else None
        with progress_bar(total=len(rows), unit="img", desc=f"ingest {source.name}", disable=not progress,
                  bar_format=bar_format) as bar:
            for lo in range(0, len(rows), 512):
                batch = rows[lo:lo + 512]
                images, bad = source.read(batch)
                if bad and not config.skip_bad:
                    raise UserError(f"{source.sample_names(bad[0])} is {source.bad_reason(bad[0])}: fix or remove it, "
                                    f"or pass --skip-bad to skip and record it")
                skipped += [source.sample_names(i) for i in bad]
                kept.append(batch[~np.isin(batch, bad)])
                writer.append(images)
                bar.update(len(batch))
        keep = np.concatenate(kept)
        keep_split = split[np.isin(rows, keep)]
        labels = {name: values[keep] for name, values in source.labels.items()}
        primary, primary_names = next(iter(labels.values())), next(iter(source.class_names.values()))
        members = (("train", keep_split == 0), ("all", np.ones(len(keep), bool)))
        for on, member in members:
            check_folds(primary, member, config.folds, on, primary_names)
        folds = {(on, k): stratified_folds(primary, k, config.seed, member) for on, member in members
                 for k in config.folds}
        attrs = {"dataset": source.name, "source": source.description, "ingest_config": wanted,
                 "seed": config.seed, "ingest_seconds": round(time.time() - start, 2),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S")}
        writer.finish(labels=labels, class_names=source.class_names, split=keep_split, folds=folds,
                      attrs=attrs, skipped=skipped, sources=[source.origin(int(i)) for i in keep])
    except BaseException as e:
        writer.abort()
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT):
            raise UserError(f"the disk holding {store} filled up during ingest: nothing was kept; free space "
                            f"and run the same command again") from None
        raise
    if skipped:
        log(f"data: skipped {len(skipped)} unreadable images (listed in {schema.DATA_FILE}:/skipped)")
    log(f"data: {len(keep)} images of {source.name} ingested into {store}")
    return FeatureStore.open(store)
