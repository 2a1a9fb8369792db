"""Folds each frozen BatchNormalization into the convolution before it, for inference.

A frozen BN is an affine map per channel, so conv -> BN equals one conv with a rescaled kernel and a
shifted bias. Dropping the BNs removes ResNet50's 53 elementwise passes over its feature maps (and,
under mixed precision, their casts to float32 and back), which lets the backend fuse conv + bias + ReLU:
on the 2-core CPU the bare forward at 224 gains about 1.2x in float32 and 1.5x in bfloat16
(bench/HISTORY.md). Float32 codes move by about 1e-7 relative.
"""
import numpy as np

CHANNEL_AXES = (-1, 3, [-1], [3], (-1,), (3,))


def foldable_pairs(model) -> dict:
    """BN layer name -> the name of the Conv2D/DepthwiseConv2D whose only consumer it is."""
    from keras import layers

    outputs = {id(t) for t in model.outputs}
    pairs = {}
    for bn in model.layers:
        if not isinstance(bn, layers.BatchNormalization) or bn.axis not in CHANNEL_AXES:
            continue
        conv = bn.input._keras_history.operation
        if (isinstance(conv, (layers.Conv2D, layers.DepthwiseConv2D)) and len(conv._outbound_nodes) == 1
                and id(conv.output) not in outputs):
            pairs[bn.name] = conv.name
    return pairs


def folded_weights(conv, bn) -> list:
    """[kernel, bias] of the one convolution that computes bn(conv(x)) in inference mode."""
    from keras import layers

    gamma = np.asarray(bn.gamma) if bn.scale else 1.0
    beta = np.asarray(bn.beta) if bn.center else 0.0
    scale = gamma / np.sqrt(np.asarray(bn.moving_variance) + bn.epsilon)
    kernel = np.asarray(conv.kernel)
    if isinstance(conv, layers.DepthwiseConv2D):  # output channel c = input channel * multiplier + m
        kernel = kernel * scale.reshape(1, 1, -1, conv.depth_multiplier)
    else:
        kernel = kernel * scale
    bias = np.asarray(conv.bias) if conv.use_bias else 0.0
    return [kernel, (bias - np.asarray(bn.moving_mean)) * scale + beta]


def fold_batch_norms(model):
    """A copy of the functional `model` with every foldable conv -> BN pair as one conv.

    Other layers are shared with `model`, not copied; each folded BN becomes a pass-through layer of
    the same name, so a cut at its name (`--layer conv1_bn`) still gives what it gave.
    """
    import keras

    from cnncodes.pipeline.layers import FoldedBatchNorm

    pairs = foldable_pairs(model)
    by_conv = {conv: bn for bn, conv in pairs.items()}

    def clone(layer):
        if layer.name in pairs:
            return FoldedBatchNorm(name=layer.name, dtype=layer.dtype_policy)
        if layer.name in by_conv:
            config = dict(layer.get_config(), use_bias=True)
            conv = layer.__class__.from_config(config)
            conv.build(layer.input.shape)
            conv.set_weights(folded_weights(layer, model.get_layer(by_conv[layer.name])))
            conv.trainable = False
            return conv
        return layer

    if not pairs:
        return model
    folded = keras.models.clone_model(model, clone_function=clone)
    folded.trainable = False
    return folded
