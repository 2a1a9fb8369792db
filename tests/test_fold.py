"""BatchNorm folding: the folded model computes what the model with its BatchNorms computes."""
import numpy as np
import pytest

from cnncodes.pipeline.extraction.fold import fold_batch_norms
from conftest import set_trained_batch_norm_statistics


def relative_error(a, b):
    return np.linalg.norm(a - b) / np.linalg.norm(b)


@pytest.mark.parametrize("application", ["ResNet50", "MobileNetV2"])  # plain convs with bias; depthwise without
def test_folded_model_equals_the_model_with_batch_norms(application):
    import keras

    model = getattr(keras.applications, application)(include_top=False, weights=None, input_shape=(32, 32, 3))
    set_trained_batch_norm_statistics(model)
    folded = fold_batch_norms(model)
    kinds = lambda m: [type(l).__name__ for l in m.layers]
    # the original keeps its own BatchNorms; the copy has none
    assert "BatchNormalization" in kinds(model) and "BatchNormalization" not in kinds(folded)
    x = np.random.default_rng(1).normal(0, 1, (4, 32, 32, 3)).astype("float32")
    assert relative_error(folded.predict_on_batch(x), model.predict_on_batch(x)) < 1e-5


def test_folded_efficientnet_lite_equals_it_with_depthwise_batch_norms_folded_too():
    """The published ImageNet weights: trained BatchNorm statistics after every conv and depthwise conv."""
    from keras import layers

    from cnncodes.pipeline.backbones import build_backbone

    model = build_backbone("efficientnet_lite0", "imagenet", 64)
    folded = fold_batch_norms(model)
    depthwise = [l for l in folded.layers if isinstance(l, layers.DepthwiseConv2D)]
    assert len(depthwise) == 16 and all(l.use_bias for l in depthwise)
    assert not any(isinstance(l, layers.BatchNormalization) for l in folded.layers)
    x = np.random.default_rng(3).uniform(-1, 1, (4, 64, 64, 3)).astype("float32")
    assert relative_error(folded.predict_on_batch(x), model.predict_on_batch(x)) < 1e-5


def test_cut_between_a_conv_and_its_batch_norm_keeps_the_conv_output():
    import keras

    from cnncodes.pipeline.backbones import build_backbone

    x = np.random.default_rng(2).normal(0, 50, (2, 32, 32, 3)).astype("float32")
    for layer in ("conv2_block1_1_conv", "conv2_block1_1_bn"):
        cut = build_backbone("resnet50", "none", 32, layer)
        set_trained_batch_norm_statistics(cut)
        folded = fold_batch_norms(cut)
        assert folded.output.shape == cut.output.shape
        assert relative_error(folded.predict_on_batch(x), cut.predict_on_batch(x)) < 1e-5
        keras.backend.clear_session()
