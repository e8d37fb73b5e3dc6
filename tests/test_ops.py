"""cnn.ops checked against Keras layers on random inputs (micrograd-style) and the report's hand examples."""

import itertools
import re

import numpy as np
import pytest

from cnn import ops
from cnn.errors import UserError

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

RNG = np.random.default_rng(1234)
TOLERANCE = dict(rtol=1e-4, atol=1e-4)


def keras_conv(image, bank, stride, padding, dilation, bias):
    """Run keras Conv2D with the given weights on one (h, w, c) image."""
    layer = keras.layers.Conv2D(
        filters=bank.shape[-1],
        kernel_size=bank.shape[0],
        strides=stride,
        padding=padding,
        dilation_rate=dilation,
    )
    layer.build((1, *image.shape))
    layer.set_weights([bank.astype("float32"), bias.astype("float32")])
    return np.asarray(layer(image[np.newaxis].astype("float32")))[0]


# Keras refuses strides > 1 together with dilation > 1, so those pairs are left out.
CONV_CASES = [
    (stride, padding, dilation, channels, filters, kernel_size)
    for stride, padding, dilation, channels, filters, kernel_size in itertools.product(
        (1, 2, 3), ("valid", "same"), (1, 2), (1, 3), (1, 4), (1, 2, 3, 5)
    )
    if stride == 1 or dilation == 1
]


@pytest.mark.parametrize("stride,padding,dilation,channels,filters,kernel_size", CONV_CASES)
def test_conv2d_matches_keras_conv2d(stride, padding, dilation, channels, filters, kernel_size):
    image = RNG.normal(size=(11, 9, channels))
    bank = RNG.normal(size=(kernel_size, kernel_size, channels, filters))
    bias = RNG.normal(size=filters)
    spec = ops.ConvSpec(stride=stride, padding=padding, dilation=dilation)

    ours = ops.conv2d(image, bank, spec, bias=bias)
    theirs = keras_conv(image, bank, stride, padding, dilation, bias)

    assert ours.shape == theirs.shape
    np.testing.assert_allclose(ours, theirs, **TOLERANCE)


@pytest.mark.parametrize("padding", [0, 1, 2])
def test_custom_padding_matches_keras_zero_padding_then_valid_conv(padding):
    image = RNG.normal(size=(8, 8, 3))
    bank = RNG.normal(size=(3, 3, 3, 2))
    padded = keras.layers.ZeroPadding2D(padding)(image[np.newaxis].astype("float32"))
    theirs = keras_conv(np.asarray(padded)[0], bank, 2, "valid", 1, np.zeros(2))
    ours = ops.conv2d(image, bank, ops.ConvSpec(stride=2, padding=padding))
    np.testing.assert_allclose(ours, theirs, **TOLERANCE)


@pytest.mark.parametrize("size,stride", [(2, 2), (2, 1), (3, 2), (3, 3), (1, 1), (4, 3)])
@pytest.mark.parametrize("channels", [1, 3])
def test_pooling_matches_keras(size, stride, channels):
    image = RNG.normal(size=(10, 9, channels)).astype("float32")
    batch = image[np.newaxis]
    keras_max = np.asarray(keras.layers.MaxPooling2D(size, stride)(batch))[0]
    keras_avg = np.asarray(keras.layers.AveragePooling2D(size, stride)(batch))[0]

    np.testing.assert_allclose(ops.max_pool(image, size, stride), keras_max, **TOLERANCE)
    np.testing.assert_allclose(ops.avg_pool(image, size, stride), keras_avg, **TOLERANCE)
    result = ops.max_pool_with_argmax(image, size, stride)
    np.testing.assert_allclose(result.values, keras_max, **TOLERANCE)
    # The recorded position really holds the maximum.
    channel_index = np.arange(channels)[np.newaxis, np.newaxis, :]
    np.testing.assert_allclose(image[result.rows, result.cols, channel_index], keras_max, **TOLERANCE)


