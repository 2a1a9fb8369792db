"""The Keras pieces of the airbench baseline (baselines/airbench.py): its layers, initializer, learning-rate
schedule and optimizer, ported from airbench94 (Keller Jordan, github.com/KellerJordan/cifar10-airbench,
legacy/airbench94.py; "94% on CIFAR-10 in 3.29 seconds on a single GPU", 2024) with keras.ops only, so that
they run on every Keras backend. It imports the backend at its top: only the code that trains imports it."""
import keras
import numpy as np
from keras import ops


class Standardize(keras.layers.Layer):
    """uint8 pixels -> (x / 255 - mean) / std per channel, the statistics of the training images (set by
    airbench.fit_to_data; stored with the weights, so a saved model standardises as it trained)."""

    def __init__(self, channels: int, **kwargs):
        super().__init__(**kwargs)
        self.mean_initializer, self.std_initializer = keras.initializers.Zeros(), keras.initializers.Ones()
        self.mean = self.add_weight(shape=(channels,), initializer=self.mean_initializer, trainable=False, name="mean")
        self.std = self.add_weight(shape=(channels,), initializer=self.std_initializer, trainable=False, name="std")

    def call(self, x):
        return (ops.cast(x, self.compute_dtype) / 255.0 - ops.cast(self.mean, self.compute_dtype)) / ops.cast(
            self.std, self.compute_dtype)


# airbench94's test-time views (tta_level 2): the image and its mirror, and both moved one pixel up-left and
# down-right (reflected at the border); weights 1/4, 1/4 and 1/8 each for the four moved ones
VIEW_WEIGHTS = (0.25, 0.25, 0.125, 0.125, 0.125, 0.125)


class TestTimeViews(keras.layers.Layer):
    """At inference the batch becomes six views of it, stacked (AverageViews averages their outputs back);
    while training it passes the images through."""

    def call(self, x, training=None):
        if training:
            return x
        mirror = ops.flip(x, axis=2)
        padded = ops.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        h, w = x.shape[1], x.shape[2]
        up_left, down_right = padded[:, :h, :w], padded[:, 2:, 2:]
        return ops.concatenate([x, mirror, up_left, ops.flip(up_left, axis=2), down_right,
                                ops.flip(down_right, axis=2)], axis=0)

    def compute_output_shape(self, input_shape):  # stated, not traced: JAX cannot trace an unknown batch's views
        batch = input_shape[0]
        return (None if batch is None else len(VIEW_WEIGHTS) * batch, *input_shape[1:])


