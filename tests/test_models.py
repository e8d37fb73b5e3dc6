"""cnn.models: every zoo entry builds and takes a training step, the report's base model has its shapes,
the fast network averages six views, starts as identity, and its own layers match the Keras layers they stand for."""

from __future__ import annotations

import numpy as np
import pytest

keras = pytest.importorskip("keras")

from cnn.models import BatchNormBias, ScaledBias, count_parameters  # noqa: E402
from cnn.zoo import ZOO  # noqa: E402


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


@pytest.mark.slow  # builds and steps every full-size model
@pytest.mark.parametrize("name", list(ZOO))
def test_every_zoo_model_builds_and_takes_a_training_step(name):
    from cnn.training import TrainConfig, compile_model

    entry = ZOO[name]
    images = np.random.default_rng(0).integers(0, 255, (8, 32, 32, 3), dtype=np.uint8)
    model = entry.build_trainable(calibration_images=images if entry.needs_calibration else None)
    compile_model(model, TrainConfig.for_model(name, epochs=1), total_steps=1)
    before = [weight.copy() for weight in model.get_weights()]
    model.train_on_batch(images / 255.0, np.eye(10, dtype=np.float32)[np.arange(8)])
    assert any(not np.array_equal(a, b) for a, b in zip(before, model.get_weights()))
    assert model.output_shape == (None, 10) and count_parameters(model) > 0


def test_report_base_model_matches_the_report():
    model = ZOO["base"].build()
    shapes = [layer.output.shape for layer in model.layers]
    assert shapes[1][1:] == (29, 29, 32) and shapes[2][1:] == (14, 14, 32)
    assert [layer.name for layer in model.layers][-2:] == ["dense", "probabilities"]


def test_fast_model_averages_six_views_as_airbench_does():
    from cnn.models import VIEW_WEIGHTS, build_fast_trunk, with_view_averaging

    images = np.random.default_rng(1).integers(0, 255, (5, 32, 32, 3), dtype=np.uint8)
    trunk = build_fast_trunk(calibration_images=images)
    model = with_view_averaging(trunk)
    x = images / np.float32(255.0)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
    views = [x, padded[:, :32, :32], padded[:, 2:, 2:]]
    views += [view[:, :, ::-1] for view in views]
    expected = sum(weight * np.asarray(trunk(view)) for weight, view in zip(VIEW_WEIGHTS, views))
    got = np.asarray(model(x))
    assert got.shape == (5, 10) and sum(VIEW_WEIGHTS) == 1.0
    np.testing.assert_allclose(got, expected, atol=1e-5)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    assert not np.allclose(got, np.asarray(trunk(x)), atol=1e-6)  # the views do change the answer


def test_fast_blocks_start_as_identity_on_their_input_channels():
    from cnn.models import build_fast_trunk

    trunk = build_fast_trunk()
    first = np.asarray(trunk.get_layer("block1_conv1").kernel)  # 24 -> 64 channels
    assert np.array_equal(first[:, :, :, :24], _dirac(24, 24))
    assert np.abs(first[:, :, :, 24:]).sum() > 0  # the other filters keep their random start
    assert np.array_equal(np.asarray(trunk.get_layer("block3_conv2").kernel), _dirac(256, 256))


def _dirac(channels_in, channels_out):
    kernel = np.zeros((3, 3, channels_in, channels_out), np.float32)
    kernel[1, 1, np.arange(channels_in), np.arange(channels_in)] = 1.0
    return kernel
