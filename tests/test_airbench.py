"""The airbench baseline: its pieces do what airbench94's PyTorch script does (whitening, alternating flip and
translate, the six test-time views, the optimizer's steps and lookahead, the schedule), and bad input is one line."""
import numpy as np
import pytest

from cnncodes.classifiers.baselines import airbench
from cnncodes.classifiers.baselines.train import build, train_baseline
from cnncodes.classifiers.training.baseline_config import BaselineConfig
from cnncodes.features.errors import UserError


def smooth_images(n=40, side=32, seed=0):
    """Images whose neighbouring pixels and channels correlate, as photos' do: the whitening has work to do."""
    rng = np.random.default_rng(seed)
    coarse = rng.normal(size=(n, side // 4, side // 4, 1)) + 0.3 * rng.normal(size=(n, side // 4, side // 4, 3))
    fine = np.repeat(np.repeat(coarse, 4, axis=1), 4, axis=2) + 0.2 * rng.normal(size=(n, side, side, 3))
    return np.clip(128 + 40 * fine, 0, 255).astype(np.uint8)


def test_the_whitening_filters_decorrelate_the_patches_they_were_fitted_on():
    import keras

    images = smooth_images()
    built = build(BaselineConfig("airbench"), images.shape[1:], 3)
    airbench.fit_to_data(built.model, images, seed=0)
    whiten = built.model.get_layer("whiten")
    assert not whiten.kernel.trainable and whiten.bias.trainable
    conv = keras.Model(built.model.input, whiten.output)
    out = np.asarray(conv(images, training=True)).reshape(-1, 24)  # training: no test-time views
    np.testing.assert_allclose(out[:, 12:], -out[:, :12], atol=1e-5)  # each filter and its negative
    moment = out[:, :12].T @ out[:, :12] / len(out)  # airbench's covariance is uncentred too
    scale = np.sqrt(np.outer(np.diag(moment), np.diag(moment)))
    assert np.abs(moment / scale - np.eye(12)).max() < 1e-3  # decorrelated
    assert np.diag(moment).max() < 1.0001 and np.diag(moment)[:4].min() > 0.95  # lambda / (lambda + eps)
    standardize = built.model.get_layer("standardize")
    np.testing.assert_allclose(np.asarray(standardize.mean), images.reshape(-1, 3).mean(0) / 255, rtol=1e-5)


def test_each_image_is_flipped_once_at_random_then_mirrored_every_other_epoch_and_moved_up_to_two_pixels():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (200, 8, 8, 3), dtype=np.uint8)
    still = airbench.AlternatingFlipTranslate(images, seed=3, translate=0)
    first, second = still(np.random.default_rng(0), 0), still(np.random.default_rng(0), 1)
    np.testing.assert_array_equal(second, first[:, :, ::-1])  # every image the other way round on odd epochs
    flipped = np.array([not np.array_equal(a, b) for a, b in zip(first, images)])
    np.testing.assert_array_equal(first[flipped], images[flipped][:, :, ::-1])
    assert 70 < flipped.sum() < 130  # about half, drawn once from the seed
    moving = airbench.AlternatingFlipTranslate(images, seed=3)
    epoch = moving(np.random.default_rng(5), 0)
    np.testing.assert_array_equal(epoch, moving(np.random.default_rng(5), 0))  # a resumed epoch sees the same
    padded = np.pad(first, [(0, 0), (2, 2), (2, 2), (0, 0)], mode="reflect")
    shifts = [next((dy, dx) for dy in range(5) for dx in range(5)
                   if np.array_equal(padded[i, dy:dy + 8, dx:dx + 8], epoch[i])) for i in range(len(images))]
    assert len(set(shifts)) == 25  # every move from -2 to 2 in both directions, each a window of the reflected image


def test_the_model_averages_airbench_s_six_test_time_views_in_log_space():
    from cnncodes.classifiers.training.airbench_keras import VIEW_WEIGHTS, AverageViews, TestTimeViews

    x = np.random.default_rng(0).normal(size=(2, 5, 6, 3)).astype(np.float32)
    views = np.asarray(TestTimeViews()(x, training=False))
    padded = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)], mode="reflect")
    up_left, down_right = padded[:, :5, :6], padded[:, 2:, 2:]
    expected = [x, x[:, :, ::-1], up_left, up_left[:, :, ::-1], down_right, down_right[:, :, ::-1]]
    np.testing.assert_allclose(views, np.concatenate(expected), atol=1e-6)
    np.testing.assert_array_equal(np.asarray(TestTimeViews()(x, training=True)), x)
    p = np.random.default_rng(1).dirichlet(np.ones(4), size=12).astype(np.float32)
    logits = np.tensordot(VIEW_WEIGHTS, np.log(p).reshape(6, 2, 4), axes=1)
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(AverageViews()(p, training=False)), expected, rtol=1e-5)


