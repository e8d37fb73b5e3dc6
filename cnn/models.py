"""The zoo's Keras builders: the report's six CNNs, our fast network and its wider `best` variant.

Every builder returns a Functional `keras.Model` (`keras.Input` first, so
feature-map sub-models work); the registry `cnn.zoo.ZOO` names them with each
model's description and recipe. The report's six models are specs
(`cnn.spec.REPORT_SPECS`, the data the Build page edits); `fast` and `best` are Python.
No Lambda layers: the few custom layers are registered serializable classes,
so models load with `safe_mode=True`.
"""

from __future__ import annotations

from functools import partial
from typing import Callable

import keras
import numpy as np
from keras import layers

from cnn import INPUT_SHAPE, NUM_CLASSES
from cnn.spec import REPORT_SPECS, Limits, build_model
from cnn.whitening import CIFAR_MEAN, CIFAR_STD, WHITEN_KERNEL, whitening_filters

PACKAGE = "cnn"


# airbench's test-time augmentation (tta_level=2): the image, and the image shifted by one pixel
# up-left and down-right (reflected border), each also mirrored; the unshifted pair counts for half.
VIEW_WEIGHTS = (0.25, 0.125, 0.125, 0.25, 0.125, 0.125)  # as is, up-left, down-right, then their mirrors


@keras.saving.register_keras_serializable(package=PACKAGE)
class TestTimeViews(layers.Layer):
    """Six views of each image, stacked view after view along the batch axis (see VIEW_WEIGHTS).

    One batch of six goes through the network, which is faster than six calls.
    """

    def call(self, images):
        height, width = images.shape[1], images.shape[2]
        padded = keras.ops.pad(images, [[0, 0], [1, 1], [1, 1], [0, 0]], mode="reflect")
        views = [images, padded[:, :height, :width], padded[:, 2:, 2:]]
        views += [keras.ops.flip(view, axis=2) for view in views]
        return keras.ops.concatenate(views, axis=0)

    def compute_output_shape(self, input_shape):
        return (None, *input_shape[1:])


@keras.saving.register_keras_serializable(package=PACKAGE)
class MeanOverViews(layers.Layer):
    """The VIEW_WEIGHTS-weighted mean of the network's probabilities over the views of each image."""

    def call(self, probabilities):
        by_view = keras.ops.reshape(probabilities, (len(VIEW_WEIGHTS), -1, probabilities.shape[-1]))
        weights = keras.ops.reshape(keras.ops.convert_to_tensor(VIEW_WEIGHTS, probabilities.dtype), (-1, 1, 1))
        return keras.ops.sum(by_view * weights, axis=0)

    def compute_output_shape(self, input_shape):
        return (None, input_shape[-1])


