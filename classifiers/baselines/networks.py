"""Image baselines that must see pixels: the reference's basic CNN, a fine-tuned ImageNet backbone,
and a Wide ResNet from scratch. Each takes the store's uint8 images; augmentation layers are part of
the model, so they run on the device and only while training.

keras is imported inside the builders: importing this module (train.py and kfold do) never loads the backend."""
from dataclasses import dataclass

from cnncodes.features.errors import UserError
from cnncodes.pipeline.backbones import build_backbone, get_backbone, make_preprocess_layer


@dataclass
class Built:
    model: object                  # the Keras model, uint8 images in, class probabilities out
    backbone: object = None        # finetune only: the pretrained part, for freezing


# Each block's unpadded 3x3 convolution and 2x2 pooling shrink a side 10 -> 8 -> 4 -> 2 -> 1
BASIC_CNN_MIN_SIDE = 10


def basic_cnn_upsampled_side(image_shape) -> int | None:
    """The side the basic CNN upsamples images to when they are too small for it, else None."""
    return BASIC_CNN_MIN_SIDE if min(image_shape[:2]) < BASIC_CNN_MIN_SIDE else None


def basic_cnn(image_shape, n_classes):
    """Two conv-conv-pool-dropout blocks of 32 and 64 filters, Dense 512, dropout, softmax;
    shift and flip augmentation (keras's classic cifar10_cnn example, which the reference used).
    Images under 10x10 (8x8 digits) are upsampled to 10x10 on the device, or they would pool to nothing."""
    import keras
    from keras import layers

    from cnncodes.pipeline.layers import make_resize_layer

    inputs = keras.Input(image_shape, dtype="uint8")
    x = inputs
    if side := basic_cnn_upsampled_side(image_shape):
        x = make_resize_layer(image_shape[:2], side)(x)  # bicubic, as extraction resizes
    x = layers.Rescaling(1 / 255)(x)
    x = layers.RandomTranslation(0.1, 0.1, fill_mode="nearest")(x)
    x = layers.RandomFlip("horizontal")(x)
    for filters in (32, 64):
        x = layers.Conv2D(filters, 3, padding="same", activation="relu")(x)
        x = layers.Conv2D(filters, 3, activation="relu")(x)
        x = layers.MaxPooling2D()(x)
        x = layers.Dropout(0.25)(x)
    x = layers.Flatten()(x)
    x = layers.Dense(512, activation="relu")(x)
    x = layers.Dropout(0.5)(x)
    return Built(keras.Model(inputs, layers.Dense(n_classes, activation="softmax", dtype="float32")(x), name="cnn"))


def finetune_model(image_shape, n_classes, backbone="resnet50", weights="imagenet", size=224, seed=0,
                   train_batchnorm=False, crop_area=1.0, precision="fp32"):
    """uint8 -> random flip (or, with `crop_area` below 1, after the resize a random-resized crop of that
    much of the area at least, and flip) -> device resize -> backbone preprocessing -> backbone (BatchNorm in
    inference mode, unless `train_batchnorm`: then a trainable BatchNorm normalises by batch statistics while
    training) -> global average pooling -> Dense(1024) -> softmax. Augmentation runs only while training.
    `precision` is the backbone's (build_backbone sets its own policy); the layers around it follow the caller's."""
    import keras
    from keras import layers

    from cnncodes.pipeline.layers import RandomResizedCrop, make_resize_layer

    base = build_backbone(backbone, weights, size, seed=seed, precision=precision)
    inputs = keras.Input(image_shape, dtype="uint8")
    if crop_area < 1:
        x = make_resize_layer(image_shape[:2], size)(inputs)
        x = RandomResizedCrop(crop_area, name="random_resized_crop")(x)  # at the network's size: finer crops
    else:
        x = layers.RandomFlip("horizontal")(inputs)
        x = make_resize_layer(image_shape[:2], size)(x)
    x = make_preprocess_layer(get_backbone(backbone).preprocessing)(x)
    # frozen BatchNorm statistics even once layers are unfrozen; trained ones follow the model's training flag
    x = base(x) if train_batchnorm else base(x, training=False)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(1024, activation="relu")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32")(x)
    return Built(keras.Model(inputs, outputs, name="finetune"), base)


UNFREEZE_ALL = "all"  # --unfreeze-from all: every layer of the backbone


def set_phase(built: Built, phase: int, unfreeze_from: str | None, backbone: str = "resnet50",
              train_batchnorm: bool = False) -> list[str]:
    """Phase 1: the backbone frozen. Phase 2: layers from `unfreeze_from` (default: the last stage; "all":
    every layer) on are trainable, BatchNorm layers excepted unless `train_batchnorm`. Returns the backbone
    layers left trainable."""
    import keras

    base = built.backbone
    base.trainable = phase == 2
    if phase == 1:
        return []
    start = unfreeze_from or get_backbone(backbone).last_stage
    names = [l.name for l in base.layers]
    if start != UNFREEZE_ALL and start not in names:
        raise UserError(f"{backbone} has no layer {start!r} to unfreeze from (`cnncodes layers {backbone}` lists "
                        f"them), or give all")
    cut = 0 if start == UNFREEZE_ALL else names.index(start)
    for i, layer in enumerate(base.layers):
        layer.trainable = i >= cut and (train_batchnorm or not isinstance(layer, keras.layers.BatchNormalization))
    return [l.name for l in base.layers if l.trainable and l.weights]


def wide_resnet(image_shape, n_classes, depth=28, width=10, dropout=0.0, weight_decay=5e-4):
    """WRN-depth-width (Zagoruyko & Komodakis 2016): pre-activation basic blocks, widths 16k/32k/64k,
    flip and pad-and-crop augmentation."""
    import keras
    from keras import layers, regularizers

    if (depth - 4) % 6:
        raise ValueError(f"WRN depth must be 6n+4 (e.g. 16, 22, 28, 40), not {depth}")
    n = (depth - 4) // 6
    reg = regularizers.L2(weight_decay / 2)  # the paper's weight decay as an L2 penalty on the loss

    def conv(filters, kernel, stride=1):
        return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                             kernel_initializer="he_normal", kernel_regularizer=reg)

    inputs = keras.Input(image_shape, dtype="uint8")
    x = layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = layers.RandomFlip("horizontal")(x)
    x = layers.ZeroPadding2D(4)(x)
    x = layers.RandomCrop(image_shape[0], image_shape[1])(x)  # at inference: the centre, i.e. the image
    x = conv(16, 3)(x)
    for group, filters in enumerate((16 * width, 32 * width, 64 * width)):
        for block in range(n):
            stride = 2 if group > 0 and block == 0 else 1
            pre = layers.ReLU()(layers.BatchNormalization()(x))
            shortcut = x if x.shape[-1] == filters and stride == 1 else conv(filters, 1, stride)(pre)
            y = conv(filters, 3, stride)(pre)
            y = layers.ReLU()(layers.BatchNormalization()(y))
            if dropout:
                y = layers.Dropout(dropout)(y)
            x = layers.Add()([shortcut, conv(filters, 3)(y)])
    x = layers.ReLU()(layers.BatchNormalization()(x))
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", kernel_regularizer=reg)(x)
    return Built(keras.Model(inputs, outputs, name=f"wrn_{depth}_{width}"))