class AverageViews(keras.layers.Layer):
    """At inference, the class probabilities of TestTimeViews's six views averaged in log space (as airbench
    averages logits: the same ranking, and softmax of the mean log-probability is the softmax of the mean
    logit); while training, the probabilities as they are."""

    def call(self, p, training=None):
        if training:
            return p
        logp = ops.log(ops.maximum(ops.cast(p, "float32"), 1e-30))
        logp = ops.reshape(logp, (len(VIEW_WEIGHTS), -1, p.shape[-1]))
        mean = ops.sum(logp * ops.reshape(ops.convert_to_tensor(VIEW_WEIGHTS, "float32"), (-1, 1, 1)), axis=0)
        return ops.softmax(mean, axis=-1)

    def compute_output_shape(self, input_shape):
        batch = input_shape[0]
        return (None if batch is None else batch // len(VIEW_WEIGHTS), *input_shape[1:])


class DiracUniform(keras.initializers.Initializer):
    """PyTorch's default convolution initialisation (uniform within 1/sqrt(fan in)) with the first `in`
    filters replaced by the identity (torch.nn.init.dirac_), as airbench94's convolutions start."""

    def __init__(self, seed=None):
        self.seed = seed

    def __call__(self, shape, dtype=None):
        kh, kw, cin, cout = shape
        bound = 1.0 / np.sqrt(kh * kw * cin)
        w = np.random.default_rng(self.seed).uniform(-bound, bound, shape)
        n = min(cin, cout)
        w[..., :n] = 0.0
        w[kh // 2, kw // 2, np.arange(n), np.arange(n)] = 1.0
        return ops.convert_to_tensor(w, dtype=dtype or "float32")

    def get_config(self):
        return {"seed": self.seed}


class Triangle(keras.optimizers.schedules.LearningRateSchedule):
    """airbench94's rate by optimizer step: from 0.2 x `rate` up to `rate` over the first 23% of `total`
    steps, then linearly down to 0.07 x `rate` at the last step."""

    def __init__(self, rate: float, total: int):
        self.rate, self.total = float(rate), int(total)

    def __call__(self, step):
        step = ops.cast(step, "float32")
        warmup = float(max(int(self.total * 0.23), 1))
        up = 0.2 + 0.8 * step / warmup
        down = 1.0 - 0.93 * (step - warmup) / max(self.total - warmup, 1.0)
        return self.rate * ops.where(step < warmup, up, down)

    def get_config(self):
        return {"rate": self.rate, "total": self.total}


class AirbenchSGD(keras.optimizers.Optimizer):
    """airbench94's optimizer, as its PyTorch script runs it: SGD with Nesterov momentum (PyTorch's form: the
    buffer sums gradients, the step is scaled by the rate), weight decay added to the gradient, the BatchNorm
    shifts (`beta`) at `bias_scale` times the rate with the same decay per step, the whitening bias trained for
    its first `whiten_bias_epochs` epochs only, and lookahead: every 5 steps each trained weight is pulled to an
    average that follows it ever more slowly (decay 0.95^5 x (step/total)^3), the weight set to that average,
    and at the last step the weights become the averages. The averages are the optimizer's variables, so a
    checkpoint keeps them. One difference from airbench94: BatchNorm's running statistics are not averaged
    (airbench's lookahead pulls them too); an optimizer can update only the trained weights on every backend
    (JAX's stateless step drops other writes), and with BatchNorm momentum 0.6 they follow the weights within
    a few steps anyway."""

    def __init__(self, learning_rate, momentum: float, decay: float, bias_scale: float, base_rate: float,
                 steps_per_epoch: int, total_steps: int, whiten_bias_epochs: int, name="airbench_sgd", **kwargs):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.momentum, self.decay, self.bias_scale, self.base_rate = momentum, decay, bias_scale, base_rate
        self.steps_per_epoch, self.total_steps, self.whiten_bias_epochs = steps_per_epoch, total_steps, \
            whiten_bias_epochs

    def build(self, variables):
        if self.built:
            return
        super().build(variables)
        self.momentums = self.add_optimizer_variables(variables, "momentum")
        # by the variable's index: the backend's update step may hand over its own variable, without Keras's names
        self.scales = [self.bias_scale if v.name == "beta" else 1.0 for v in variables]
        self.whiten_bias = [v.path.endswith("whiten/bias") for v in variables]
        self.averages = self.add_optimizer_variables(variables, "lookahead")
        for average, v in zip(self.averages, variables):
            average.assign(ops.copy(v))  # the average starts at the initial weights (its own buffer: JAX donates)

    def update_step(self, gradient, variable, learning_rate):
        dtype, index = variable.dtype, self._get_variable_index(variable)
        scale = self.scales[index]
        rate = ops.cast(learning_rate, dtype) * scale
        g = ops.cast(gradient, dtype) + (self.decay / (self.base_rate * scale)) * variable
        m = self.momentums[index]
        self.assign(m, self.momentum * m + g)
        step = rate * (g + self.momentum * m)
        if self.whiten_bias[index]:  # frozen after its epochs, as airbench sets requires_grad
            epoch = ops.cast(self.iterations, "float32") / float(self.steps_per_epoch)
            step = step * ops.cast(epoch < self.whiten_bias_epochs, dtype)
        self.assign_sub(variable, step)

    def apply(self, grads, trainable_variables=None):
        result = super().apply(grads, trainable_variables)
        self.look_ahead()
        return result

    def look_ahead(self):
        """airbench's LookaheadState.update after the optimizer's step: every 5th step pulls the averages
        towards the weights and sets the weights to them; after the last step the weights are the averages."""
        step = ops.cast(self.iterations, "float32")  # steps done, this one included
        due = ops.cast(ops.equal(step % 5.0, 0.0), "float32")
        done = ops.cast(step >= self.total_steps, "float32")
        decay = 0.95 ** 5 * (ops.minimum(step, self.total_steps) / self.total_steps) ** 3
        for average, v in zip(self.averages, self._trainable_variables):
            pulled = average + due * (1.0 - decay) * (v - average)
            self.assign(average, pulled)
            self.assign(v, v + ops.maximum(due, done) * (pulled - v))

    def get_config(self):
        return {**super().get_config(), "momentum": self.momentum, "decay": self.decay,
                "bias_scale": self.bias_scale, "base_rate": self.base_rate, "steps_per_epoch": self.steps_per_epoch,
                "total_steps": self.total_steps, "whiten_bias_epochs": self.whiten_bias_epochs}
