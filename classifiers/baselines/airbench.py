"""`cnncodes baseline airbench`: a small network trained from scratch at the images' own side with the fastest
published CIFAR-10 recipe, airbench94 (Keller Jordan, github.com/KellerJordan/cifar10-airbench,
legacy/airbench94.py: 94.01% mean over 1,000 runs in 9.9 epochs, 0.36 PFLOPs). Its settings are the script's,
fixed here, never tuned on our test split:

- a 2x2 convolution whose 24 filters whiten 2x2 patches of the training images (their covariance's
  eigenvectors, scaled by 1/sqrt(eigenvalue + 5e-4), and their negatives; the filters frozen, the bias
  trained for 3 epochs), GELU, then three groups of conv-pool-BatchNorm-GELU-conv-BatchNorm-GELU (64, 256,
  256 channels; BatchNorm momentum 0.6, shifts only), a 3x3 max-pool, a linear layer without bias, x 1/9;
  convolutions start as PyTorch's with the identity in their first filters;
- SGD with Nesterov momentum 0.85, batches of 1024, rate 11.5 and weight decay 0.0153 per 1024 images in
  airbench's decoupled form (the BatchNorm shifts at 64 times the rate), a triangular schedule (23% up from
  0.2, then down to 0.07), label smoothing 0.2, lookahead every 5 steps;
- each training image flipped at random once, then the whole set mirrored every other epoch (alternating
  flip), and moved by up to 2 pixels each epoch (reflected at the border);
- at test time six views averaged (the image, its mirror, and both moved one pixel), inside the model, so
  `predict` and `export-model` give what the test figure measured.

Differences from the script: 10 whole epochs (not 9.9: a run's epochs are whole here, so 480 steps instead of
476, the schedule stretched over them; on fewer images than CIFAR-10's, smaller batches and more epochs:
budget_settings) and BatchNorm's running statistics outside the lookahead (airbench_keras.AirbenchSGD says why);
bfloat16 where it is native, else float32 (or --precision), where the script trains in float16 on a GPU (its
input, whitening and output layers in float32 either way).

keras is imported inside the builder: importing this module never loads the backend."""
from dataclasses import replace

import numpy as np

from cnncodes.features.errors import UserError
from cnncodes.pipeline.extraction.device import native_bf16

from .networks import Built

# airbench94's hyperparameters (its `hyp`), in its own units
RECIPE = {"epochs": 10, "batch_size": 1024, "learning_rate": 11.5, "momentum": 0.85, "weight_decay": 0.0153,
          "bias_scale": 64.0, "label_smoothing": 0.2, "whiten_bias_epochs": 3, "widths": (64, 256, 256),
          "batchnorm_momentum": 0.6, "scale": 1 / 9, "translate": 2, "whiten_eps": 5e-4, "whiten_images": 5000}
WHITEN_KERNEL = 2
MIN_SIDE = 25  # the whitening conv (side - 1) and three 2x2 pools must leave 3 for the last 3x3 pool


