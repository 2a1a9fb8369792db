"""The streaming extractor: stored uint8 images -> one compiled device step -> pooled CNN codes.

Resize, preprocessing and the forward pass (its BatchNorms folded into the convolutions) run as one
Keras model on big batches; a reader thread prefetches the next chunk from the store and a writer
thread commits the last one, so the device step never waits on disk. Chunks are the unit of commit:
a killed run resumes at the first missing one. With views, a second compiled step shares the backbone
and computes each training image's augmented views (crop, flip and resize on the device) in the same pass.
"""
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass, replace

import numpy as np

from cnncodes.features import schema
from cnncodes.features.errors import MAX_BATCH, MAX_CHUNK, UserError, check_name
from cnncodes.features.reading import DAMAGE, read_everything
from cnncodes.features.store import FeatureStore, resolve_name
from cnncodes.features.writers import FeatureSetWriter, bind_to_data, choose_name, discard_unusable, writer_lock
from cnncodes.pipeline.console import progress_bar
from cnncodes.pipeline.sources.ingest import check_writable

from .augment import check_views
from .cluster import dask_client
from .config import ExtractResult, FeatureConfig, config_record, feature_fingerprint, setup_identity
from .device import auto_batch_size, describe_device
from .device_step import DeviceStep, ViewPass, build_multi_extractor, prefetch


def already_extracted(store: FeatureStore, config: FeatureConfig, name: str | None) -> ExtractResult | None:
    """A complete, sound set made with this configuration and setup from this very data, found without
    loading the backend (the full fingerprint needs the built model). None when unsure: the caller then
    checks properly (a set not bound to its data yet is bound there, once its fingerprint matched)."""
    wanted = {**config_record(config), **setup_identity(config)}
    base = name or config.default_name()
    for info in store.feature_sets():
        if not info.complete or not (info.name == base or (name is None and info.name.startswith(base + "-"))):
            continue
        if info.data_sha256 is None or store.stale(info):
            continue
        stored = {k: v for k, v in info.config.items() if k != "weights_sha256"}
        if stored != wanted:
            continue
        path = schema.feature_path(store.path, info.name)
        try:
            read_everything(path)
        except DAMAGE:
            return None
        return ExtractResult(info.name, "cached", info.n, info.seconds, info.n / max(info.seconds, 1e-9), path)
    return None


def extract_features(store_dir, config: FeatureConfig, *, name: str | None = None, batch_size: int | str = 64,
                     chunk_size: int = 512, jit_compile="auto", workers: int = 1, scheduler: str | None = None,
                     progress: bool = True, log=print) -> ExtractResult:
    """Caches the CNN codes of every stored image under one feature set; a no-op when already done.

    With `workers` > 1 or a `scheduler` address, chunks are split into shards that Dask workers
    extract on their own devices, committing into the same feature set folder (a shared file system);
    the set is assembled here once every shard is in. A lost worker's shard is retried elsewhere.
    """
    return extract_layers(store_dir, config, [config.layer], name=name, batch_size=batch_size,
                          chunk_size=chunk_size, jit_compile=jit_compile, workers=workers, scheduler=scheduler,
                          progress=progress, log=log)[0]


@dataclass(frozen=True)
class Planned:
    """One layer's feature set in a run that extracts several from one forward pass."""
    config: FeatureConfig
    name: str
    fingerprint: str
    weights_digest: str
    output: int            # the layer's place among the model's cuts