def test_the_schedule_rises_for_23_percent_of_the_steps_then_falls_to_7_percent():
    from cnncodes.classifiers.training.airbench_keras import Triangle

    rate = Triangle(2.0, 100)
    assert [round(float(rate(s)), 5) for s in (0, 23, 100)] == [0.4, 2.0, 0.14]
    assert float(rate(10)) == pytest.approx(2.0 * (0.2 + 0.8 * 10 / 23))


def reference_steps(params, grads, *, rate, momentum, decay, bias_scale, spe, total, frozen_after, names):
    """airbench94's PyTorch loop in numpy: SGD(nesterov) with weight_decay=wd/lr per group, the whitening bias
    frozen after its epochs, LookaheadState every 5 steps, the decay=1.0 update after the last step."""
    from cnncodes.classifiers.training.airbench_keras import Triangle

    schedule = Triangle(rate, total)
    p = [a.astype(np.float64).copy() for a in params]
    buf = [np.zeros_like(a) for a in p]
    ema = [a.copy() for a in p]
    for s in range(total):
        lr = float(schedule(s))
        for i, name in enumerate(names):
            if name == "whiten/bias" and s // spe >= frozen_after:
                continue
            scale = bias_scale if name.endswith("beta") else 1.0
            g = grads[s][i] + decay / (rate * scale) * p[i]
            buf[i] = momentum * buf[i] + g
            p[i] -= lr * scale * (g + momentum * buf[i])
        k = s + 1
        if k % 5 == 0:
            d = 0.95 ** 5 * (k / total) ** 3
            for i in range(len(p)):
                ema[i] += (1 - d) * (p[i] - ema[i])
                p[i] = ema[i].copy()
        if k >= total:
            p = [e.copy() for e in ema]
    return p


def test_the_optimizer_steps_as_airbench_s_pytorch_script_does():
    import keras

    from cnncodes.classifiers.training.airbench_keras import AirbenchSGD, Triangle

    inputs = keras.Input((4,))
    x = keras.layers.Dense(3, name="whiten")(inputs)
    x = keras.layers.BatchNormalization(scale=False)(x)
    model = keras.Model(inputs, keras.layers.Dense(2, use_bias=False)(x))
    variables = model.trainable_variables
    names = [v.path.split("/", 1)[-1] if v.path.startswith("whiten") else v.path for v in variables]
    names = ["whiten/bias" if v.path == "whiten/bias" else ("beta" if v.name == "beta" else v.path) for v in variables]
    rng = np.random.default_rng(0)
    total, spe = 12, 2
    grads = [[rng.normal(size=v.shape) for v in variables] for _ in range(total)]
    start = [np.asarray(v).copy() for v in variables]
    settings = dict(rate=0.3, momentum=0.85, decay=0.02, bias_scale=64.0)
    optimizer = AirbenchSGD(Triangle(0.3, total), momentum=0.85, decay=0.02, bias_scale=64.0, base_rate=0.3,
                            steps_per_epoch=spe, total_steps=total, whiten_bias_epochs=3)
    for step in grads:
        optimizer.apply([g.astype(np.float32) for g in step], variables)
    expected = reference_steps(start, grads, spe=spe, total=total, frozen_after=3, names=names, **settings)
    for v, e in zip(variables, expected):
        np.testing.assert_allclose(np.asarray(v), e, rtol=2e-4, atol=2e-5)
    assert "beta" in names and "whiten/bias" in names


