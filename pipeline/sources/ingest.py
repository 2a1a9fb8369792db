"""Ingest: a source's images, labels, split and folds into the store's data file, once (or again, when
asked to, for a source that changed)."""
import fcntl
import hashlib
import json
import os
import shutil
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np

from cnncodes.features import schema
from cnncodes.features.data_file import DataFileWriter, store_lock
from cnncodes.features.errors import MAX_IMAGE_SIDE, MAX_SEED, UserError
from cnncodes.features.fingerprint import file_digest
from cnncodes.features.folds import stratified_folds, stratified_holdout, stratified_subset
from cnncodes.features.outputs import cannot_write, utf8_name
from cnncodes.features.store import FeatureStore, store_path
from cnncodes.features.writers import MARGIN, disk_full
from cnncodes.pipeline.console import printable, progress_bar
from cnncodes.pipeline.images import IMAGE_EXTENSIONS

from . import FOLDER, canonical_dataset, open_source
from .cifar import ARCHIVES, search_dirs
from .file_trees import walk


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
        if self.image_size is not None and not 1 <= self.image_size <= MAX_IMAGE_SIDE:
            raise UserError(f"--image-size {self.image_size}: give a side between 1 and {MAX_IMAGE_SIDE} pixels")
        if not 0 <= self.seed <= MAX_SEED:
            raise UserError(f"--seed {self.seed}: give a whole number from 0 to {MAX_SEED}")
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
    except OSError as e:
        raise UserError(f"cannot write to store {store} ({e.strerror}): choose another --store") from None
    if why := cannot_write(store):
        raise UserError(f"cannot write to store {store} ({why}): choose another --store")
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
           log=print, reingest: bool = False) -> FeatureStore:
    """The store holding the source: ingested now, or as ingested before if the source has not changed
    since (a changed source is refused, saying what changed). `reingest` ingests it again into the same
    store, whatever it held: the new data.h5 replaces the old one only once complete, and feature sets
    made from the old data are rebuilt when next asked for."""
    store = store_path(store)
    config.check()
    config = replace(config, dataset=canonical_dataset(config.dataset))
    wanted = json.dumps(asdict(config), sort_keys=True)
    if schema.data_path(store).exists() and not reingest:
        return reuse(store, wanted, data_dir, log)
    made = [p for p in (store, *store.parents) if not p.exists()]  # the folders this ingest creates
    check_writable(store)
    with store_lock(store):  # before anything is created: a second first-time ingest stops here
        if schema.data_path(store).exists() and not reingest:  # another process finished it while we waited
            return reuse(store, wanted, data_dir, log)
        try:
            source = open_source(config.dataset, data_dir=data_dir, verify=verify, image_size=config.image_size)
            try:
                # recorded before the images are read: a change while they are shows on the next run
                identity, listing = source_identity(config.dataset, data_dir)
                ingested = _write(store, source, config, wanted, identity, listing, progress, log)
            finally:
                source.close()
        except BaseException:
            if made:  # a failed first ingest leaves no half-made store, removed while the lock is held
                remove_made(made)
            raise
        forget_kept_folds(store)  # of the data replaced, if any: the new data's are computed when asked for
        return ingested


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


AGAIN = "ingest it into a new --store, or again into this one with `cnncodes features --reingest`"


def reuse(store: Path, wanted: str, data_dir, log) -> FeatureStore:
    existing = FeatureStore.open(store)
    if not same_content(existing.attrs.get("ingest_config"), wanted):
        raise UserError(f"{store} already holds {existing.dataset} ingested with other settings "
                        f"({printable(existing.attrs.get('ingest_config'))}): {AGAIN}")
    if changed := source_changes(existing, json.loads(wanted)["dataset"], data_dir):
        raise UserError(f"the source of {store} changed since it was ingested: {changed}; {AGAIN} (feature sets "
                        f"of the old data are then rebuilt)")
    log(f"data: {store} already ingested ({existing.n} images), reusing it")
    return existing