def extract_layers(store_dir, config: FeatureConfig, layers: list, *, name: str | None = None,
                   batch_size: int | str = 64, chunk_size: int = 512, jit_compile="auto", workers: int = 1,
                   scheduler: str | None = None, progress: bool = True, log=print) -> list[ExtractResult]:
    """Caches the codes of the backbone cut at each layer in `layers` (None: its last layer), each as its own
    feature set, equal to (and fingerprinted as) a one-layer run of that layer, from ONE forward pass over
    the images: the cost of the deepest cut, not of their sum. Sets already complete are not recomputed.
    With several layers, `name` names the sets `NAME-<layer>`. Returns one result per layer, in order.
    With `config.views`, each set also keeps that many augmented views of every training row's codes (and
    their maps, with `config.spatial`)."""
    layers = check_layers(layers)
    if name is not None:
        check_name(name)  # it becomes a file name inside the store
    check_run_settings(batch_size, chunk_size, workers)
    store = FeatureStore.open(store_dir)
    check_views(config.views, min(store.image_shape[:2]))
    configs = [replace(config, layer=layer) for layer in layers]
    names = [set_name(store, name, layer, several=len(layers) > 1) for layer in layers]
    results = {}
    for i, c in enumerate(configs):
        if (done := already_extracted(store, c, names[i])) is not None:
            log(f"features: {done.name} is complete with this configuration, nothing to do")
            results[i] = done
    todo = [i for i in range(len(configs)) if i not in results]
    if not todo:
        return [results[i] for i in range(len(configs))]
    model, view_model, digests = build_multi_extractor(config, store.image_shape[:2], [layers[i] for i in todo])
    plans = {}
    for j, i in enumerate(todo):
        fp = feature_fingerprint(store, configs[i], digests[j], layers[i] or "last")
        explicit = names[i] is not None
        plans[i] = Planned(configs[i], choose_name(store, names[i] or configs[i].default_name(), fp, explicit),
                           fp, digests[j], j)
    with ExitStack() as held:
        for i, plan in list(plans.items()):
            try:
                held.enter_context(writer_lock(store.path, plan.name))
            except OSError as e:  # a read-only store can still answer for a set it holds complete
                if (done := complete_set(store, plan.name)) is None:
                    raise UserError(f"cannot write to store {store.path} ({e.strerror}): "
                                    "choose another --store") from None
                log(f"features: {plan.name} is complete with this fingerprint ({plan.fingerprint[:12]}), nothing to do")
                results[i] = done
                del plans[i]
        results.update(_extract_locked(store, config, (model, view_model), plans, batch_size, chunk_size,
                                       jit_compile, workers, scheduler, progress, log))
    return [results[i] for i in range(len(configs))]


def check_layers(layers) -> list:
    """The cuts of one run: at least one, each named once."""
    layers = list(layers)
    if not layers:
        raise UserError("--layer names no layer: give one or more, "
                        "e.g. --layer top_activation,block6a_expand_activation")
    if len(set(layers)) < len(layers):
        twice = next(l for l in layers if layers.count(l) > 1)
        raise UserError(f"--layer names {twice} twice: give each layer once")
    return layers


def set_name(store: FeatureStore, name: str | None, layer: str | None, several: bool) -> str | None:
    """The set's --name (resolved in any case against the store's names); `NAME-<layer>` for one of several cuts."""
    if name is None:
        return None
    if "+" in name:
        raise UserError(f"--name {name!r}: + joins feature sets when they are read (--features A+B); name the set "
                        f"without it")
    if several:
        name = f"{name}-{layer or 'last'}"
        check_name(name)
    return resolve_name(name, [s.name for s in store.feature_sets()], "feature set") or name


def check_run_settings(batch_size, chunk_size: int, workers: int):
    """How the work is cut, within what the machine can hold: checked before any work, as the CLI's ranges are."""
    if batch_size != "auto" and not (isinstance(batch_size, int) and 1 <= batch_size <= MAX_BATCH):
        raise UserError(f"--batch-size {batch_size!r}: give a whole number from 1 to {MAX_BATCH}, or auto")
    if not (isinstance(chunk_size, int) and 1 <= chunk_size <= MAX_CHUNK):
        raise UserError(f"--chunk-size {chunk_size!r}: give a whole number from 1 to {MAX_CHUNK}")
    if not (isinstance(workers, int) and workers >= 1):
        raise UserError(f"--workers {workers!r}: give a whole number of at least 1")


def complete_set(store: FeatureStore, name: str) -> ExtractResult | None:
    """The complete set of this name, when it was made from the data the store holds."""
    done = next((s for s in store.feature_sets() if s.name == name and s.complete), None)
    if done is None or store.stale(done):
        return None
    return ExtractResult(name, "cached", done.n, done.seconds, done.n / max(done.seconds, 1e-9),
                         schema.feature_path(store.path, name))