def airbench_net(image_shape, n_classes: int, widths=RECIPE["widths"]):
    """uint8 images -> standardised -> the test-time views (at inference) -> whitening conv, GELU -> three
    conv groups -> max-pool -> linear x 1/9 -> softmax -> the views averaged (at inference)."""
    import keras
    from keras import layers

    from cnncodes.classifiers.training.airbench_keras import (
        AverageViews,
        DiracUniform,
        Standardize,
        TestTimeViews,
    )

    def gelu(x, dtype=None):
        return layers.Activation("gelu", dtype=dtype)(x)  # exact (erf), as PyTorch's nn.GELU

    def batchnorm(x):
        return layers.BatchNormalization(momentum=RECIPE["batchnorm_momentum"], epsilon=1e-12, scale=False)(x)

    check_side(image_shape)
    inputs = keras.Input(image_shape, dtype="uint8")
    # Under mixed bfloat16 (8 significant bits) the ends stay in float32, as Keras's mixed-precision guide
    # advises: the inputs and the whitening filters (up to |16| on the faint directions, whose channels bf16
    # would blur by 10-25%), and the logits, probabilities and views' average the loss and the test read.
    # They cost a few percent of the network's multiply-adds.
    x = Standardize(image_shape[-1], name="standardize", dtype="float32")(inputs)
    x = TestTimeViews(name="test_time_views", dtype="float32")(x)
    channels = 2 * image_shape[-1] * WHITEN_KERNEL ** 2
    x = gelu(layers.Conv2D(channels, WHITEN_KERNEL, padding="valid", kernel_initializer=DiracUniform(),
                           name="whiten", dtype="float32")(x), dtype="float32")
    for width in widths:
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=DiracUniform())(x)
        x = gelu(batchnorm(layers.MaxPooling2D(2)(x)))
        x = layers.Conv2D(width, 3, padding="same", use_bias=False, kernel_initializer=DiracUniform())(x)
        x = gelu(batchnorm(x))
    x = layers.Flatten()(layers.MaxPooling2D(3)(x))
    torch_linear = keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")  # uniform within 1/sqrt(fan in)
    x = layers.Dense(n_classes, use_bias=False, kernel_initializer=torch_linear, dtype="float32")(x)
    x = layers.Rescaling(RECIPE["scale"], dtype="float32")(x)
    outputs = AverageViews(name="average_views", dtype="float32")(layers.Activation("softmax", dtype="float32")(x))
    model = keras.Model(inputs, outputs, name="airbench")
    model.get_layer("whiten").kernel.trainable = False  # set from the data (fit_to_data), never trained
    return Built(model)


def check_side(image_shape):
    side = min(image_shape[:2])
    if side < MIN_SIDE:
        raise UserError(f"airbench takes images of {MIN_SIDE}x{MIN_SIDE} pixels or more (its whitening conv and "
                        f"four poolings), and the store's are {image_shape[0]}x{image_shape[1]}: use the cnn "
                        f"baseline, or ingest them larger (--image-size 32)")


def fit_to_data(model, images: np.ndarray, seed: int):
    """What airbench computes from the training images before the first step: the per-channel mean and
    spread, and the whitening filters from the 2x2 patches of (a seeded draw of) 5,000 of them. The whitening
    filters are frozen; their bias trains (AirbenchSGD stops it after its epochs)."""
    rows = np.random.default_rng([seed, 7]).permutation(len(images))[:RECIPE["whiten_images"]]
    sample = images[np.sort(rows)].astype(np.float32) / 255.0
    mean = images.reshape(-1, images.shape[-1]).mean(0, dtype=np.float64) / 255.0
    std = np.sqrt((images.reshape(-1, images.shape[-1]).astype(np.float64) ** 2).mean(0) / 255.0 ** 2 - mean ** 2)
    standardize = model.get_layer("standardize")
    standardize.mean.assign(mean.astype(np.float32))
    standardize.std.assign(np.maximum(std, 1e-3).astype(np.float32))
    x = (sample - mean.astype(np.float32)) / np.maximum(std, 1e-3).astype(np.float32)
    k = WHITEN_KERNEL
    h, w, c = x.shape[1:]
    # every 2x2 patch, flattened in the kernel's (row, column, channel) order
    patches = np.stack([x[:, i:h - k + 1 + i, j:w - k + 1 + j] for i in range(k) for j in range(k)], axis=3)
    patches = patches.reshape(-1, k * k * c).astype(np.float64)
    covariance = patches.T @ patches / len(patches)
    eigenvalues, eigenvectors = np.linalg.eigh(covariance)
    filters = eigenvectors[:, ::-1] / np.sqrt(eigenvalues[::-1] + RECIPE["whiten_eps"])  # largest first
    kernel = np.concatenate([filters, -filters], axis=1).reshape(k, k, c, 2 * k * k * c)
    whiten = model.get_layer("whiten")
    whiten.kernel.assign(kernel.astype(np.float32))
    whiten.bias.assign(np.zeros(whiten.bias.shape, np.float32))


