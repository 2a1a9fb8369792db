"""The streaming extractor: correct codes, cached by fingerprint, resumable after SIGKILL, clear errors."""
import json

import cv2
import h5py
import numpy as np
import pytest

from cnncodes.features import schema
from cnncodes.features.errors import UserError
from cnncodes.features.sealed import read_sealed
from cnncodes.features.store import FeatureStore
from cnncodes.features.writers import FeatureSetWriter
from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
from cnncodes.pipeline.sources.ingest import IngestConfig, ingest
from conftest import kill_midway, run_cli, run_process

quiet = dict(progress=False, log=lambda m: None)


def small_store(path, limit=10):
    ingest(path, IngestConfig("digits", limit=limit), **quiet)
    return path


@pytest.mark.parametrize("src, dst", [((8, 8), 32), ((32, 32), 224), ((50, 37), 20)])
def test_device_resize_is_opencv_bicubic(src, dst):
    import keras

    from cnncodes.pipeline.layers import make_resize_layer

    images = np.random.default_rng(0).integers(0, 256, (3, *src, 3), dtype=np.uint8)
    ours = keras.ops.convert_to_numpy(make_resize_layer(src, dst)(images))
    opencv = np.stack([cv2.resize(im, (dst, dst), interpolation=cv2.INTER_CUBIC) for im in images])
    assert np.abs(ours - opencv).max() <= 1  # OpenCV rounds in fixed point; we round in float


def test_codes_equal_the_reference_method(digits_store, resnet_weights):
    """Per-image cv2 bicubic resize, float32 preprocess_input, predict, global average: as the reference did."""
    import keras

    store = FeatureStore.open(digits_store)
    images = store.images()[:16]
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    model.load_weights(resnet_weights)
    resized = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_CUBIC) for im in images]).astype("float32")
    reference = model.predict(keras.applications.resnet50.preprocess_input(resized), verbose=0).mean(axis=(1, 2))
    ours = store.features("r50")[:16]
    assert ours.dtype == np.float32 and ours.shape == (16, 2048)
    assert np.linalg.norm(ours - reference) / np.linalg.norm(reference) < 1e-4


def test_same_fingerprint_is_a_noop_and_other_config_a_new_set(digits_store, resnet_weights):
    path = digits_store / "features" / "r50.h5"
    before = path.stat().st_mtime_ns
    said = []
    result = extract_features(digits_store, FeatureConfig(weights=str(resnet_weights), size=32), name="r50",
                              progress=False, log=said.append)
    assert result.status == "cached" and "nothing to do" in said[0]
    assert path.stat().st_mtime_ns == before
    with pytest.raises(UserError, match="'r50' .* different configuration"):
        extract_features(digits_store, FeatureConfig(weights=str(resnet_weights), size=40), name="r50", **quiet)
    assert path.stat().st_mtime_ns == before


def test_default_names_never_mix_fingerprints(tmp_path, resnet_weights):
    store = small_store(tmp_path / "d")
    cfg = FeatureConfig(weights=str(resnet_weights), size=32)
    first = extract_features(store, cfg, **quiet)
    assert first.name == "resnet50-pool-32-resnet50_notop-fp32"
    # the same default name, other weights content: a new set beside it, the first untouched
    import keras
    keras.utils.set_random_seed(1)
    other = tmp_path / "resnet50_notop.weights.h5"
    keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(other)
    second = extract_features(store, FeatureConfig(weights=str(other), size=32), **quiet)
    assert second.name.startswith(first.name + "-") and second.name != first.name
    fps = {s.fingerprint for s in FeatureStore.open(store).feature_sets()}
    assert len(fps) == 2
    assert extract_features(store, FeatureConfig(weights=str(other), size=32), **quiet).status == "cached"


def test_layer_cut_and_spatial_maps(tmp_path):
    store = small_store(tmp_path / "d")
    cfg = FeatureConfig(weights="none", size=32, layer="conv3_block4_out", spatial=True)
    name = extract_features(store, cfg, **quiet).name
    s = FeatureStore.open(store)
    pooled, maps = s.features(name), s.features(name, kind="spatial")
    assert pooled.shape == (20, 512) and maps.shape == (20, 4, 4, 512) and maps.dtype == np.float16
    np.testing.assert_allclose(maps.astype(np.float32).mean(axis=(1, 2)), pooled, rtol=2e-2, atol=2e-2)
    lazy = s.features(name, split="test", kind="spatial", lazy=True)
    np.testing.assert_array_equal(lazy.compute(), maps[10:])


