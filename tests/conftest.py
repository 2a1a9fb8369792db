"""Test data the tests make themselves: official-format CIFAR archives, image trees, Keras weights."""
import io
import os
import pickle
import sys
import tarfile
from pathlib import Path

import cv2
import numpy as np
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
ROOT = Path(__file__).resolve().parents[1]  # the checkout; the code itself is imported as the installed cnncodes
SHARED_TAR = ROOT.parent / "shared" / "data" / "cifar10-jpg.tar"
DEMO_PHOTOS = ROOT / "demo" / "cifar10-sample.zip"  # real CIFAR-10 photos committed for the demo


@pytest.fixture(autouse=True)
def no_user_settings(monkeypatch):
    """A user's own $CNNCODES_DATA or $CNNCODES_STORE must not change what a test sees."""
    monkeypatch.delenv("CNNCODES_DATA", raising=False)
    monkeypatch.delenv("CNNCODES_STORE", raising=False)


@pytest.fixture(scope="session", autouse=True)
def keras_cache(tmp_path_factory):
    """Converted weights go to a cache of the test session's own, never the user's ~/.keras; CLI
    subprocesses inherit it, so each checkpoint is converted once per session."""
    previous = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    yield Path(os.environ["KERAS_HOME"])
    if previous is None:
        os.environ.pop("KERAS_HOME")
    else:
        os.environ["KERAS_HOME"] = previous


def demo_photo(tmp_path: Path, member: str = "cifar10-sample/test/cat/0000.jpg") -> Path:
    """One real photo from the demo sample, as a file."""
    import zipfile

    path = tmp_path / Path(member).name
    path.write_bytes(zipfile.ZipFile(DEMO_PHOTOS).read(member))
    return path