class AlternatingFlipTranslate:
    """airbench's training inputs for each epoch (SeededBatches's `inputs_for_epoch`): every image flipped at
    random once (from the run's seed), the whole set mirrored on odd epochs (alternating flip: each image is
    seen both ways in turn), and each image moved by up to `translate` pixels each epoch (reflected at the
    border), drawn from the epoch's generator, so a resumed epoch sees what it saw."""

    def __init__(self, images: np.ndarray, seed: int, translate: int = RECIPE["translate"]):
        flip = np.random.default_rng([seed, 11]).random(len(images)) < 0.5
        flipped = np.where(flip[:, None, None, None], images[:, :, ::-1], images)
        r = self.r = translate
        self.padded = np.pad(flipped, [(0, 0), (r, r), (r, r), (0, 0)], mode="reflect")
        self.shape = images.shape

    def __call__(self, rng, epoch: int) -> np.ndarray:
        r, (n, h, w, _) = self.r, self.shape
        shifts = rng.integers(-r, r + 1, size=(n, 2))
        out = np.empty(self.shape, self.padded.dtype)
        for sy in range(-r, r + 1):
            for sx in range(-r, r + 1):
                rows = np.flatnonzero((shifts[:, 0] == sy) & (shifts[:, 1] == sx))
                out[rows] = self.padded[rows, r + sy:r + sy + h, r + sx:r + sx + w]
        return out[:, :, ::-1] if epoch % 2 else out


def airbench_optimizer(config, steps_per_epoch: int):
    """AirbenchSGD with airbench's rate and decay turned from its decoupled units (per 1024 images, the
    step's size independent of the momentum) into a rate for the mean loss over a batch of config.batch_size."""
    from cnncodes.classifiers.training.airbench_keras import AirbenchSGD, Triangle

    momentum = RECIPE["momentum"]
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    rate = config.final_learning_rate * config.batch_size / kilostep
    decay = config.weight_decay * config.batch_size / kilostep  # the shrink per step, at the full rate
    total = steps_per_epoch * config.total_epochs
    return AirbenchSGD(Triangle(rate, total), momentum=momentum, decay=decay, bias_scale=RECIPE["bias_scale"],
                       base_rate=rate, steps_per_epoch=steps_per_epoch, total_steps=total,
                       whiten_bias_epochs=RECIPE["whiten_bias_epochs"])


RECIPE_STEPS = 480  # the recipe's ten epochs of CIFAR-10's 50,000 training images in full batches of 1024


def budget_settings(rows: int, batch: int | None = None) -> dict:
    """airbench on `rows` training images: batches of 1024, or for fewer images the largest power of two up to
    an eighth of them (at least 16, at most all of them), so an epoch has several steps; and as many epochs as
    make the recipe's 480 steps (10 at least), so a small data set trains as long in steps as the full recipe.
    On CIFAR-10's 50,000 that is the recipe itself. Fixed before any run, by that rule, never chosen on a test
    split. A given `batch` keeps its size; the epochs follow it."""
    batch = batch or min(RECIPE["batch_size"], max(16, 2 ** int(np.floor(np.log2(max(rows / 8, 1))))), max(rows, 1))
    steps = max(rows // batch, 1)
    return {"batch_size": batch, "epochs": max(RECIPE["epochs"], -(-RECIPE_STEPS // steps))}


def sized(config, rows: int):
    """The config with what it leaves to the rules (None) set: the batch size and epochs by budget_settings, the
    precision bf16 where it is native (bench/train_precision.py --kind airbench: 1.47x fp32's training speed on
    the AVX-512 bf16 CPU here; emulated bf16 on an AVX2 CPU is several times slower than fp32, issue 39)."""
    budget = budget_settings(rows, config.batch_size)
    precision = config.precision or ("bf16" if native_bf16() else "fp32")
    return replace(config, batch_size=budget["batch_size"], epochs=config.epochs or budget["epochs"],
                   precision=precision)


def check_batches(config, rows: int):
    """airbench drops the last partial batch (BatchNorm on a handful of images is noise): at least one full
    batch must fit in the training rows."""
    if rows < config.batch_size:
        raise UserError(f"airbench trains on full batches of --batch-size {config.batch_size}, and only {rows} "
                        f"training images are left (--limit, less the validation slice): give --batch-size {rows} "
                        f"or less, or more images")
