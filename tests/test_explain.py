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


def test_feature_maps_match_a_manual_sub_model_channels_last(zoo):
    base = zoo["base"]
    picture = np.random.default_rng(1).integers(0, 256, (40, 56, 3), dtype=np.uint8)  # not 32x32: resized
    stages = explain.feature_maps(base, picture, "conv1")
    assert [(stage.layer_name, stage.activations.shape) for stage in stages] == [
        ("conv1", (29, 29, 32)),
        ("pool1", (14, 14, 32)),
    ]
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
    assert cam.heatmap.min() >= 0 and cam.heatmap.max() in (0.0, 1.0)  # its peak is the colour scale's top
    assert (cam.heatmap.max() > 0) == ("empty" not in cam.note)
    assert cam.class_index == int(np.argmax(model(preprocess(image), training=False)[0]))
    assert "Approximate" in cam.note
    assert ("unflipped" in cam.note) == (name in ("fast", "best"))  # the view-averaging wrappers
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
        np.testing.assert_allclose(
            np.asarray(probabilities), np.asarray(trunk(preprocess(image))), rtol=1e-4, atol=1e-6
        )
    with pytest.raises(UserError):
        explain.grad_cam(zoo["base"], image, class_index=10)


# ---------------------------------------------------------------- Grad-CAM against a computation by hand


def tiny_model(head: str, seed: int = 0):
    """Input 32x32x3 -> Conv2D(4, 3x3, same, ReLU) "conv" -> Flatten or global average -> Dense(10, softmax).

    The head is linear in the conv maps, so the gradient of a class's logit with respect to the maps
    is known in closed form: the Dense weights of that class (spread evenly over the positions by the
    global average).
    """
    inputs = keras.Input((32, 32, 3))
    maps = keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv")(inputs)
    pooling = keras.layers.Flatten() if head == "flatten" else keras.layers.GlobalAveragePooling2D()
    outputs = keras.layers.Dense(10, activation="softmax", name="probabilities")(pooling(maps))
    model = keras.Model(inputs, outputs)
    rng = np.random.default_rng(seed)
    model.set_weights([rng.normal(0, 0.5, weight.shape).astype(np.float32) for weight in model.get_weights()])
    return model


def grad_cam_by_hand(model, image: np.ndarray, class_index: int, head: str) -> np.ndarray:
    """Grad-CAM in numpy: maps A by an explicit convolution, weights = mean over positions of d logit / d A."""
    kernel, conv_bias, dense_weights, _ = (np.asarray(weight, np.float64) for weight in model.get_weights())
    pixels = image.astype(np.float64) / 255
    padded = np.pad(pixels, ((1, 1), (1, 1), (0, 0)))  # "same" for a 3x3 kernel: one zero on each side
    maps = np.zeros((32, 32, 4)) + conv_bias
    for dy in range(3):
        for dx in range(3):
            maps += padded[dy : dy + 32, dx : dx + 32] @ kernel[dy, dx]
    maps = np.maximum(maps, 0)
    if head == "flatten":  # logit = sum of A[i, j, k] * W[(i, j, k), c] + b: the gradient is W's column
        gradient = dense_weights[:, class_index].reshape(maps.shape)
    else:  # logit = sum_k mean(A[:, :, k]) * W[k, c] + b: W[k, c] / (32 * 32) at every position
        gradient = np.broadcast_to(dense_weights[:, class_index] / maps[..., 0].size, maps.shape)
    channel_weights = gradient.mean(axis=(0, 1))
    cam = np.maximum((maps * channel_weights).sum(axis=-1), 0)
    return cam / cam.max() if cam.max() > 0 else cam


@pytest.mark.parametrize("head", ["flatten", "global_average"])
def test_grad_cam_values_equal_a_computation_by_hand(image, head):
    model = tiny_model(head)
    assert explain.grad_cam_layer(model) == "conv"
    empty = 0
    for class_index in range(10):
        cam = explain.grad_cam(model, image, class_index)
        expected = grad_cam_by_hand(model, image, class_index, head)
        assert cam.map_size == (32, 32)  # no resize: the hand map compares pixel for pixel
        np.testing.assert_allclose(cam.heatmap, expected, atol=2e-4)
        empty += not expected.any()
        assert ("empty" in cam.note) == (not expected.any())
    assert empty < 10, "every class gave an empty map: the comparison would be trivial"


def test_grad_cam_explains_the_top_class_by_default(image):
    model = tiny_model("flatten", seed=1)
    top = int(np.argmax(np.asarray(model(preprocess(image)))[0]))
    cam = explain.grad_cam(model, image)
    assert cam.class_index == top
    np.testing.assert_allclose(cam.heatmap, grad_cam_by_hand(model, image, top, "flatten"), atol=2e-4)


def test_upsampled_heatmap_stays_in_the_unit_range():
    small = np.random.default_rng(2).random((8, 8)).astype(np.float32)
    small /= small.max()
    big = explain.upsampled(small)
    assert big.shape == (32, 32) and 0 <= big.min() and big.max() <= 1
    np.testing.assert_allclose(explain.upsampled(np.full((8, 8), 0.25, np.float32)), 0.25)