@keras.saving.register_keras_serializable(package=PACKAGE)
class ScaledBias(layers.Layer):
    """A per-channel bias stored divided by `scale`.

    With SGD, scaling a parameter by c multiplies its effective learning rate
    by c**2; airbench trains BatchNorm biases 64x faster than the weights, so
    scale=8 gives that without per-variable learning rates.
    """

    def __init__(self, scale: float = 8.0, **kwargs):
        super().__init__(**kwargs)
        self.scale = scale

    def build(self, input_shape):
        self.bias = self.add_weight(shape=(input_shape[-1],), initializer="zeros", name="bias")

    def call(self, inputs):
        return inputs + keras.ops.cast(self.bias * self.scale, inputs.dtype)

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package=PACKAGE)
class BatchNormBias(layers.Layer):
    """Batch normalization without a learned scale, then a ScaledBias, as ONE fused kernel.

    The same function as `BatchNormalization(center=False, scale=False)` followed by
    `ScaledBias(scale)`, computed by TensorFlow's FusedBatchNormV3 (one pass forward and one
    backward instead of Keras's separate mean, variance, normalize and add ops).
    Evidence: with ReLU, the fast network's training step runs 1.84x as fast as with Keras's layers
    and GELU (`python docs/experiments/step_variants.py`, 2-core Xeon, bf16).
    """

    def __init__(self, scale: float = 8.0, momentum: float = 0.4, epsilon: float = 1e-12, **kwargs):
        super().__init__(**kwargs)
        self.scale, self.momentum, self.epsilon = scale, momentum, epsilon

    def build(self, input_shape):
        channels = (input_shape[-1],)
        self.bias = self.add_weight(shape=channels, initializer="zeros", name="bias")
        self.moving_mean = self.add_weight(shape=channels, initializer="zeros", trainable=False, name="moving_mean")
        self.moving_variance = self.add_weight(
            shape=channels, initializer="ones", trainable=False, name="moving_variance"
        )

    def call(self, inputs, training=False):
        import tensorflow as tf

        offset = tf.cast(self.bias * self.scale, "float32")
        ones = tf.ones_like(offset)
        if training:
            empty = tf.constant([], "float32")
            outputs, mean, variance, *_ = tf.raw_ops.FusedBatchNormV3(
                x=inputs,
                scale=ones,
                offset=offset,
                mean=empty,
                variance=empty,
                epsilon=self.epsilon,
                data_format="NHWC",
                is_training=True,
            )
            self._update_moving(self.moving_mean, mean)
            self._update_moving(self.moving_variance, variance)
            return outputs
        outputs, *_ = tf.raw_ops.FusedBatchNormV3(
            x=inputs,
            scale=ones,
            offset=offset,
            mean=tf.cast(self.moving_mean, "float32"),
            variance=tf.cast(self.moving_variance, "float32"),
            epsilon=self.epsilon,
            data_format="NHWC",
            is_training=False,
        )
        return outputs

    def _update_moving(self, variable, batch_value):
        import tensorflow as tf

        # Read in float32: under mixed precision Keras hands layers their variables in bf16.
        old = tf.cast(variable, "float32")
        variable.assign(old * self.momentum + batch_value * (1.0 - self.momentum))

    def get_config(self):
        return {**super().get_config(), "scale": self.scale, "momentum": self.momentum, "epsilon": self.epsilon}


# ---------------------------------------------------------------- the report's models

# The report's models are built whatever the classroom's limits (a teacher may lower them).
REPORT_LIMITS = Limits(max_parameters=10**9, max_multiply_adds=10**12)


def build_report_model(name: str) -> keras.Model:
    """The report's model `name` (one of `cnn.zoo.report_models()`).

    Built from its spec in `cnn.spec.REPORT_SPECS`, the same data that the Build page
    loads as an editable stack: one source for both.

    Returns:
        An uncompiled Functional model from 32x32x3 images in [0, 1] to 10 class probabilities.
    """
    return build_model(REPORT_SPECS[name], name=name, limits=REPORT_LIMITS)


# ---------------------------------------------------------------- our fast network

FAST_WIDTHS = (64, 256, 256)  # airbench94 block widths
BEST_WIDTHS = (128, 384, 384)  # airbench95 block widths: about 2.5x the multiply-adds per image
BN_MOMENTUM = 0.4  # Keras convention (keep 40% of the old mean): airbench's torch momentum 0.6
# ReLU in the conv groups (airbench uses GELU): 1.5x faster steps on the 2-core Xeon, which buys more epochs
# in the same minutes (evidence: the `fast` recipe's note in cnn/zoo.py).
FAST_ACTIVATION = "relu"
OUTPUT_SCALE = 1 / 9  # airbench's logit scaling


def start_as_identity(conv: layers.Conv2D) -> None:
    """airbench's dirac init: the first `in_channels` filters of a 3x3 conv pass their channel through.

    The block then starts close to the identity, which speeds up the first epochs.
    """
    kernel = np.array(conv.kernel)
    channels_in = kernel.shape[2]
    center = kernel.shape[0] // 2
    kernel[:, :, :, :channels_in] = 0.0
    kernel[center, center, np.arange(channels_in), np.arange(channels_in)] = 1.0
    conv.kernel.assign(kernel)


WHITEN_BIAS = "whiten_bias"  # the fast trunk's whitening bias, which TrainConfig.whiten_bias_epochs freezes