def _extract_locked(store, config, models, plans: dict, batch_size, chunk_size, jit_compile, workers, scheduler,
                    progress, log) -> dict:
    """Extracts the planned sets (under their writer locks); returns {layer index: result}."""
    results, writers = {}, {}
    for i, plan in plans.items():
        discard_unusable(store, plan.name, log)  # a set that fails its checksums or is of other data is rebuilt
        if (done := complete_set(store, plan.name)) is not None:
            if store.feature_set(plan.name).data_sha256 is None:  # its fingerprint, which covers the data, matched
                bind_to_data(store, plan.name)
                log(f"features: {plan.name} (made before cnncodes bound sets to their data) "
                    "is now bound to this data.h5")
            log(f"features: {plan.name} is complete with this fingerprint ({plan.fingerprint[:12]}), nothing to do")
            results[i] = done
        else:
            writers[i] = plan
    if not writers:
        return results
    model, view_model = models
    views = ViewPass(config, store.rows("train").stop, store.image_shape[:2], None) if config.views else None
    train_rows = views.train_rows if views else 0
    stride = 2 if config.spatial else 1
    shapes = {i: (model.outputs[stride * p.output].shape[-1],
                  tuple(model.outputs[stride * p.output + 1].shape[1:]) if config.spatial else None)
              for i, p in writers.items()}
    per_row = sum(4 * dim + (2 * int(np.prod(maps)) if maps else 0) for dim, maps in shapes.values())
    per_view = sum(4 * dim + (2 * int(np.prod(maps)) if maps else 0) for dim, maps in shapes.values())
    # committed chunks + the final files
    check_writable(store.path, need_bytes=2 * (per_row * store.n + per_view * config.views * train_rows))
    opened, resumed = {}, {}
    for i, p in writers.items():  # the weights' digest is kept so `predict` can tell if a --weights file changed
        identity = {**config_record(p.config), "weights_sha256": p.weights_digest, **setup_identity(p.config)}
        w = FeatureSetWriter(store.path, p.name, p.fingerprint, identity, store.n, *shapes[i], chunk_size,
                             data_sha256=store.content, views=config.views, train_rows=train_rows)
        w.drop_damaged_chunks(log)
        if committed := w.committed():
            resumed[i] = True
            log(f"features: resuming {p.name} at {sum(committed.values())}/{store.n} rows"
                + (f" (chunk size {w.chunk_size}, as it was started)" if w.chunk_size != chunk_size else ""))
        opened[i] = w
    if batch_size == "auto":
        batch_size = auto_batch_size(model, store.image_shape, log=log)
    distributed = workers > 1 or scheduler
    step = None
    if not distributed:
        step = DeviceStep(model, batch_size, jit_compile, log)
        step.warm_up()
        if views:
            views.step = DeviceStep(view_model, batch_size, jit_compile, log)
            views.step.warm_up()
    images_of = views.images_in if views else (lambda lo, count: count)
    # streaming time: model build and compilation are not counted
    start, images_done, view_seconds = time.time(), 0, 0.0
    clock = PassClock(opened.values(), views)
    # Sets resumed with another chunk size than the rest take a pass of their own (chunks must line up).
    for size in sorted({w.chunk_size for w in opened.values()}):
        group = {i: w for i, w in opened.items() if w.chunk_size == size}
        held = [set(w.committed()) for w in group.values()]  # listed once: a folder read per set, not per chunk
        todo = [lo for lo in range(0, store.n, size) if any(lo not in h for h in held)]
        label = plans[min(group)].name + (f" (+{len(group) - 1} cuts)" if len(group) > 1 else "")
        pending = sum(images_of(lo, min(size, store.n - lo)) for lo in todo)
        total = images_of(0, store.n)  # the bar counts the images of the pass: plain ones and views
        with progress_bar(total=total, initial=total - pending, unit="img", desc=label, disable=not progress,
                          smoothing=0.1) as bar:
            outputs = {i: plans[i].output for i in group}
            if distributed:
                view_seconds += extract_on_dask(store, config, [plans[i] for i in group], todo, batch_size, size,
                                                jit_compile, workers, scheduler, bar)
            else:
                extract_chunks(store, step, {w: outputs[i] for i, w in group.items()}, todo, size, config.spatial,
                               bar, views, on_chunk=clock)
        images_done += pending
    elapsed = time.time() - start
    rate = images_done / max(elapsed, 1e-9)
    clock(view_seconds)  # what the last chunks took; on Dask, the whole pass and its views' share
    together = [plans[i].name for i in opened]
    for i, w in opened.items():
        w.assemble({"images_per_second": round(rate, 2), "batch_size": batch_size, "chunk_size": w.chunk_size,
                    "workers": scheduler or workers, "device": describe_device(),
                    **({"views_seconds": round(w.views_seconds, 2)} if views else {}),
                    **({"extracted_with": [n for n in together if n != plans[i].name]} if len(together) > 1 else {})})
        log(f"features: {plans[i].name} {'resumed and ' if resumed.get(i) else ''}complete, {store.n} rows"
            + (f" and {config.views} views of {train_rows} training rows" if views else "") + f", {rate:.1f} images/s")
        results[i] = ExtractResult(plans[i].name, "resumed" if resumed.get(i) else "extracted", store.n, w.seconds,
                                   rate,
                                   schema.feature_path(store.path, plans[i].name))
    return results


class PassClock:
    """Adds the time a pass spends to its sets' manifests as its chunks go by, so that a pass killed part way
    (a session's end) keeps what it spent: a set's seconds are the sum of every stretch that made it."""

    def __init__(self, writers, views: "ViewPass | None"):
        self.writers, self.views = list(writers), views
        self.last, self.last_views = time.time(), 0.0

    def __call__(self, extra_views_seconds: float = 0.0):
        now, views_now = time.time(), (self.views.seconds if self.views else 0.0) + extra_views_seconds
        for w in self.writers:  # each set's cost is the whole pass they share
            w.add_seconds(now - self.last, views_now - self.last_views)
        self.last, self.last_views = now, views_now