def test_relu_flatten_dense_softmax_match_keras():
    values = RNG.normal(size=(4, 5, 3)).astype("float32")
    np.testing.assert_allclose(ops.relu(values), np.asarray(keras.activations.relu(values)), **TOLERANCE)
    flat = ops.flatten(values)
    np.testing.assert_allclose(flat, np.asarray(keras.layers.Flatten()(values[np.newaxis]))[0], **TOLERANCE)

    layer = keras.layers.Dense(7)
    layer.build((1, flat.size))
    weights, bias = RNG.normal(size=(flat.size, 7)), RNG.normal(size=7)
    layer.set_weights([weights.astype("float32"), bias.astype("float32")])
    np.testing.assert_allclose(
        ops.dense(flat, weights, bias), np.asarray(layer(flat[np.newaxis].astype("float32")))[0], **TOLERANCE
    )
    logits = RNG.normal(size=(3, 10)) * 20
    np.testing.assert_allclose(ops.softmax(logits), np.asarray(keras.activations.softmax(logits)), **TOLERANCE)
    np.testing.assert_allclose(ops.softmax([1000.0, 1000.0]), [0.5, 0.5])  # no overflow


def test_report_example_gives_a_3x3_feature_map():
    feature_map = ops.conv2d(ops.REPORT_EXAMPLE_INPUT, ops.REPORT_EXAMPLE_KERNEL)[..., 0]
    np.testing.assert_array_equal(feature_map, [[4, 3, 4], [2, 4, 3], [2, 3, 4]])
    assert ops.output_size(5, 3) == 5 - 3 + 1


def test_report_example_with_one_pixel_of_padding_keeps_5x5():
    feature_map = ops.conv2d(ops.REPORT_EXAMPLE_INPUT, ops.REPORT_EXAMPLE_KERNEL, ops.ConvSpec(padding=1))
    assert feature_map.shape == (5, 5, 1)
    assert feature_map[0, 0, 0] == 2  # top-left window: 1 + 1 under the kernel's 1s, zeros outside


def test_window_breakdown_writes_the_dot_product_and_matches_conv2d():
    breakdown = ops.window_breakdown(ops.REPORT_EXAMPLE_INPUT, ops.REPORT_EXAMPLE_KERNEL, ops.ConvSpec(), 0)
    assert (breakdown.out_row, breakdown.out_col, breakdown.total) == (0, 0, 4.0)
    assert ops.dot_product_lines(breakdown) == ["1×1 + 1×0 + 1×1 + 0×0 + 1×1 + 1×0 + 0×1 + 0×0 + 1×1 = 4"]


@pytest.mark.parametrize(
    "spec", [ops.ConvSpec(), ops.ConvSpec(2, "same", 1), ops.ConvSpec(1, 2, 2), ops.ConvSpec(3, "same", 1)]
)
def test_every_window_breakdown_equals_the_feature_map(spec):
    image = RNG.integers(0, 256, size=(9, 8, 3))
    kernel = ops.kernel_preset("Sobel x", 3)
    feature_map = ops.feature_maps(image, [kernel], spec)[..., 0]
    for step in range(feature_map.size):
        breakdown = ops.window_breakdown(image, kernel, spec, step)
        assert breakdown.total == pytest.approx(feature_map[breakdown.out_row, breakdown.out_col])
        assert breakdown.channel_sums.shape == (3,)
    lines = ops.dot_product_lines(breakdown)
    assert [line[:2] for line in lines] == ["R:", "G:", "B:", "su"]


def test_same_padding_is_asymmetric_like_keras():
    # n=6, k=3, s=2: output 3, total padding 1, all of it after (bottom/right).
    assert ops.padding_amounts(6, 3, ops.ConvSpec(stride=2, padding="same")) == (0, 1)
    assert ops.padding_amounts(5, 3, ops.ConvSpec(padding="same")) == (1, 1)
    assert ops.padding_amounts(7, 3, ops.ConvSpec(padding="same", dilation=2)) == (2, 2)