def _fast_block(features, filters: int, name: str):
    """airbench ConvGroup: conv -> pool -> BN -> activation -> conv -> BN -> activation (BN fused with its bias)."""
    for index in (1, 2):
        conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")
        features = conv(features)
        start_as_identity(conv)
        if index == 1:
            features = layers.MaxPooling2D(2, name=f"{name}_pool")(features)
        features = BatchNormBias(momentum=BN_MOMENTUM, name=f"{name}_bn{index}")(features)
        features = layers.Activation(FAST_ACTIVATION, name=f"{name}_{FAST_ACTIVATION}{index}")(features)
    return features


def build_fast_trunk(
    input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, calibration_images=None, widths=FAST_WIDTHS, name="fast"
) -> keras.Model:
    """The trainable fast network (airbench94 layout): normalize, frozen whitening, three conv groups.

    Args:
        input_shape: (height, width, channels).
        num_classes: number of output classes.
        calibration_images: uint8 training images to compute the whitening filters from.
        widths: filters of the three conv groups (BEST_WIDTHS gives the airbench95 network).
        name: the model's name.

    Returns:
        A model from images in [0, 1] to class probabilities.
    """
    inputs = keras.Input(shape=input_shape, name="image")
    # The stem runs in float32 even when training in bf16: whitening multiplies the fine pixel
    # differences up to ~45x, and bf16 inputs would be rounded to about one grey level first.
    features = layers.Normalization(
        mean=list(CIFAR_MEAN), variance=[s * s for s in CIFAR_STD], name="normalize", dtype="float32"
    )(inputs)
    whiten = layers.Conv2D(
        2 * WHITEN_KERNEL * WHITEN_KERNEL * 3,
        WHITEN_KERNEL,
        use_bias=False,
        trainable=False,
        name="whiten",
        kernel_initializer=keras.initializers.Constant(whitening_filters(calibration_images)),
        dtype="float32",
    )
    features = ScaledBias(name=WHITEN_BIAS, dtype="float32")(whiten(features))
    features = layers.Activation("gelu", name="whiten_gelu")(features)
    for index, width in enumerate(widths, start=1):
        features = _fast_block(features, width, f"block{index}")
    features = layers.GlobalMaxPooling2D(name="global_pool")(features)
    logits = layers.Dense(num_classes, use_bias=False, name="logits")(features)
    logits = layers.Rescaling(OUTPUT_SCALE, name="logit_scale")(logits)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(logits)
    return keras.Model(inputs, outputs, name=name)


def with_view_averaging(trunk: keras.Model) -> keras.Model:
    """Wrap a trained network so it averages its predictions over six views of each image
    (test-time augmentation: shifts by one pixel and mirrors, see VIEW_WEIGHTS)."""
    inputs = keras.Input(shape=trunk.input_shape[1:], name="image")
    views = TestTimeViews(name="views", dtype="float32")(inputs)
    averaged = MeanOverViews(name="view_average", dtype="float32")(trunk(views))
    return keras.Model(inputs, averaged, name=trunk.name)


def build_fast(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, calibration_images=None) -> keras.Model:
    """Our fast network as shipped: the trunk with test-time view averaging."""
    return with_view_averaging(build_fast_trunk(input_shape, num_classes, calibration_images))


build_best_trunk = partial(build_fast_trunk, widths=BEST_WIDTHS, name="best")


def build_best(input_shape=INPUT_SHAPE, num_classes=NUM_CLASSES, calibration_images=None) -> keras.Model:
    """Our best network as shipped: the wider (airbench95) trunk with test-time view averaging."""
    return with_view_averaging(build_best_trunk(input_shape, num_classes, calibration_images))


# ---------------------------------------------------------------- shipping a trained network


def float32_copy(trained: keras.Model, build: Callable[[], keras.Model]) -> keras.Model:
    """The weights of `trained` in a fresh float32 network from `build` (no optimizer, no bf16 policy)."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy("float32")
    try:
        clean = build()
    finally:
        keras.config.set_dtype_policy(previous)
    clean.set_weights(trained.get_weights())
    return clean


def count_parameters(model: keras.Model) -> int:
    """Trainable and frozen weights together, as Keras's summary counts them."""
    return int(sum(np.prod(weight.shape) for weight in model.weights))
