"""Unit tests of cnn.explain on untrained zoo models (no training needed)."""

import keras
import numpy as np
import pytest

from cnn import explain
from cnn.errors import UserError
from cnn.inference import preprocess
from cnn.models import count_parameters
from cnn.zoo import ZOO


@pytest.fixture(scope="module")
def zoo():
    """Every zoo model as shipped (`fast` is the view-averaging wrapper around its trunk)."""
    keras.utils.set_random_seed(0)
    return {name: entry.build() for name, entry in ZOO.items()}


@pytest.fixture(scope="module")
def image():
    return np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)


def test_fast_is_a_wrapper_and_its_trunk_holds_the_convolutions(zoo):
    fast = zoo["fast"]
    trunk = explain.conv_trunk(fast)
    assert trunk is not fast and trunk.name == "fast" and explain.is_view_averaging_wrapper(fast)
    assert explain.conv_layer_names(fast)[:2] == ["whiten", "block1_conv1"]
    assert explain.conv_trunk(zoo["base"]) is zoo["base"] and not explain.is_view_averaging_wrapper(zoo["base"])
    assert explain.conv_layer_names(zoo["deeper"]) == [f"conv{b}_{i}" for b in (1, 2, 3) for i in (1, 2)]


@pytest.mark.parametrize("name", list(ZOO))
def test_layer_table_adds_up_to_the_model_parameters(zoo, name):
    rows = explain.layer_table(zoo[name])
    assert sum(row.parameters for row in rows if row.depth == 0) == count_parameters(zoo[name])
    nested = [row for row in rows if row.layer_type == "nested model"]
    for parent in nested:
        children = [row for row in rows if row.name.startswith(parent.name + " / ")]
        assert sum(row.parameters for row in children) == parent.parameters
    for row in rows:  # every formula ends with the count it explains
        if row.parameters:
            assert f"{row.parameters:,}" in row.formula, row


def test_layer_table_formulas_match_the_issue(zoo):
    base = {row.name: row for row in explain.layer_table(zoo["base"])}
    assert base["conv1"].formula == "(4*4*3+1)*32 = 1,568" and base["conv1"].output_shape == "(29, 29, 32)"
    assert base["conv1"].layer_type == "Conv2D + relu"
    assert base["dense"].formula == "(800+1)*256 = 205,056"
    assert base["probabilities"].formula == "(256+1)*10 = 2,570"
    for name in ("pool1", "flatten"):
        assert base[name].parameters == 0 and base[name].formula == "0 (no weights)"
    dropout = {row.name: row for row in explain.layer_table(zoo["dropout"])}
    assert dropout["dropout1"].formula == "0 (no weights)"
    batchnorm = {row.name: row for row in explain.layer_table(zoo["batchnorm"])}
    assert batchnorm["bn1_1"].formula.startswith("4*C = 4*32 = 128 (gamma, beta learned")
    assert batchnorm["bn1_1"].trainable == "64 trainable, 64 not"
    fast = {row.name: row for row in explain.layer_table(zoo["fast"])}
    assert fast["fast"].layer_type == "nested model"
    assert fast["fast / whiten"].trainable == "frozen (not trained)"
    assert fast["fast / whiten"].formula == "2*2*3*24 = 288 (no bias)"
    # batch norm fused with its bias
    assert fast["fast / block1_bn1"].formula.startswith("3*C = 3*64 = 192 (bias learned")
    assert fast["fast / block1_pool"].output_shape == "(15, 15, 64)"


def test_first_conv_filters(zoo):
    base = explain.first_conv_filters(zoo["base"])
    assert base.layer_name == "conv1" and base.images.shape == (32, 4, 4, 3)
    assert base.images.min() >= 0 and base.images.max() <= 1
    np.testing.assert_allclose(base.images.reshape(32, -1).max(axis=1), 1.0)  # each filter stretched alone
    kernel = zoo["base"].get_layer("conv1").kernel.numpy()
    raw = kernel[..., 5]
    np.testing.assert_allclose(base.images[5], (raw - raw.min()) / (raw.max() - raw.min()), rtol=1e-5)
    fast = explain.first_conv_filters(zoo["fast"])
    assert fast.layer_name == "whiten" and fast.images.shape == (24, 2, 2, 3) and "frozen" in fast.note
    assert explain.tile_images(base.images, columns=8, scale=10, gap=2).shape == (4 * 42 - 2, 8 * 42 - 2, 3)


