"""The streaming extractor: stored uint8 images -> one compiled device step -> pooled CNN codes.

Resize, preprocessing and the forward pass (its BatchNorms folded into the convolutions) run as one
Keras model on big batches; a reader thread prefetches the next chunk from the store and a writer
thread commits the last one, so the device step never waits on disk. Chunks are the unit of commit:
a killed run resumes at the first missing one.
"""
import queue
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.fingerprint import digest_arrays, file_digest, fingerprint
from cnncodes.features.limits import MAX_BATCH, MAX_CHUNK
from cnncodes.features.names import check_name
from cnncodes.features.store import DAMAGE, FeatureStore, read_everything, resolve_name
from cnncodes.features.writers import FeatureSetWriter, bind_to_data, choose_name, discard_unusable, writer_lock
from .backbones import build_backbone, canonical_weights, get_backbone, make_preprocess_layer
from .cluster import dask_client
from .console import progress_bar
from .device import auto_batch_size, describe_device
from .fold import fold_batch_norms
from .ingest import check_writable
from .resize import make_resize_layer

FORMAT = 2  # bump when a change here alters the features for an unchanged configuration (2: folded BN)


@dataclass(frozen=True)
class FeatureConfig:
    backbone: str = "resnet50"
    weights: str = "imagenet"      # imagenet | none | PATH of a Keras weights file
    size: int = 224
    layer: str | None = None       # cut here; default: the backbone's last layer
    spatial: bool = False          # also keep the (float16) maps, not only their global average
    precision: str = "fp32"
    seed: int = 0                  # initialises --weights none
    flip_average: bool = False     # codes (and maps) averaged over the image and its mirror image

    def __post_init__(self):  # weights="NONE" from a Python caller: the word, not a file
        object.__setattr__(self, "weights", canonical_weights(self.weights))

    def default_name(self) -> str:
        w = {"imagenet": "imagenet", "none": f"none{self.seed}"}.get(self.weights, Path(self.weights).name.split(".")[0])
        parts = [self.backbone, self.layer or "pool", str(self.size), w, self.precision]
        parts += (["flip"] if self.flip_average else []) + (["spatial"] if self.spatial else [])
        return re.sub(r"[^A-Za-z0-9_.-]", "_", "-".join(parts))


@dataclass
class ExtractResult:
    name: str
    status: str            # "extracted", "resumed" or "cached"
    rows: int
    seconds: float
    images_per_second: float
    path: Path


def build_extractor(config: FeatureConfig, image_hw: tuple):
    """The whole device step as one Keras model: uint8 images in, float32 pooled codes (and maps) out.

    Also returns the digest of the backbone's weights as loaded (before BatchNorm folding).
    """
    import keras

    loaded = build_backbone(config.backbone, config.weights, config.size, config.layer, config.seed, config.precision)
    backbone = fold_batch_norms(loaded)
    images = keras.Input((*image_hw, 3), dtype="uint8", name="images")
    x = make_resize_layer(image_hw, config.size)(images)
    x = make_preprocess_layer(get_backbone(config.backbone).preprocessing)(x)
    maps = backbone(x, training=False)
    if config.flip_average:  # test-time augmentation: the mirror image's maps, mirrored back, averaged in
        def mirror(name):
            return keras.layers.Lambda(lambda t: keras.ops.flip(t, axis=2), name=name)

        mirrored = mirror("mirror_maps")(backbone(mirror("mirror_images")(x), training=False))
        maps = keras.layers.Average(name="flip_average")([maps, mirrored])
    pooled = keras.layers.GlobalAveragePooling2D(dtype="float32", name="pooled")(maps)
    outputs = [pooled, maps] if config.spatial else [pooled]
    model = keras.Model(images, outputs, name="extractor")
    return model, digest_arrays(loaded.get_weights())


def feature_fingerprint(store: FeatureStore, config: FeatureConfig, weights_digest: str, cut_layer: str) -> str:
    import keras

    return fingerprint({
        "data": store.attrs["content_sha256"], "image_shape": list(store.image_shape),
        "backbone": config.backbone, "weights": weights_digest, "layer": cut_layer, "size": config.size,
        "interpolation": "opencv-bicubic-a-0.75-rounded", "precision": config.precision,
        "preprocessing": get_backbone(config.backbone).preprocessing, "spatial": config.spatial,
        **({"flip_average": True} if config.flip_average else {}),  # absent when off: older sets keep their fingerprint
        "versions": {"keras": keras.__version__, "backend": keras.backend.backend(), "format": FORMAT},
    })