def write_cifar_archive(path: Path, kind: str, per_batch: int = 20, seed: int = 0) -> Path:
    """A tar.gz laid out exactly like the official python-version archive, with random pixels."""
    rng = np.random.default_rng(seed)
    files = {}

    def batch(n, **labels):
        d = {b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}
        d.update({k.encode(): list(map(int, v)) for k, v in labels.items()})
        return d

    if kind == "cifar10":
        top = "cifar-10-batches-py"
        for i in range(1, 6):
            files[f"{top}/data_batch_{i}"] = batch(per_batch, labels=rng.integers(0, 10, per_batch))
        files[f"{top}/test_batch"] = batch(per_batch, labels=rng.integers(0, 10, per_batch))
        files[f"{top}/batches.meta"] = {b"label_names": [f"c{i}".encode() for i in range(10)]}
    else:
        top = "cifar-100-python"
        for split, n in (("train", 5 * per_batch), ("test", per_batch)):
            fine = rng.integers(0, 100, n)
            files[f"{top}/{split}"] = batch(n, fine_labels=fine, coarse_labels=fine // 5)
        files[f"{top}/meta"] = {b"fine_label_names": [f"f{i}".encode() for i in range(100)],
                                b"coarse_label_names": [f"g{i}".encode() for i in range(20)]}
    with tarfile.open(path, "w:gz") as tar:
        for name, obj in files.items():
            data = pickle.dumps(obj, protocol=2)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def write_image(path: Path, img: np.ndarray):
    path.parent.mkdir(parents=True, exist_ok=True)
    ok, data = cv2.imencode(path.suffix, img)
    assert ok
    path.write_bytes(data.tobytes())


def write_mixed_tree(root: Path, classes=("ant", "bee", "cat"), per_class=6, split_folders=True, seed=0):
    """Class folders with JPEG, PNG (RGBA, grey, 16-bit) and BMP files of different sizes.
    Class k's images are bright in channel k, so the data is learnable."""
    rng = np.random.default_rng(seed)
    formats = [(".jpg", 3, np.uint8), (".png", 4, np.uint8), (".bmp", 3, np.uint8), (".png", 1, np.uint8),
               (".png", 3, np.uint16), (".jpeg", 3, np.uint8)]
    for split in (("train", "test") if split_folders else ("",)):
        for k, cls in enumerate(classes):
            for i in range(per_class):
                ext, channels, dtype = formats[i % len(formats)]
                h, w = int(rng.integers(20, 48)), int(rng.integers(20, 48))
                img = rng.integers(0, 60, (h, w, channels)).astype(np.float64)
                img[..., (2 - k) % 3 if channels >= 3 else 0] += 150  # cv2 writes BGR: RGB channel k
                if dtype == np.uint16:
                    img = img * 257
                write_image(root / split / cls / f"{i:03d}{ext}", img.astype(dtype).squeeze())
    (root / "README.txt").write_text("not an image, ignored")
    return root


@pytest.fixture(scope="session")
def resnet_weights(tmp_path_factory) -> Path:
    """A ResNet50 (no top) weights file saved by Keras, as a user's own fine-tuned weights would be."""
    import keras

    keras.utils.set_random_seed(7)
    model = keras.applications.ResNet50(include_top=False, weights=None, input_shape=(32, 32, 3))
    set_trained_batch_norm_statistics(model)
    path = tmp_path_factory.mktemp("weights") / "resnet50_notop.weights.h5"
    model.save_weights(path)
    return path


def set_trained_batch_norm_statistics(model, seed=0):
    """Gives every BatchNorm non-trivial scale, shift and moving statistics, as trained weights have
    (freshly initialised ones are the identity, under which BN folding could not be wrong)."""
    import keras

    rng = np.random.default_rng(seed)
    for layer in model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            for var, values in ((layer.gamma, rng.uniform(0.5, 1.5, n)), (layer.beta, rng.normal(0, 0.2, n)),
                                (layer.moving_mean, rng.normal(0, 0.2, n)),
                                (layer.moving_variance, rng.uniform(0.5, 2.0, n))):
                var.assign(values.astype("float32"))


@pytest.fixture(scope="session")
def digits_store(tmp_path_factory, resnet_weights) -> Path:
    """All 1,797 digits with ResNet50 codes at 32x32 from the saved weights: shared by read-only tests."""
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    store = tmp_path_factory.mktemp("stores") / "digits"
    ingest(store, IngestConfig("digits"), progress=False, log=lambda m: None)
    extract_features(store, FeatureConfig(weights=str(resnet_weights), size=32), name="r50", progress=False,
                     log=lambda m: None)
    return store


@pytest.fixture(scope="session")
def colour_store_32(tmp_path_factory) -> Path:
    """3 classes told apart by colour at 32x32 pixels (write_mixed_tree, 20 a class and split): for airbench,
    which takes 25x25 and more."""
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    root = tmp_path_factory.mktemp("colour32")
    tree = write_mixed_tree(root / "tree", per_class=20)
    return ingest(root / "store", IngestConfig(f"folder:{tree}", image_size=32), progress=False,
                  log=lambda m: None).path


def run_cli(*args, env=None, cwd=None):
    """The CLI as a user runs it, in this process through click's runner (a new interpreter spends 6 to 7 s
    importing TensorFlow before any work): its exit status, standard output and standard error, with the
    traceback in standard error where the command raised one, as the console would show it."""
    import contextlib
    import traceback
    from types import SimpleNamespace

    from click.testing import CliRunner

    from cnncodes.cli import cli
    from cnncodes.pipeline import console

    installed, console._installed = console._installed, True  # its filter would take this process's stderr
    try:
        with contextlib.chdir(cwd or ROOT):
            result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    finally:
        console._installed = installed
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        stderr += "".join(traceback.format_exception(result.exception))
    return SimpleNamespace(returncode=result.exit_code, stdout=result.stdout, stderr=stderr)


def run_process(*args, env=None, **kw):
    """The installed command in a new interpreter: for what only a process shows (its console script, its
    native standard error, what it imports at start)."""
    import subprocess

    return subprocess.run([sys.executable, "-m", "cnncodes", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=kw.pop("cwd", ROOT), **kw)


def kill_midway(args, ready, timeout=120):
    """Starts `cnncodes ARGS`, SIGKILLs it as soon as `ready()` holds (or it ends, or time runs out)."""
    import signal
    import subprocess
    import time

    proc = subprocess.Popen([sys.executable, "-m", "cnncodes", *map(str, args)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + timeout
    while not ready() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