def test_seeded_random_weights_are_reproducible(tmp_path):
    a = extract_features(small_store(tmp_path / "a"), FeatureConfig(weights="none", size=32, seed=5), **quiet)
    b = extract_features(small_store(tmp_path / "b"), FeatureConfig(weights="none", size=32, seed=5), **quiet)
    np.testing.assert_array_equal(FeatureStore.open(tmp_path / "a").features(a.name),
                                  FeatureStore.open(tmp_path / "b").features(b.name))


@pytest.mark.parametrize("config, message", [
    (FeatureConfig(backbone="resnet999", weights="none", size=32), "unknown backbone 'resnet999'"),
    (FeatureConfig(weights="none", size=32, layer="conv9_nope"), "has no layer 'conv9_nope': try"),
    (FeatureConfig(weights="/no/such/file.weights.h5", size=32), "weights file /no/such/file.weights.h5 not found"),
])
def test_bad_configuration_is_one_clear_error(tmp_path, config, message):
    with pytest.raises(UserError, match=message):
        extract_features(small_store(tmp_path / "d"), config, **quiet)


def test_weights_file_of_another_architecture_is_refused(tmp_path):
    import keras

    vgg = tmp_path / "vgg16.weights.h5"
    keras.applications.VGG16(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(vgg)
    with pytest.raises(UserError, match="does not fit resnet50 without its top"):
        extract_features(small_store(tmp_path / "d"), FeatureConfig(weights=str(vgg), size=32), **quiet)


def test_imagenet_weights_offline_say_where_to_put_them(tmp_path, monkeypatch):
    from keras.src.utils import file_utils

    def offline(*a, **k):
        raise OSError("network unreachable")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(UserError, match="ImageNet weights for resnet50 could not be loaded.*--weights PATH"):
        extract_features(small_store(tmp_path / "d"), FeatureConfig(size=32), **quiet)


def test_incomplete_set_is_never_served_as_complete(tmp_path):
    store = small_store(tmp_path / "d")
    writer = FeatureSetWriter(store, "half", "f" * 64, {}, 20, 4, None)
    writer.commit(0, np.ones((10, 4), np.float32), None)
    s = FeatureStore.open(store)
    (info,) = s.feature_sets()
    assert not info.complete and info.done == 10
    with pytest.raises(UserError, match="incomplete .*10/20"):
        s.features("half")
    assert "INCOMPLETE 10/20" in run_cli("info", store).stdout


@pytest.mark.slow
def test_killed_run_resumes_to_the_uninterrupted_result(tmp_path, digits_store, resnet_weights):
    store = tmp_path / "digits"
    args = ["features", "--dataset", "digits", "--store", store, "--weights", resnet_weights, "--size", "32",
            "--chunk-size", "64", "--name", "r50", "--quiet"]
    parts = store / "features" / "r50.parts"
    kill_midway(args, lambda: len(list(parts.glob("pooled-*.npy"))) >= 3)
    committed = len(list(parts.glob("pooled-*.npy")))
    assert 3 <= committed < 29, "the run was not killed midway"
    assert not (store / "features" / "r50.h5").exists()
    spent = read_sealed(parts / "manifest.json")["seconds"]
    assert spent > 0, "the killed stretch's time was lost"
    said = []
    result = extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32), name="r50",
                              chunk_size=64, progress=False, log=said.append)
    assert result.status == "resumed" and said[0].startswith(f"features: resuming r50 at {committed * 64}/1797")
    resumed = FeatureStore.open(store)
    clean = FeatureStore.open(digits_store)
    assert resumed.feature_set("r50").fingerprint == clean.feature_set("r50").fingerprint
    assert resumed.feature_set("r50").seconds > spent  # both stretches: the cost of the whole set
    np.testing.assert_allclose(resumed.features("r50"), clean.features("r50"), rtol=1e-6, atol=1e-6)
    assert not parts.exists()


def test_unwritable_store_and_full_disk_stop_before_work(tmp_path, monkeypatch):
    import shutil
    from collections import namedtuple

    (tmp_path / "file").write_text("")
    with pytest.raises(UserError, match="cannot write to store .*choose another --store"):
        ingest(tmp_path / "file" / "store", IngestConfig("digits"), **quiet)
    store = small_store(tmp_path / "d")
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: usage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(UserError, match="too little disk"):
        extract_features(store, FeatureConfig(weights="none", size=32), **quiet)
    assert FeatureStore.open(store).feature_sets() == []