class DeviceStep:
    """Runs the model on fixed-size batches (the last one padded) so the compiled step is traced once."""

    def __init__(self, model, batch_size: int, jit_compile="auto", log=print):
        self.model, self.batch_size, self.log = model, batch_size, log
        self.model.compile(jit_compile=jit_compile)
        self.checked = False

    def warm_up(self, image_shape: tuple):
        """Traces and compiles the step on one batch, so the streaming loop runs compiled from its start."""
        self._predict(np.zeros((self.batch_size, *image_shape), np.uint8))

    def _predict(self, x):
        try:
            out = self.model.predict_on_batch(x)
        except Exception as e:
            if self.checked or self.model.jit_compile is False:
                raise
            # Some ops do not compile on some backends; run uncompiled rather than not at all.
            self.log(f"features: compiled step failed ({type(e).__name__}), running without jit_compile")
            self.model.compile(jit_compile=False)
            out = self.model.predict_on_batch(x)
        self.checked = True
        return out if isinstance(out, (list, tuple)) else [out]

    def __call__(self, images: np.ndarray) -> list[np.ndarray]:
        outs = []
        for lo in range(0, len(images), self.batch_size):
            x = images[lo:lo + self.batch_size]
            n = len(x)
            if n < self.batch_size:
                x = np.concatenate([x, np.zeros((self.batch_size - n, *x.shape[1:]), x.dtype)])
            outs.append([np.asarray(o[:n]) for o in self._predict(x)])
        return [np.concatenate(parts) for parts in zip(*outs)]