@pytest.mark.parametrize("n,k,p,s,d", itertools.product((1, 4, 5, 7, 32), (1, 2, 3, 5), (0, 1, 2), (1, 2, 3), (1, 2)))
def test_output_size_formula_matches_the_actual_output(n, k, p, s, d):
    span = d * (k - 1) + 1
    if span > n + 2 * p:
        with pytest.raises(UserError, match="does not fit"):
            ops.output_size(n, k, p, s, d)
        return
    expected = (n + 2 * p - d * (k - 1) - 1) // s + 1
    assert ops.output_size(n, k, p, s, d) == expected
    assert ops.output_size_formula(n, k, p, s, d).endswith(f"= {expected}")
    assert ops.conv2d(np.ones((n, n)), np.ones((k, k)), ops.ConvSpec(s, p, d)).shape[0] == expected


def test_output_size_formula_text_is_filled_in():
    assert ops.output_size_formula(32, 3, 1, 2) == "floor((32 + 2·1 − 1·(3 − 1) − 1) / 2) + 1 = 16"
    assert ops.output_size_formula(6, 3, (0, 1), 2) == "floor((6 + (0 + 1) − 1·(3 − 1) − 1) / 2) + 1 = 3"
    formulas = ops.output_size_formulas((32, 20, 3), 5, ops.ConvSpec(padding="same"))
    assert formulas["rows"].endswith("= 32") and formulas["columns"].endswith("= 20")


@pytest.mark.parametrize(
    "call,message",
    [
        (lambda: ops.output_size(5, 3, 0, 0), "Stride must be at least 1"),
        (lambda: ops.output_size(5, 3, -1, 1), "Padding cannot be negative"),
        (lambda: ops.output_size(5, 7, 0, 1), "7x7 kernel does not fit in the padded input of 5 pixels"),
        (lambda: ops.output_size(5, 3, 0, 1, 3), "dilation 3 makes it span 7 pixels"),
        (lambda: ops.output_size(5, 0), "Kernel size must be at least 1"),
        (lambda: ops.output_size(5, 3, 0, 1.5), "Stride must be a whole number"),
        (lambda: ops.ConvSpec(stride=0), "Stride must be at least 1"),
        (lambda: ops.ConvSpec(padding="full"), 'Padding must be "valid", "same" or a whole number'),
        (lambda: ops.ConvSpec(padding=-2), "Padding cannot be negative"),
        (lambda: ops.ConvSpec(dilation=0), "Dilation must be at least 1"),
        (lambda: ops.conv2d(np.ones((4, 4)), np.ones((5, 5))), "does not fit"),
        (lambda: ops.conv2d(np.ones((4, 4, 3)), np.ones((3, 3, 2))), "must match"),
        (lambda: ops.kernel_preset("Sobel x", 4), "defined for sizes 3, 5, 7"),
        (lambda: ops.kernel_preset("emboss"), "Unknown kernel"),
        (lambda: ops.kernel_from_grid(np.ones((4, 4))), "odd size from 1 to 7"),
        (lambda: ops.kernel_from_grid([[1, None, 0], [0, 1, 0], [0, 0, 1]]), "must hold a number"),
        (lambda: ops.kernel_from_grid(np.ones((3, 2))), "square"),
        (lambda: ops.kernel_from_grid([[1e308]]), "from -1000 to 1000"),
        (lambda: ops.max_pool(np.ones((3, 3)), 4), "does not fit"),
        (lambda: ops.window_breakdown(np.ones((5, 5)), np.ones((3, 3)), ops.ConvSpec(), 9), "only 9 windows"),
        (lambda: ops.filter_bank([np.ones((3, 3)), np.ones((5, 5))], 1), "same size"),
    ],
)
def test_invalid_arguments_raise_user_error_with_a_plain_message(call, message):
    with pytest.raises(UserError, match=re.escape(message)):
        call()