def extract_chunks(store: FeatureStore, step: DeviceStep, writers: dict, starts, chunk_size: int, spatial: bool,
                   bar=None, views: ViewPass | None = None, on_chunk=None):
    """The hot loop: next chunk read ahead on a thread, last chunk committed on another. `writers` maps each
    set's writer to its cut's place among the step's outputs; a chunk a set already holds is not written again.
    With `views`, the chunk's training rows also go through the views' step (their boxes drawn on the reader
    thread), and every set commits their codes with the chunk. `on_chunk()` is called after each chunk."""
    stride = 2 if spatial else 1
    held = {w: set(w.committed()) for w in writers}

    def read(lo):
        images = store.image_rows(lo, lo + chunk_size)
        return lo, images, views.boxes(lo, len(images)) if views else None

    chunks = (read(lo) for lo in starts)
    with ThreadPoolExecutor(1) as commits:
        pending = []
        for lo, images, boxes in prefetch(chunks):
            outs = step(images)
            seen = views(images, boxes) if views and len(boxes) else None
            for w, k in writers.items():
                if lo not in held[w]:
                    pending.append(commits.submit(
                        w.commit, lo, outs[stride * k], outs[stride * k + 1] if spatial else None,
                        seen[stride * k] if seen is not None else None,
                        seen[stride * k + 1] if seen is not None and spatial else None))
            while len(pending) > 2 * len(writers):
                pending.pop(0).result()
            if bar is not None:
                bar.update(len(images) + (len(boxes) if views else 0))
            if on_chunk is not None:
                on_chunk()
        for p in pending:
            p.result()


_worker_models = {}


def extract_shard(store_dir, config: FeatureConfig, plans: list, starts: list, batch_size: int, chunk_size: int,
                  jit_compile) -> tuple[int, float]:
    """One Dask task: extract the given chunks on this worker's device, committing each one to every planned set.
    Returns the images it put through the device (views included) and the seconds its views took."""
    store = FeatureStore.open(store_dir)
    layers = tuple(p.config.layer for p in plans)
    key = (config, layers, store.image_shape)
    if key not in _worker_models:  # build the model once per worker process, not once per shard
        _worker_models[key] = build_multi_extractor(config, store.image_shape[:2], list(layers))
    model, view_model, digests = _worker_models[key]
    writers = {}
    for j, (plan, digest) in enumerate(zip(plans, digests)):
        mine = feature_fingerprint(store, plan.config, digest, plan.config.layer or "last")
        if mine != plan.fingerprint:
            raise RuntimeError(f"worker computes fingerprint {mine[:12]}, not {plan.fingerprint[:12]}: its weights or "
                               f"versions differ")
        writers[FeatureSetWriter.existing(store.path, plan.name, plan.fingerprint)] = j
    quiet = dict(jit_compile=jit_compile, log=lambda m: None)
    views = None
    if config.views:
        views = ViewPass(config, store.rows("train").stop, store.image_shape[:2],
                         DeviceStep(view_model, batch_size, **quiet))
    extract_chunks(store, DeviceStep(model, batch_size, **quiet), writers, starts, chunk_size, config.spatial,
                   views=views)
    count = views.images_in if views else (lambda lo, n: n)
    return sum(count(lo, min(chunk_size, store.n - lo)) for lo in starts), views.seconds if views else 0.0


def extract_on_dask(store, config, plans, todo, batch_size, chunk_size, jit_compile, workers, scheduler, bar) -> float:
    """Extracts the chunks `todo` in shards on Dask workers; returns the seconds the workers' views took."""
    from distributed import KilledWorker, as_completed

    with dask_client(scheduler, workers) as client:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        per_shard = max(1, -(-len(todo) // (4 * n_workers)))  # a few shards per worker balance the load
        shards = [todo[i:i + per_shard] for i in range(0, len(todo), per_shard)]
        futures = [client.submit(extract_shard, str(store.path), config, plans, shard, batch_size, chunk_size,
                                 jit_compile, pure=False, retries=2) for shard in shards]
        view_seconds = 0.0
        try:
            for future in as_completed(futures):
                images, seconds = future.result()
                bar.update(images)
                view_seconds += seconds
        except KilledWorker as e:  # the scheduler retried a shard on another worker until its allowed failures
            raise UserError(f"Dask workers kept dying while extracting a shard ({e.args[0]}); the committed chunks are "
                            "kept: check the workers' memory and logs, then run the same command to resume") from e
        return view_seconds