def prefetch(items, depth: int = 2):
    """Yields from `items`, produced on a background thread up to `depth` ahead."""
    q = queue.Queue(maxsize=depth)
    done = object()

    def run():
        try:
            for item in items:
                q.put(item)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)
        q.put(done)

    threading.Thread(target=run, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def setup_identity(config: FeatureConfig) -> dict:
    """What besides the configuration decides the codes and can be known without loading the backend:
    kept with a feature set, so a rerun can tell it is done in about a second."""
    from importlib.metadata import version

    identity = {"keras_version": version("keras"), "backend": configured_backend()}
    if Path(config.weights).is_file():
        identity["weights_file_sha256"] = file_digest(config.weights, "sha256")
    return identity


def configured_backend() -> str:
    """The backend Keras will load, read as Keras reads it: $KERAS_BACKEND, then keras.json."""
    import json
    import os

    if os.environ.get("KERAS_BACKEND"):
        return os.environ["KERAS_BACKEND"]
    home = Path(os.environ.get("KERAS_HOME", Path.home() / ".keras"))
    try:
        return json.loads((home / "keras.json").read_text()).get("backend", "tensorflow")
    except (OSError, ValueError):
        return "tensorflow"


def already_extracted(store: FeatureStore, config: FeatureConfig, name: str | None) -> ExtractResult | None:
    """A complete, sound set made with this configuration and setup from this very data, found without
    loading the backend (the full fingerprint needs the built model). None when unsure: the caller then
    checks properly (a set not bound to its data yet is bound there, once its fingerprint matched)."""
    wanted = {**asdict(config), **setup_identity(config)}
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
    if name is not None:
        check_name(name)  # it becomes a file name inside the store
    check_run_settings(batch_size, chunk_size, workers)
    store = FeatureStore.open(store_dir)
    if name is not None:  # names ignore case: --name R50 is the set r50 already there
        name = resolve_name(name, [s.name for s in store.feature_sets()], "feature set") or name
    if (done := already_extracted(store, config, name)) is not None:
        log(f"features: {done.name} is complete with this configuration, nothing to do")
        return done
    model, weights_digest = build_extractor(config, store.image_shape[:2])
    fp = feature_fingerprint(store, config, weights_digest, config.layer or "last")
    name = choose_name(store, name or config.default_name(), fp, explicit=name is not None)
    with ExitStack() as held:
        try:
            held.enter_context(writer_lock(store.path, name))
        except OSError as e:  # a read-only store can still answer for a set it holds complete
            if (done := complete_set(store, name)) is not None:
                log(f"features: {name} is complete with this fingerprint ({fp[:12]}), nothing to do")
                return done
            raise UserError(f"cannot write to store {store.path} ({e.strerror}): choose another --store") from None
        return _extract_locked(store, config, model, weights_digest, fp, name, batch_size, chunk_size, jit_compile,
                               workers, scheduler, progress, log)


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


def _extract_locked(store, config, model, weights_digest, fp, name, batch_size, chunk_size, jit_compile, workers,
                    scheduler, progress, log) -> ExtractResult:
    discard_unusable(store, name, log)  # a set that fails its checksums or is of other data is rebuilt, not reused
    done = complete_set(store, name)
    if done is not None:
        if store.feature_set(name).data_sha256 is None:  # its fingerprint, which covers the data, matched
            bind_to_data(store, name)
            log(f"features: {name} (made before cnncodes bound sets to their data) is now bound to this data.h5")
        log(f"features: {name} is complete with this fingerprint ({fp[:12]}), nothing to do")
        return done
    pooled_dim = model.outputs[0].shape[-1]
    spatial_shape = tuple(model.outputs[1].shape[1:]) if config.spatial else None
    per_row = 4 * pooled_dim + (2 * int(np.prod(spatial_shape)) if spatial_shape else 0)
    check_writable(store.path, need_bytes=2 * per_row * store.n)  # committed chunks + the final file
    # the weights' digest is kept so `predict` can tell if a --weights file changed since
    writer = FeatureSetWriter(store.path, name, fp, {**asdict(config), "weights_sha256": weights_digest,
                                                     **setup_identity(config)},
                              store.n, pooled_dim, spatial_shape, chunk_size, data_sha256=store.content)
    writer.drop_damaged_chunks(log)
    committed = writer.committed()
    if committed:
        log(f"features: resuming {name} at {sum(committed.values())}/{store.n} rows"
            + (f" (chunk size {writer.chunk_size}, as it was started)" if writer.chunk_size != chunk_size else ""))
    chunk_size = writer.chunk_size
    todo = [lo for lo in range(0, store.n, chunk_size) if lo not in committed]
    if batch_size == "auto":
        batch_size = auto_batch_size(model, store.image_shape, log=log)
    step = None
    if not (workers > 1 or scheduler):
        step = DeviceStep(model, batch_size, jit_compile, log)
        step.warm_up(store.image_shape)
    start = time.time()  # streaming time: model build and compilation are not counted
    bar = progress_bar(total=store.n, initial=sum(committed.values()), unit="img", desc=name, disable=not progress,
               smoothing=0.1)
    with bar:
        if workers > 1 or scheduler:
            extract_on_dask(store, config, name, fp, todo, batch_size, chunk_size, jit_compile, workers,
                            scheduler, bar)
        else:
            extract_chunks(store, step, writer, todo, chunk_size, config.spatial, bar)
    elapsed = time.time() - start
    writer.add_seconds(elapsed)
    rate = sum(min(chunk_size, store.n - lo) for lo in todo) / max(elapsed, 1e-9)
    writer.assemble({"images_per_second": round(rate, 2), "batch_size": batch_size, "chunk_size": chunk_size,
                     "workers": scheduler or workers, "device": describe_device()})
    log(f"features: {name} {'resumed and ' if committed else ''}complete, {store.n} rows, {rate:.1f} images/s")
    return ExtractResult(name, "resumed" if committed else "extracted", store.n, writer.seconds, rate,
                         schema.feature_path(store.path, name))


def extract_chunks(store: FeatureStore, step: DeviceStep, writer: FeatureSetWriter, starts, chunk_size: int,
                   spatial: bool, bar=None):
    """The hot loop: next chunk read ahead on a thread, last chunk committed on another."""
    chunks = ((lo, store.image_rows(lo, lo + chunk_size)) for lo in starts)
    with ThreadPoolExecutor(1) as commits:
        pending = []
        for lo, images in prefetch(chunks):
            outs = step(images)
            pending.append(commits.submit(writer.commit, lo, outs[0], outs[1] if spatial else None))
            while len(pending) > 2:
                pending.pop(0).result()
            if bar is not None:
                bar.update(len(images))
        for p in pending:
            p.result()


_worker_models = {}


def extract_shard(store_dir, config: FeatureConfig, name: str, fp: str, starts: list, batch_size: int,
                  chunk_size: int, jit_compile) -> int:
    """One Dask task: extract the given chunks on this worker's device, committing each one."""
    store = FeatureStore.open(store_dir)
    key = (config, store.image_shape)
    if key not in _worker_models:  # build the model once per worker process, not once per shard
        _worker_models[key] = build_extractor(config, store.image_shape[:2])
    model, digest = _worker_models[key]
    mine = feature_fingerprint(store, config, digest, config.layer or "last")
    if mine != fp:
        raise RuntimeError(f"worker computes fingerprint {mine[:12]}, not {fp[:12]}: its weights or versions differ")
    writer = FeatureSetWriter.existing(store.path, name, fp)
    todo = [lo for lo in starts if lo not in writer.committed()]
    extract_chunks(store, DeviceStep(model, batch_size, jit_compile, log=lambda m: None), writer, todo,
                   chunk_size, config.spatial)
    return sum(min(chunk_size, store.n - lo) for lo in starts)


def extract_on_dask(store, config, name, fp, todo, batch_size, chunk_size, jit_compile, workers, scheduler, bar):
    from distributed import KilledWorker, as_completed

    with dask_client(scheduler, workers) as client:
        n_workers = max(1, len(client.scheduler_info()["workers"]))
        per_shard = max(1, -(-len(todo) // (4 * n_workers)))  # a few shards per worker balance the load
        shards = [todo[i:i + per_shard] for i in range(0, len(todo), per_shard)]
        futures = [client.submit(extract_shard, str(store.path), config, name, fp, shard, batch_size, chunk_size,
                                 jit_compile, pure=False, retries=2) for shard in shards]
        try:
            for future in as_completed(futures):
                bar.update(future.result())
        except KilledWorker as e:  # the scheduler retried a shard on another worker until its allowed failures
            raise UserError(f"Dask workers kept dying while extracting a shard ({e.args[0]}); the committed chunks are "
                            "kept: check the workers' memory and logs, then run the same command to resume") from e