def test_kernel_presets_cover_odd_sizes_and_behave():
    flat = np.full((9, 9), 7.0)
    for name in ops.KERNEL_PRESETS:
        for size in ops.preset_sizes(name):
            kernel = ops.kernel_preset(name, size)
            assert kernel.shape == (size, size) and size % 2 == 1
            response = ops.conv2d(flat, kernel)[..., 0]
            # On a flat image: identity, blur, sharpen keep the value; edge and Sobel give 0.
            expected = {"edge": 0.0, "Sobel x": 0.0, "Sobel y": 0.0, "report example": 35.0}.get(name, 7.0)
            np.testing.assert_allclose(response, expected, atol=1e-9)
    np.testing.assert_array_equal(ops.kernel_preset("Sobel x"), [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]])
    np.testing.assert_array_equal(ops.kernel_preset("Sobel y"), [[-1, -2, -1], [0, 0, 0], [1, 2, 1]])
    np.testing.assert_array_equal(ops.kernel_preset("Sobel x", 5)[2], [-6, -12, 0, 12, 6])


def test_pad_supports_symmetric_and_per_side_padding():
    assert ops.pad(np.ones((2, 3)), 1).shape == (4, 5)
    padded = ops.pad(np.ones((2, 2, 3)), ((0, 1), (2, 0)))
    assert padded.shape == (3, 4, 3) and padded[:, :2].sum() == 0 and padded[2].sum() == 0


def test_numbers_are_written_out_never_as_exponents():
    assert [ops.format_number(value) for value in (1000.0, 1234.7, -0.125, 2.0, 0.000123, 123456.7, 1e-5)] == [
        "1000",
        "1235",
        "-0.125",
        "2",
        "0.000123",
        "123457",
        "0.00001",
    ]
    assert [ops.format_number(value) for value in (np.inf, -np.inf, np.nan)] == ["∞", "-∞", "not a number"]
    window = ops.pool_window(np.array([[1234.5, 0.5], [2.0, 3.0]]), 2, 2, 0)
    assert ops.pool_window_lines(window)[1].startswith("max(1234, 0.5, 2, 3) = 1234")  # not "1.23e+03"


def test_pool_window_writes_out_max_and_average():
    window = ops.pool_window(ops.POOLING_EXAMPLE_INPUT, 2, 2, 1)
    assert (window.max_value, window.max_row, window.max_col, window.mean) == (8, 1, 3, 5.25)
    lines = ops.pool_window_lines(window)
    assert "max(2, 4, 7, 8) = 8" in lines[1] and lines[2].endswith("= 5.25")
    np.testing.assert_array_equal(ops.max_pool(ops.POOLING_EXAMPLE_INPUT), [[6, 8], [3, 4]])


def test_weight_comparison_reproduces_the_report():
    comparison = ops.weight_comparison(200, 200, 3, 3)
    assert comparison.dense_neuron_weights == 120_000
    assert comparison.conv_filter_weights == 27


def test_toy_network_shapes_and_probabilities():
    image = RNG.integers(0, 256, size=(32, 32, 3)).astype(np.uint8)
    stages = ops.toy_network(image, num_filters=4, kernel_size=3, seed=7)
    assert [stage.shape for stage in stages] == [
        (32, 32, 3),
        (32, 32, 4),
        (32, 32, 4),
        (16, 16, 4),
        (1024,),
        (10,),
        (10,),
    ]
    assert stages[-1].values.sum() == pytest.approx(1.0)
    again = ops.toy_network(image, num_filters=4, kernel_size=3, seed=7)
    np.testing.assert_array_equal(stages[-1].values, again[-1].values)  # seeded


def test_ops_does_not_import_tensorflow():
    import subprocess
    import sys
    from pathlib import Path

    code = "import sys, cnn.ops; assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[1])