def test_feature_maps_match_a_manual_sub_model_channels_last(zoo):
    base = zoo["base"]
    picture = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not 32x32: resized
    stages = explain.feature_maps(base, picture, "conv1")
    assert [(stage.layer_name, stage.activations.shape) for stage in stages] == [
        ("conv1", (29, 29, 32)), ("pool1", (14, 14, 32))]
    manual = keras.Model(base.input, [base.get_layer("conv1").output, base.get_layer("pool1").output])
    expected = manual(preprocess([picture]), training=False)
    for stage, reference in zip(stages, expected):
        np.testing.assert_allclose(stage.activations, np.asarray(reference)[0], rtol=1e-5, atol=1e-6)
    # The last axis is the filter: channel 7 at (3, 5) is filter 7's dot product with that 4x4x3 window, then ReLU.
    inputs = preprocess([picture])[0]
    kernel, bias = (weight.numpy() for weight in base.get_layer("conv1").weights)
    value = max(0.0, float(np.sum(inputs[3:7, 5:9, :] * kernel[..., 7]) + bias[7]))
    assert stages[0].activations[3, 5, 7] == pytest.approx(value, rel=1e-4, abs=1e-6)
    assert np.all(stages[0].activations >= 0)  # conv1 includes its ReLU
    pooled = stages[0].activations[:28, :28].reshape(14, 2, 14, 2, 32).max(axis=(1, 3))
    np.testing.assert_allclose(stages[1].activations, pooled, rtol=1e-6)


def test_feature_maps_follow_batchnorm_relu_and_pooling_skipping_dropout(zoo, image):
    stages = explain.feature_maps(zoo["batchnorm"], image, "conv1_2")
    assert [stage.layer_name for stage in stages] == ["conv1_2", "bn1_2", "relu1_2", "pool1"]
    assert stages[-1].activations.shape == (16, 16, 32)
    assert np.all(stages[2].activations >= 0)


def test_feature_maps_of_the_nested_fast_trunk(zoo, image):
    fast = zoo["fast"]
    stages = explain.feature_maps(fast, image, "whiten")
    assert [stage.layer_name for stage in stages] == ["whiten", "whiten_bias", "whiten_gelu"]
    trunk = explain.conv_trunk(fast)
    manual = keras.Model(trunk.input, trunk.get_layer("whiten").output)
    np.testing.assert_allclose(stages[0].activations, np.asarray(manual(preprocess(image)))[0], rtol=1e-5, atol=1e-5)
    blocks = explain.feature_maps(fast, image, "block1_conv1")
    assert [(s.layer_name, s.activations.shape[-1]) for s in blocks][:2] == [("block1_conv1", 64), ("block1_pool", 64)]
    with pytest.raises(UserError, match="not a convolution layer"):
        explain.feature_maps(fast, image, "block1_pool")


@pytest.mark.parametrize("name", list(ZOO))
def test_grad_cam_for_every_zoo_model(zoo, image, name):
    model = zoo[name]
    cam = explain.grad_cam(model, image)
    assert cam.heatmap.shape == (32, 32) and cam.heatmap.dtype == np.float32
    assert cam.heatmap.min() >= 0 and cam.heatmap.max() <= 1
    assert cam.heatmap.max() in (0.0, 1.0)  # scaled to its peak (or empty)
    assert cam.class_index == int(np.argmax(model(preprocess(image), training=False)[0]))
    assert "Approximate" in cam.note
    assert ("unflipped" in cam.note) == (name == "fast")
    other = explain.grad_cam(model, image, class_index=(cam.class_index + 1) % 10)
    assert other.class_index == (cam.class_index + 1) % 10 and other.heatmap.shape == (32, 32)


def test_grad_cam_layers_and_logits(zoo, image):
    assert explain.grad_cam_layer(zoo["base"]) == "conv2"
    assert explain.grad_cam_layer(zoo["batchnorm"]) == "relu3_2"
    assert explain.grad_cam_layer(zoo["fast"]) == "block3_relu2"
    # The score Grad-CAM differentiates is the logit: its softmax is the model's output.
    for name in ("base", "fast"):
        trunk = explain.conv_trunk(zoo[name])
        last = trunk.layers[-1]
        before = keras.Model(trunk.input, last.input)(preprocess(image))
        probabilities = keras.ops.softmax(explain._logits(last, before))
        np.testing.assert_allclose(np.asarray(probabilities), np.asarray(trunk(preprocess(image))), rtol=1e-4,
                                   atol=1e-6)
    with pytest.raises(UserError):
        explain.grad_cam(zoo["base"], image, class_index=10)


def test_tile_channels_overlay_and_viridis():
    activations = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    grid = explain.tile_channels(activations, max_channels=5, columns=2)
    assert grid.shape == (3 * 4 - 1, 2 * 5 - 1)
    np.testing.assert_array_equal(grid[4:7, 5:9], activations[:, :, 3])  # channel 3: row 1, column 1
    assert np.isnan(grid[3]).all() and np.isnan(grid[8:, 5:]).all()
    np.testing.assert_array_equal(explain.viridis(np.array([0.0, 1.0])), [[68, 1, 84], [253, 231, 37]])
    base = np.zeros((32, 32, 3), np.uint8)
    blended = explain.overlay(base, np.ones((32, 32), np.float32), alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (32, 32, 3)
    np.testing.assert_array_equal(blended[0, 0], [126, 116, 18])
    with pytest.raises(ValueError):
        explain.overlay(base, np.ones((8, 8)))
