"""The fast network's own layers, checked against the Keras layers they stand for."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnn.models import BatchNormBias, ScaledBias  # noqa: E402


def reference_pair(channels: int, momentum: float):
    """Keras's batch norm without scale or centre, then a ScaledBias: what BatchNormBias fuses."""
    inputs = keras.Input((6, 6, channels))
    normalized = keras.layers.BatchNormalization(momentum=momentum, epsilon=1e-12, center=False, scale=False)(inputs)
    return keras.Model(inputs, ScaledBias()(normalized))


def fused(channels: int, momentum: float):
    inputs = keras.Input((6, 6, channels))
    return keras.Model(inputs, BatchNormBias(momentum=momentum)(inputs))


def test_batch_norm_bias_equals_keras_batch_norm_then_bias_in_training_and_inference():
    rng = np.random.default_rng(0)
    x = (rng.normal(size=(64, 6, 6, 5)) * 3 + 2).astype("float32")
    reference, ours = reference_pair(5, 0.4), fused(5, 0.4)
    bias = rng.normal(size=5).astype("float32")
    reference.layers[-1].bias.assign(bias)
    ours.layers[-1].bias.assign(bias)

    np.testing.assert_allclose(ours(x, training=True), reference(x, training=True), atol=1e-4)
    fused_layer, keras_bn = ours.layers[-1], reference.layers[1]
    np.testing.assert_allclose(fused_layer.moving_mean, keras_bn.moving_mean, atol=1e-5)
    # TensorFlow's fused kernel keeps the unbiased batch variance (n/(n-1) larger; n = 64*6*6 here).
    n = 64 * 6 * 6
    expected_variance = 0.4 + (np.asarray(keras_bn.moving_variance) - 0.4) * n / (n - 1)  # 0.4 * 1 + 0.6 * var
    np.testing.assert_allclose(fused_layer.moving_variance, expected_variance, rtol=1e-4)
    fused_layer.moving_variance.assign(keras_bn.moving_variance)
    np.testing.assert_allclose(ours(x, training=False), reference(x, training=False), atol=1e-4)


def test_batch_norm_bias_trains_its_bias_at_the_scaled_rate():
    layer = BatchNormBias(scale=8.0)
    x = np.random.default_rng(1).normal(size=(8, 4, 4, 3)).astype("float32")
    import tensorflow as tf

    layer.build(x.shape)
    with tf.GradientTape() as tape:
        loss = tf.reduce_sum(layer(x, training=True))
    (gradient,) = tape.gradient(loss, [layer.bias])
    np.testing.assert_allclose(gradient, np.full(3, 8.0 * 8 * 4 * 4), rtol=1e-5)  # d(sum)/d(bias) = scale * count


def test_batch_norm_bias_round_trips_through_a_saved_file_in_safe_mode(tmp_path):
    model = fused(3, 0.4)
    model.layers[-1].bias.assign([1.0, -2.0, 0.5])
    path = tmp_path / "m.keras"
    model.save(path)
    loaded = keras.models.load_model(path, safe_mode=True)
    x = np.random.default_rng(2).normal(size=(2, 6, 6, 3)).astype("float32")
    np.testing.assert_allclose(loaded(x), model(x), atol=1e-6)