def test_cli_errors_are_one_line_with_nonzero_exit(tmp_path):
    r = run_cli("features", "--dataset", "imagenet22k", "--store", tmp_path / "x")
    assert r.returncode == 1 and r.stderr.strip().splitlines() == [
        "error: unknown dataset 'imagenet22k': use cifar100, cifar10, digits or folder:PATH"]
    r = run_cli("info", tmp_path / "nowhere")
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1 and "no store at" in r.stderr


def test_info_json_describes_feature_sets(digits_store):
    r = run_cli("info", digits_store, "--json")
    info = json.loads(r.stdout)
    assert info["dataset"] == "digits" and info["splits"] == {"train": 1438, "test": 359}
    (fs,) = info["feature_sets"]
    assert fs["name"] == "r50" and fs["complete"] and fs["shape"] == [1797, 2048] and fs["dtype"] == "float32"
    assert len(fs["fingerprint"]) == 64 and fs["seconds"] > 0


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])  # what the GPU machines run; JAX's step is jit-compiled
def test_other_backends_give_the_same_codes(tmp_path, resnet_weights, backend):
    pytest.importorskip(backend, reason=f"the {backend} backend is not installed (make test installs it)")
    store = small_store(tmp_path / "tf", limit=8)
    name = extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32, views=2), **quiet).name
    r = run_process("features", "--dataset", "digits", "--limit", 8, "--store", tmp_path / backend, "--weights",
                resnet_weights, "--size", 32, "--views", 2, "--quiet", env={"KERAS_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    assert "running without jit_compile" not in r.stdout + r.stderr  # neither step: the views' crops compile too
    with h5py.File(tmp_path / backend / "features" / f"{name}.h5") as f:
        assert json.loads(f.attrs["config"])["weights"] == str(resnet_weights)
        assert backend in json.loads(f.attrs["extra"])["device"]
        codes, views = f["pooled"][:], f["views"][:]
    tf = FeatureStore.open(store)
    for ours, theirs in ((codes, tf.features(name)), (views, tf.views(name))):
        assert np.linalg.norm(ours - theirs) / np.linalg.norm(theirs) < 1e-4


@pytest.mark.slow
def test_two_worker_local_cluster_equals_single_process(tmp_path, digits_store, resnet_weights):
    """Shards extracted by 2 Dask worker processes on loopback, assembled once all are in."""
    store = ingest(tmp_path / "d", IngestConfig("digits"), **quiet).path
    result = extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32), name="r50",
                              chunk_size=128, workers=2, **quiet)
    assert result.status == "extracted"
    with h5py.File(result.path) as f:
        assert json.loads(f.attrs["extra"])["workers"] == 2
    np.testing.assert_allclose(FeatureStore.open(store).features("r50"),
                               FeatureStore.open(digits_store).features("r50"),
                               rtol=1e-5, atol=1e-5)


def extract_killing_a_worker(store, weights, allowed_failures=3):
    """Extracts on a 2-worker LocalCluster and SIGKILLs a worker in the middle of a shard; returns
    the result (or the exception) and how many chunks were committed at the kill."""
    import os
    import signal
    import threading
    import time

    import dask
    from distributed import Client, LocalCluster

    parts = store / "features" / "r50.parts"
    with dask.config.set({"distributed.scheduler.allowed-failures": allowed_failures}), \
            LocalCluster(n_workers=2, threads_per_worker=1, host="127.0.0.1", dashboard_address=":0") as cluster, \
            Client(cluster) as client:
        pids = client.run(os.getpid)  # worker address -> process id
        outcome = []

        def run():
            try:
                outcome.append(extract_features(store, FeatureConfig(weights=str(weights), size=32), name="r50",
                                                chunk_size=64, scheduler=cluster.scheduler_address, **quiet))
            except Exception as e:  # noqa: BLE001 - handed to the test's thread
                outcome.append(e)

        coordinator = threading.Thread(target=run)
        coordinator.start()
        deadline = time.time() + 240
        busy = []
        while not (list(parts.glob("pooled-*.npy")) and busy) and time.time() < deadline:
            time.sleep(0.05)  # wait for observable progress: a committed chunk and a worker holding a shard
            busy = [address for address, keys in client.processing().items() if keys and address in pids]
        assert busy, "no worker was busy with a shard"
        os.kill(pids[busy[0]], signal.SIGKILL)  # a worker in the middle of a shard
        committed = len(list(parts.glob("pooled-*.npy")))
        coordinator.join(timeout=300)
        assert pids[busy[0]] not in client.run(os.getpid).values()  # the nanny started a new worker in its place
    assert 1 <= committed < 29, "the worker was not killed midway"
    return outcome[0]