def test_airbench_learns_and_its_saved_model_predicts_what_was_scored(colour_store_32):
    from cnncodes.classifiers.baselines.view_choice import probabilities
    from cnncodes.features.store import FeatureStore

    config = BaselineConfig("airbench", epochs=4, batch_size=16)
    run, record = train_baseline(colour_store_32, config, progress=False, log=lambda m: None)
    assert record["test_accuracy"] > 0.6 and record["epochs"] == 4  # chance is 1/3
    assert record["params"]["label_smoothing"] == 0.2 and record["params"]["weight_decay"] == 0.0153
    store = FeatureStore.open(colour_store_32)
    rebuilt = build(config, store.image_shape, 3)
    rebuilt.model.load_weights(run / "model.weights.h5")  # whitening and standardising come with the weights
    predicted = probabilities(rebuilt.model, store.images()[store.split == 1]).argmax(1)
    assert predicted.tolist() == record["test_predictions"]


@pytest.mark.slow
def test_an_interrupted_airbench_run_resumes_to_the_uninterrupted_result(colour_store_32, tmp_path, monkeypatch):
    """The lookahead averages, the schedule's step and the alternating flip's parity all come back."""
    import shutil

    from cnncodes.classifiers.training.checkpoint import Checkpoint

    store, clean = tmp_path / "store", tmp_path / "clean"
    for copy in (store, clean):
        shutil.copytree(colour_store_32, copy, ignore=shutil.ignore_patterns("runs"))
    config = BaselineConfig("airbench", epochs=5, batch_size=16)
    real = Checkpoint.save

    def save_then_stop(self, model, state, best=None):
        real(self, model, state, best)
        if state["epoch"] == 3:
            raise KeyboardInterrupt

    monkeypatch.setattr(Checkpoint, "save", save_then_stop)
    with pytest.raises(KeyboardInterrupt):
        train_baseline(store, config, progress=False, log=lambda m: None)
    monkeypatch.setattr(Checkpoint, "save", real)
    said = []
    _, resumed = train_baseline(store, config, progress=False, log=said.append)
    assert said and "resuming" in said[0] and "after epoch 3/5" in said[0]
    _, uninterrupted = train_baseline(clean, config, progress=False, log=lambda m: None)
    assert resumed["history"] == uninterrupted["history"]
    assert resumed["test_predictions"] == uninterrupted["test_predictions"]


@pytest.mark.parametrize("config, message", [
    (BaselineConfig("airbench", limit=40, batch_size=64),
     r"^airbench trains on full batches of --batch-size 64, and only 40 training images are left \(--limit, less the "
     r"validation slice\): give --batch-size 40 or less, or more images$"),
    (BaselineConfig("airbench", test_flip=True, patience=2), r"^airbench's model averages six views"),
])
def test_airbench_refuses_what_it_cannot_do_in_one_line(colour_store_32, config, message):
    with pytest.raises(UserError, match=message):
        train_baseline(colour_store_32, config, progress=False, log=lambda m: None)
    assert not list((colour_store_32 / "runs").glob(f"*-{config.run_name('class')}"))  # nothing left behind


def test_a_small_data_set_trains_as_long_in_steps_as_the_recipe_in_smaller_batches():
    assert airbench.budget_settings(50_000) == {"batch_size": 1024, "epochs": 10}  # the recipe itself
    assert airbench.budget_settings(1_000) == {"batch_size": 64, "epochs": 32}  # 15 steps an epoch, 480 in all
    assert airbench.budget_settings(100) == {"batch_size": 16, "epochs": 80}
    assert airbench.budget_settings(10) == {"batch_size": 10, "epochs": 480}  # never a batch larger than the draw
    assert airbench.budget_settings(1_000, batch=250) == {"batch_size": 250, "epochs": 120}  # a given batch kept
    sized = airbench.sized(BaselineConfig("airbench", epochs=3), 1_000)
    assert (sized.batch_size, sized.epochs) == (64, 3)  # a given --epochs kept, the batch by the rule


@pytest.mark.parametrize("native, precision", [(True, "bf16"), (False, "fp32")])
def test_airbench_trains_in_bf16_only_where_the_hardware_has_it(monkeypatch, native, precision):
    monkeypatch.setattr(airbench, "native_bf16", lambda: native)
    assert airbench.sized(BaselineConfig("airbench"), 50_000).precision == precision
    assert airbench.sized(BaselineConfig("airbench", precision="fp32"), 50_000).precision == "fp32"  # as given
    assert BaselineConfig("cnn").precision == "fp32"  # the other kinds as before