def forget_kept_folds(store: Path):
    """Removes the fold assignments kept for the data a re-ingest replaced (their seals would fail)."""
    folder = store / schema.FOLDS_DIR
    if not folder.exists():
        return
    with open(folder / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        for path in folder.glob("*.npy"):
            path.unlink(missing_ok=True)


# -- the source's identity: how a rerun tells, without decoding anything, that the source changed --------

def source_path(spec: str, data_dir=None) -> Path | None:
    """The folder or archive `--dataset` reads now; None for digits (bundled with scikit-learn), or when
    it is not there (a CIFAR archive not downloaded yet, a folder since removed)."""
    if spec.startswith(FOLDER):
        path = Path(spec[len(FOLDER):])
        return path if path.exists() else None
    if spec in ARCHIVES:
        archive = ARCHIVES[spec]
        found = [d / name for d in search_dirs(data_dir) for name in (archive.file, archive.keras_file)]
        return next((p for p in found if p.is_file()), None)
    return None


def folder_files(root: Path) -> dict[str, list[int]]:
    """name -> [size, modification time in ns] of every image file below a folder source (a listing:
    60,000 files take well under a second)."""
    files = {}
    for name in walk(os.fspath(root)):
        hidden = any(p.startswith(".") or p == "__MACOSX" for p in name.split("/"))
        if name.endswith("/") or hidden or not name.lower().endswith(IMAGE_EXTENSIONS):
            continue
        try:
            stat = os.stat(root / name)
        except OSError:
            continue  # a dangling link: not an image either way
        files[name] = [stat.st_size, stat.st_mtime_ns]
    return files


def listing_bytes(files: dict) -> bytes:
    return json.dumps(files, sort_keys=True).encode()


def source_identity(spec: str, data_dir=None) -> tuple[dict | None, bytes | None]:
    """What ingest records of its source: a folder's image files (their listing, and its sha256), or an
    archive's size, modification time and sha256; (None, None) when there is nothing to record."""
    path = source_path(spec, data_dir)
    if path is None:
        return None, None
    if path.is_dir():
        listing = listing_bytes(folder_files(path))
        return {"kind": "folder", "sha256": hashlib.sha256(listing).hexdigest()}, listing
    stat = path.stat()
    return {"kind": "archive", "size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
            "sha256": file_digest(path, "sha256")}, None


def source_changes(store: FeatureStore, spec: str, data_dir=None) -> str | None:
    """What changed in the source since the store ingested it, in words; None when nothing did, or when
    that cannot be told (a store made before cnncodes recorded it, digits, a source no longer there)."""
    recorded = json.loads(store.attrs.get("source_identity", "null"))
    path = source_path(spec, data_dir)
    if recorded is None or path is None:
        return None
    if recorded["kind"] == "folder":
        if not path.is_dir():
            return f"{shown(path)} is no longer a folder"
        now = folder_files(path)
        if hashlib.sha256(listing_bytes(now)).hexdigest() == recorded["sha256"]:
            return None
        return describe_changes(store.source_listing() or {}, now)
    if not path.is_file():
        return f"{shown(path)} is no longer an archive"
    stat = path.stat()
    if (stat.st_size, stat.st_mtime_ns) == (recorded["size"], recorded["mtime_ns"]) \
            or file_digest(path, "sha256") == recorded["sha256"]:  # touched, or copied, but the same bytes
        return None
    return f"{shown(path)} holds other bytes ({recorded['size']} when ingested, {stat.st_size} now)"


def shown(name) -> str:
    """A path from the file system as a message can show it: valid UTF-8, no control characters."""
    return printable(utf8_name(str(name)))


def describe_changes(before: dict, now: dict) -> str:
    """ "3 images added (e.g. train/cat/new.jpg), 1 removed (...), 2 changed (...)" """
    added = sorted(set(now) - set(before))
    removed = sorted(set(before) - set(now))
    changed = sorted(name for name in set(now) & set(before) if now[name] != before[name])
    changes = [(names, what) for names, what in ((added, "added"), (removed, "removed"), (changed, "changed"))
               if names]
    if not changes:
        return "its files changed"
    said = ", ".join(f"{len(names)} {what} (e.g. {shown(names[0])})" for names, what in changes)
    first = len(changes[0][0])
    return f"{first} image{'s' if first != 1 else ''}" + said[len(str(first)):]  # "3 images added, 1 removed"


def check_folds(labels: np.ndarray, member: np.ndarray, ks, on: str, class_names: list[str]):
    classes, counts = np.unique(labels[member], return_counts=True)
    for k in ks:
        if counts.min() < k:
            raise UserError(f"--folds {k}: the smallest class over {on}, {class_names[classes[counts.argmin()]]!r}, "
                            f"has {counts.min()} images, too few for {k} stratified folds; leave {k} out of --folds")


def _write(store, source, config, wanted, identity, listing, progress, log):
    rows, split = select_rows(source, config)
    if source.skipped_members:
        log(f"data: skipped {len(source.skipped_members)} archive members outside its root (absolute or '..' "
            f"paths, never read): {', '.join(source.skipped_members[:3])}"
            f"{' ...' if len(source.skipped_members) > 3 else ''}")
    first, _ = source.read(rows[:16])  # the shape of the first readable image: a bad one may be skipped
    shape = first.shape[1:] if len(first) else None
    if shape is None:
        raise UserError(f"{source.sample_names(int(rows[0]))} is {source.bad_reason(int(rows[0]))}: fix it, "
                        f"or pass --image-size and --skip-bad")
    need = data_file_bytes(source, rows, shape, len(config.folds), listing)
    check_writable(store, need_bytes=need)
    kept, skipped = [], []
    start = time.time()
    writer = None
    try:
        writer = DataFileWriter(store, shape, rows_per_chunk=max(1, min(256, (1 << 20) // int(np.prod(shape)))),
                                reserve_bytes=need)
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
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S"), "source_identity": json.dumps(identity)}
        writer.finish(labels=labels, class_names=source.class_names, split=keep_split, folds=folds,
                      attrs=attrs, skipped=skipped, sources=[source.origin(int(i)) for i in keep], listing=listing)
    except BaseException as e:
        if writer is not None:
            writer.abort()
        if disk_full(e):
            raise UserError(f"the disk holding {store} is too full for this ingest (about {human_bytes(need)} "
                            f"needed): nothing was kept; free space and run the same command again") from None
        raise
    if skipped:
        log(f"data: skipped {len(skipped)} unreadable images (listed in {schema.DATA_FILE}:/skipped)")
    log(f"data: {len(keep)} images of {source.name} ingested into {store}")
    return FeatureStore.open(store)


def data_file_bytes(source, rows: np.ndarray, shape: tuple, n_folds: int, listing: bytes | None) -> int:
    """An upper bound of data.h5's size, reserved before it is written: the images, per row its labels,
    split, folds and source name, the source's listing, and HDF5's own structures."""
    longest_source = max(len(source.origin(int(i)).encode("utf-8", "backslashreplace")) for i in rows)
    per_row = int(np.prod(shape)) + 2 * len(source.labels) + 1 + 2 * n_folds + longest_source + 16
    return len(rows) * per_row * 17 // 16 + len(listing or b"") + MARGIN