@pytest.mark.slow
def test_lost_workers_shard_is_redone_elsewhere(tmp_path, digits_store, resnet_weights):
    store = ingest(tmp_path / "d", IngestConfig("digits"), **quiet).path
    result = extract_killing_a_worker(store, resnet_weights)
    assert not isinstance(result, Exception), result
    assert result.status == "extracted"
    np.testing.assert_allclose(FeatureStore.open(store).features("r50"),
                               FeatureStore.open(digits_store).features("r50"),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_shard_whose_workers_keep_dying_stops_clearly_and_resumes(tmp_path, digits_store, resnet_weights):
    store = ingest(tmp_path / "d", IngestConfig("digits"), **quiet).path
    error = extract_killing_a_worker(store, resnet_weights, allowed_failures=0)
    assert isinstance(error, UserError) and "run the same command to resume" in str(error)
    kept = sum(schema.committed_chunks(store / "features" / "r50.parts").values())  # rows; the workers are gone
    assert kept >= 64
    said = []
    result = extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32), name="r50", chunk_size=64,
                              progress=False, log=said.append)
    assert result.status == "resumed" and said[0].startswith(f"features: resuming r50 at {kept}/1797")
    np.testing.assert_allclose(FeatureStore.open(store).features("r50"),
                               FeatureStore.open(digits_store).features("r50"),
                               rtol=1e-5, atol=1e-5)


def test_bf16_codes_are_close_to_fp32_and_stored_as_float32(tmp_path, digits_store, resnet_weights):
    store = ingest(tmp_path / "d", IngestConfig("digits", limit=32), **quiet).path
    name = extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32, precision="bf16"), **quiet).name
    assert name.endswith("-bf16")
    s = FeatureStore.open(store)
    bf16 = s.features(name)
    assert bf16.dtype == np.float32
    fp32 = FeatureStore.open(digits_store).features("r50")
    # the same images in the full store: match rows by pixels
    full = FeatureStore.open(digits_store).images().reshape(1797, -1)
    index = {row.tobytes(): i for i, row in enumerate(full)}
    ref = fp32[[index[r.tobytes()] for r in s.images().reshape(len(bf16), -1)]]
    assert np.linalg.norm(bf16 - ref) / np.linalg.norm(ref) < 0.05


def test_auto_batch_size_on_cpu_is_the_cpu_batch(tmp_path):
    from cnncodes.pipeline.extraction.device import CPU_BATCH

    store = small_store(tmp_path / "d")
    result = extract_features(store, FeatureConfig(weights="none", size=32), batch_size="auto", **quiet)
    with h5py.File(result.path) as f:
        assert json.loads(f.attrs["extra"])["batch_size"] == CPU_BATCH