@pytest.mark.slow
def test_the_curve_trains_airbench_on_the_heads_draws_and_reuses_the_baseline_s_own_runs(colour_store_32):
    from cnncodes.classifiers.evaluation.label_curve import PIXELS, label_curve, saved_curves
    from cnncodes.features.folds import per_class_draw
    from cnncodes.features.store import FeatureStore

    store = FeatureStore.open(colour_store_32)
    record = label_curve(colour_store_32, "airbench", per_class=(5, None), seeds=(0, 1), params={"epochs": 2},
                         progress=False)
    assert record["features"] == PIXELS and [s["per_class"] for s in record["sizes"]] == [5, None]
    y = store.labels(split="train")
    for point in record["points"]:
        assert point["labelled"] == len(per_class_draw(y, point["per_class"], point["seed"]))
        assert point["chosen"]["epochs"] == 2 and point["chosen"]["batch_size"] == (15 if point["per_class"] else 16)
    said = []  # the curve's full-data point is the run `cnncodes baseline airbench` names for the same settings
    _, full = train_baseline(colour_store_32, BaselineConfig("airbench", epochs=2, batch_size=16, seed=1),
                             progress=False, log=said.append)
    assert said and "was finished before" in said[0]
    assert full["test_accuracy"] == [p for p in record["points"] if p["per_class"] is None and p["seed"] == 1][0][
        "test_accuracy"]
    again = label_curve(colour_store_32, "airbench", per_class=(5, None), seeds=(0, 1), params={"epochs": 2},
                        progress=False)
    assert again["points"] == record["points"]  # every point read back, none trained again
    shown = [c for c in saved_curves(store) if c["head"] == "airbench"]
    assert shown and shown[0]["problem"] is None
    with pytest.raises(UserError, match="^airbench trains on the store's images: drop --features"):
        label_curve(colour_store_32, "airbench", features="x", progress=False)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["jax", "torch"])  # what the GPU machines run: keras.ops only, no TF
def test_airbench_trains_on_the_other_backends_as_on_tensorflow(colour_store_32, tmp_path, backend):
    """JAX's training step is stateless: an optimizer that wrote anything but its own variables and the trained
    weights would lose it there. The same run learns on each backend."""
    import json
    import shutil

    from conftest import run_process

    pytest.importorskip(backend, reason=f"the {backend} backend is not installed (make test installs it)")
    store = tmp_path / "store"
    shutil.copytree(colour_store_32, store, ignore=shutil.ignore_patterns("runs"))
    r = run_process("baseline", "airbench", "--store", store, "--epochs", 3, "--batch-size", 16, "--quiet",
                    env={"KERAS_BACKEND": backend})
    assert r.returncode == 0, r.stderr
    (record,) = [json.loads(p.read_text()) for p in (store / "runs").glob("*-baseline-airbench-*/record.json")]
    assert record["test_accuracy"] > 0.6 and record["epochs"] == 3  # chance is 1/3


def test_under_bf16_the_inputs_whitening_and_outputs_stay_float32_and_the_middle_computes_in_bf16():
    import keras

    from cnncodes.pipeline.backbones import dtype_policy

    with dtype_policy("bf16"):
        model = airbench.airbench_net((32, 32, 3), 10, widths=(8, 8, 8)).model
    compute = {layer.name: layer.compute_dtype for layer in model.layers}
    assert compute["standardize"] == compute["whiten"] == compute["average_views"] == "float32"
    assert {layer.compute_dtype for layer in model.layers if isinstance(layer, keras.layers.Conv2D)
            and layer.name != "whiten"} == {"bfloat16"}
    whitened = keras.Model(model.input, model.get_layer("whiten").output)
    images = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    assert keras.ops.convert_to_numpy(whitened(images)).dtype == np.float32
    for training in (False, True):  # what the loss reads, and what the test views average
        assert keras.ops.convert_to_numpy(model(images, training=training)).dtype == np.float32