def test_auto_batch_size_on_an_accelerator_is_the_largest_batch_that_ran(monkeypatch):
    """The doubling probe, with a device that runs out of memory above 256 images."""
    import keras

    from cnncodes.pipeline.extraction import device

    class Device:
        def __init__(self, error):
            self.tried, self.error = [], error

        def predict_on_batch(self, x):
            self.tried.append(len(x))
            if len(x) > 256:
                raise self.error

    monkeypatch.setattr(device, "accelerator", lambda: "gpu:test")
    said = []
    oom = Device(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 9.1GiB"))
    assert device.auto_batch_size(oom, (224, 224, 3), log=said.append) == 256
    assert oom.tried == [32, 64, 128, 256, 512]
    assert said == [f"features: --batch-size auto chose 256 on gpu:test ({keras.backend.backend()} backend)"]
    with pytest.raises(ValueError, match="bad shape"):  # anything but running out of memory is not swallowed
        device.auto_batch_size(Device(ValueError("bad shape")), (224, 224, 3), log=said.append)


@pytest.mark.parametrize("backbone", ["resnet50", "mobilenet_v2"])
def test_seeded_random_weights_ignore_other_threads_drawing_random_numbers(backbone):
    """Keras seeds initializers from Python's global `random`; Dask worker threads draw from it too."""
    import random
    import threading

    from cnncodes.features.fingerprint import digest_arrays
    from cnncodes.pipeline.backbones import build_backbone

    quiet_build = digest_arrays(build_backbone(backbone, "none", 32, seed=3).get_weights())
    stop = threading.Event()

    def noisy():
        while not stop.is_set():
            random.random()

    thread = threading.Thread(target=noisy)
    thread.start()
    try:
        busy_build = digest_arrays(build_backbone(backbone, "none", 32, seed=3).get_weights())
    finally:
        stop.set()
        thread.join()
    assert busy_build == quiet_build
    assert digest_arrays(build_backbone(backbone, "none", 32, seed=4).get_weights()) != quiet_build


def test_resume_keeps_the_chunk_size_the_set_was_started_with(tmp_path, monkeypatch):
    store = small_store(tmp_path / "d")
    cfg = FeatureConfig(weights="none", size=32)
    clean = FeatureStore.open(store)
    name = extract_features(store, cfg, chunk_size=4, **quiet).name
    reference = clean.features(name)
    (store / "features" / f"{name}.h5").unlink()

    def interrupted(self, extra):
        raise KeyboardInterrupt  # as if killed just before assembling

    monkeypatch.setattr(FeatureSetWriter, "assemble", interrupted)
    with pytest.raises(KeyboardInterrupt):
        extract_features(store, cfg, chunk_size=4, **quiet)
    monkeypatch.undo()
    parts = store / "features" / f"{name}.parts"
    for p in sorted(parts.glob("pooled-*.npy"))[1::2]:  # lose every other chunk
        p.unlink()
    said = []
    result = extract_features(store, cfg, chunk_size=512, progress=False, log=said.append)
    assert result.status == "resumed" and "chunk size 4" in said[0]
    np.testing.assert_array_equal(FeatureStore.open(store).features(name), reference)


@pytest.mark.parametrize("backbone, layer, dim", [("vgg16", "block3_pool", 256), ("mobilenet_v2", None, 1280)])
def test_other_backbones_and_an_intermediate_vgg16_cut(tmp_path, backbone, layer, dim):
    store = small_store(tmp_path / "d", limit=4)
    result = extract_features(store, FeatureConfig(backbone=backbone, weights="none", size=32, layer=layer), **quiet)
    codes = FeatureStore.open(store).features(result.name)
    assert codes.shape == (8, dim) and np.isfinite(codes).all() and codes.std() > 0


def test_step_that_does_not_compile_falls_back_and_says_so_once():
    """TensorFlow's XLA has no bicubic resize: a jit-compiled step with one runs uncompiled instead."""
    import keras

    from cnncodes.pipeline.extraction.extract import DeviceStep

    if keras.backend.backend() != "tensorflow":
        pytest.skip("the XLA gap is TensorFlow's")
    images = keras.Input((8, 8, 3), dtype="uint8")
    x = keras.layers.Lambda(lambda t: keras.ops.image.resize(keras.ops.cast(t, "float32"), (16, 16),
                                                             interpolation="bicubic"))(images)
    said = []
    step = DeviceStep(keras.Model(images, keras.layers.GlobalAveragePooling2D()(x)), 4, jit_compile=True,
                      log=said.append)
    first, second = step(np.full((6, 8, 8, 3), 7, np.uint8)), step(np.full((3, 8, 8, 3), 7, np.uint8))
    np.testing.assert_allclose(first[0], 7.0, atol=1e-3)
    assert second[0].shape == (3, 3)
    assert said == ["features: compiled step failed (InvalidArgumentError), running without jit_compile"]


def test_layers_command_lists_names_and_shapes_for_layer():
    from click.testing import CliRunner

    from cnncodes.cli import cli

    result = CliRunner().invoke(cli, ["layers", "vgg16", "--size", "32"])
    assert result.exit_code == 0
    lines = {name: shape for name, shape, *_ in (line.split("\t") for line in result.output.splitlines())}
    assert lines["block3_pool"] == "(4, 4, 256)" and lines["block5_pool"] == "(1, 1, 512)"
