"""The CNN operations of the Learn pages in plain numpy, small enough to read.

Padding, convolution (stride, padding, dilation, several channels and
filters), ReLU, max and average pooling, flatten, dense and softmax, the
output-size formula, kernel presets and the ANN-vs-CNN weight count, after
chapters I-II of the course report. Each operation agrees with the matching
Keras layer (tests/test_ops.py checks that), yet this module never imports
TensorFlow, so the Learn pages open fast.

Shapes follow Keras (channels last): an image is ``(height, width)`` or
``(height, width, channels)``; a filter bank is ``(k, k, channels, filters)``.
Like Keras, "convolution" here is cross-correlation: the kernel is not flipped.
Every argument a user can get wrong raises `cnn.errors.UserError` with a plain
message.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from cnn import NUM_CLASSES
from cnn.errors import UserError

__all__ = [
    "ConvSpec",
    "WindowBreakdown",
    "PoolResult",
    "NetworkStage",
    "WeightComparison",
    "KERNEL_PRESETS",
    "MAX_KERNEL_WEIGHT",
    "REPORT_EXAMPLE_INPUT",
    "REPORT_EXAMPLE_KERNEL",
    "POOLING_EXAMPLE_INPUT",
    "FLATTEN_EXAMPLE_INPUT",
    "output_size",
    "output_size_formula",
    "padding_amounts",
    "feature_map_shape",
    "pad",
    "conv2d",
    "filter_bank",
    "feature_maps",
    "output_size_formulas",
    "pool_output_size_formulas",
    "padding_in_words",
    "window_breakdown",
    "dot_product_lines",
    "relu",
    "count_negatives",
    "max_pool",
    "avg_pool",
    "max_pool_with_argmax",
    "PoolWindow",
    "pool_window",
    "pool_window_lines",
    "flatten",
    "dense",
    "softmax",
    "kernel_preset",
    "preset_sizes",
    "kernel_from_grid",
    "weight_comparison",
    "toy_network",
]

# The convolution example of the report's figure 8 (a 5x5 binary input and a
# 3x3 kernel, stride 1, no padding -> a 3x3 feature map). The figure is an image
# in the report; these are the values of the classic illustration it shows.
REPORT_EXAMPLE_INPUT = np.array(
    [
        [1, 1, 1, 0, 0],
        [0, 1, 1, 1, 0],
        [0, 0, 1, 1, 1],
        [0, 0, 1, 1, 0],
        [0, 1, 1, 0, 0],
    ],
    dtype=float,
)
REPORT_EXAMPLE_KERNEL = np.array([[1, 0, 1], [0, 1, 0], [1, 0, 1]], dtype=float)

# The 4x4 input of the classic "2x2 max pooling, stride 2" figure (report fig. 12).
POOLING_EXAMPLE_INPUT = np.array([[1, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]], dtype=float)

# The 3x3 matrix flattened into a 9x1 vector in the report's figure 15.
FLATTEN_EXAMPLE_INPUT = np.arange(1, 10, dtype=float).reshape(3, 3)

PADDING_MODES = ("valid", "same")


# --------------------------------------------------------------------------
# Settings and the output-size formula
# --------------------------------------------------------------------------


def _require_whole_number(value, name: str, minimum: int) -> int:
    """Return `value` as an int, or raise UserError naming the setting."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise UserError(f"{name} must be a whole number (got {value!r}).")
    if value < minimum:
        if name == "Padding":
            raise UserError(f"Padding cannot be negative (got {value}).")
        raise UserError(f"{name} must be at least {minimum} (got {value}).")
    return int(value)


@dataclass(frozen=True)
class ConvSpec:
    """How a kernel slides over the input.

    Attributes:
        stride: pixels the window moves per step, both directions (>= 1).
        padding: "valid" (no padding), "same" (Keras' rule: the output is
            ceil(n / stride) wide, extra padding going bottom/right), or a
            whole number p of zero rows/columns added on every side.
        dilation: gap between the kernel's taps; 1 means neighbouring pixels.
    """

    stride: int = 1
    padding: str | int = "valid"
    dilation: int = 1

    def __post_init__(self):
        _require_whole_number(self.stride, "Stride", 1)
        _require_whole_number(self.dilation, "Dilation", 1)
        if isinstance(self.padding, str):
            if self.padding not in PADDING_MODES:
                raise UserError(f'Padding must be "valid", "same" or a whole number (got "{self.padding}").')
        else:
            _require_whole_number(self.padding, "Padding", 0)


def _span(kernel_size: int, dilation: int) -> int:
    """Pixels covered by a dilated kernel: d(k - 1) + 1."""
    return dilation * (kernel_size - 1) + 1


def padding_amounts(n: int, kernel_size: int, spec: ConvSpec) -> tuple[int, int]:
    """Zero rows (or columns) added before and after an axis of length `n`.

    "same" follows TensorFlow: the output has ceil(n / stride) positions and
    any odd padding pixel goes after (bottom/right).
    """
    if spec.padding == "valid":
        return 0, 0
    if spec.padding == "same":
        out = -(-n // spec.stride)  # ceil division
        total = max((out - 1) * spec.stride + _span(kernel_size, spec.dilation) - n, 0)
        return total // 2, total - total // 2
    return int(spec.padding), int(spec.padding)


def _padding_pair(padding) -> tuple[int, int]:
    """Accept p or (before, after); validate and return (before, after)."""
    if isinstance(padding, (tuple, list)):
        if len(padding) != 2:
            raise UserError("Padding must be one number or a (before, after) pair.")
        before, after = padding
    else:
        before = after = padding
    return (
        _require_whole_number(before, "Padding", 0),
        _require_whole_number(after, "Padding", 0),
    )


def output_size(n: int, k: int, p=0, s: int = 1, d: int = 1) -> int:
    """Feature-map length along one axis: floor((n + 2p - d(k-1) - 1) / s) + 1.

    Args:
        n: input length (pixels).
        k: kernel length.
        p: zero padding on each side, or a (before, after) pair.
        s: stride.
        d: dilation.

    Raises:
        UserError: a setting out of range or a kernel wider than the padded input.
    """
    n = _require_whole_number(n, "Input size", 1)
    k = _require_whole_number(k, "Kernel size", 1)
    s = _require_whole_number(s, "Stride", 1)
    d = _require_whole_number(d, "Dilation", 1)
    before, after = _padding_pair(p)
    padded = n + before + after
    span = _span(k, d)
    if span > padded:
        dilated = f" (dilation {d} makes it span {span} pixels)" if d > 1 else ""
        raise UserError(
            f"The {k}x{k} kernel{dilated} does not fit in the padded input of "
            f"{padded} pixels: use a smaller kernel, more padding or less dilation."
        )
    return (padded - span) // s + 1


def output_size_formula(n: int, k: int, p=0, s: int = 1, d: int = 1) -> str:
    """The output-size formula written out with these numbers, as plain text.

    Example: ``floor((5 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 3``. With an
    asymmetric (before, after) padding, ``2·p`` becomes ``(before + after)``.
    Raises UserError like `output_size`.
    """
    result = output_size(n, k, p, s, d)
    before, after = _padding_pair(p)
    padding_term = f"2·{before}" if before == after else f"({before} + {after})"
    return f"floor(({n} + {padding_term} − {d}·({k} − 1) − 1) / {s}) + 1 = {result}"


def feature_map_shape(height: int, width: int, kernel_size: int, spec: ConvSpec) -> tuple[int, int]:
    """(rows, columns) of the feature map of one kernel under `spec`."""
    return tuple(
        output_size(n, kernel_size, padding_amounts(n, kernel_size, spec), spec.stride, spec.dilation)
        for n in (height, width)
    )


# --------------------------------------------------------------------------
# Padding and convolution
# --------------------------------------------------------------------------


def _as_image(x) -> np.ndarray:
    """Return `x` as a float (height, width, channels) array."""
    array = np.asarray(x, dtype=float)
    if array.ndim == 2:
        return array[:, :, np.newaxis]
    if array.ndim == 3:
        return array
    raise UserError(f"An image must be height x width or height x width x channels (got {array.ndim} dimensions).")


def pad(x, padding) -> np.ndarray:
    """Surround an image with zeros.

    Args:
        x: (height, width) or (height, width, channels) array.
        padding: p (the same on every side) or ((top, bottom), (left, right)).

    Returns:
        The padded array, same number of dimensions as `x`.
    """
    array = np.asarray(x)
    if (
        isinstance(padding, (tuple, list))
        and len(padding) == 2
        and all(isinstance(pair, (tuple, list)) for pair in padding)
    ):
        rows, cols = _padding_pair(padding[0]), _padding_pair(padding[1])
    else:
        rows = cols = _padding_pair(padding)
    if array.ndim not in (2, 3):
        raise UserError("Only 2-D or 3-D (channels last) images can be padded.")
    widths = [rows, cols] + [(0, 0)] * (array.ndim - 2)
    return np.pad(array, widths, mode="constant", constant_values=0)


def _as_filter_bank(kernels, channels: int) -> np.ndarray:
    """Return kernels as (k, k, channels, filters); a 2-D kernel is shared by all channels."""
    bank = np.asarray(kernels, dtype=float)
    if bank.ndim == 2:
        bank = np.repeat(bank[:, :, np.newaxis], channels, axis=2)
    if bank.ndim == 3:
        bank = bank[..., np.newaxis]
    if bank.ndim != 4:
        raise UserError("Kernels must be k x k, k x k x channels or k x k x channels x filters.")
    if bank.shape[0] != bank.shape[1]:
        raise UserError(f"Kernels must be square (got {bank.shape[0]}x{bank.shape[1]}).")
    if bank.shape[2] != channels:
        raise UserError(f"The kernel has {bank.shape[2]} channels but the input has {channels}: they must match.")
    return bank


def filter_bank(kernels: Sequence, channels: int) -> np.ndarray:
    """Stack 2-D kernels into a (k, k, channels, filters) bank.

    Each 2-D kernel is copied to every input channel, so on an RGB image a
    filter sums the kernel's response on R, G and B, as a Conv2D filter does.
    """
    if not kernels:
        raise UserError("Choose at least one kernel.")
    sizes = {np.shape(kernel) for kernel in kernels}
    if len(sizes) != 1:
        raise UserError("All kernels applied together must have the same size.")
    return np.stack([_as_filter_bank(kernel, channels)[..., 0] for kernel in kernels], axis=-1)


def _windows(padded: np.ndarray, kernel_size: int, stride: int, dilation: int) -> np.ndarray:
    """Views of every window the kernel visits: (out_h, out_w, channels, k, k).

    No copy: sliding_window_view over the dilated span, then striding picks the
    stride's positions and the dilation's taps.
    """
    span = _span(kernel_size, dilation)
    views = sliding_window_view(padded, (span, span), axis=(0, 1))
    return views[::stride, ::stride, :, ::dilation, ::dilation]


def _checked_padded_input(x, kernel_size: int, spec: ConvSpec):
    """Pad `x` for `spec` after checking the kernel fits; return (padded, padding)."""
    image = _as_image(x)
    height, width = image.shape[:2]
    feature_map_shape(height, width, kernel_size, spec)  # raises if it does not fit
    padding = (
        padding_amounts(height, kernel_size, spec),
        padding_amounts(width, kernel_size, spec),
    )
    return pad(image, padding), padding


def conv2d(x, kernels, spec: ConvSpec = ConvSpec(), bias=None) -> np.ndarray:
    """Slide each filter over the image and take dot products (like keras Conv2D).

    Args:
        x: (height, width) or (height, width, channels) input.
        kernels: (k, k) shared by all channels, (k, k, channels) one filter,
            or (k, k, channels, filters).
        spec: stride, padding and dilation.
        bias: optional (filters,) values added to each feature map.

    Returns:
        (out_height, out_width, filters) float array: one feature map per filter.
    """
    image = _as_image(x)
    bank = _as_filter_bank(kernels, image.shape[2])
    padded, _ = _checked_padded_input(image, bank.shape[0], spec)
    windows = _windows(padded, bank.shape[0], spec.stride, spec.dilation)
    # windows: (oh, ow, c, k, k); bank: (k, k, c, f) -> sum over c, k, k.
    result = np.einsum("hwcij,ijcf->hwf", windows, bank, optimize=True)
    if bias is not None:
        result = result + np.asarray(bias, dtype=float)
    return result


def feature_maps(x, kernels: Sequence, spec: ConvSpec = ConvSpec()) -> np.ndarray:
    """One feature map per 2-D kernel: (out_height, out_width, len(kernels)).

    Each kernel is applied to every channel of `x` and the channels summed
    (see `filter_bank`).
    """
    image = _as_image(x)
    return conv2d(image, filter_bank(kernels, image.shape[2]), spec)


def output_size_formulas(image_shape: Sequence[int], kernel_size: int, spec: ConvSpec) -> dict[str, str]:
    """The output-size formula filled in for the rows and for the columns of an image.

    Returns {"rows": text, "columns": text}; raises UserError like `output_size`.
    """
    height, width = image_shape[:2]
    return {
        axis: output_size_formula(n, kernel_size, padding_amounts(n, kernel_size, spec), spec.stride, spec.dilation)
        for axis, n in (("rows", height), ("columns", width))
    }


def pool_output_size_formulas(image_shape: Sequence[int], size: int, stride: int) -> dict[str, str]:
    """The pooling output size filled in, with only the terms pooling has: floor((n − k) / s) + 1.

    Pooling here has no padding and no dilation, so the formula shows neither
    (the convolution formula with p = 0 and d = 1 gives the same numbers).
    Returns {"rows": text, "columns": text}; raises UserError when the window does not fit.
    """
    height, width = image_shape[:2]
    return {
        axis: f"floor(({n} − {size}) / {stride}) + 1 = {output_size(n, size, 0, stride, 1)}"
        for axis, n in (("rows", height), ("columns", width))
    }


def _zeros_phrase(count: int, unit: str) -> str:
    return f"{count} {unit}{'' if count == 1 else 's'}"


def padding_in_words(padding) -> str:
    """((top, bottom), (left, right)) zero padding as a plain phrase, e.g. "no padding",
    "1 row and column of zeros on every side", "zeros added: 1 row at the bottom, 1 column on the right"."""
    (top, bottom), (left, right) = padding
    if top == bottom == left == right:
        if top == 0:
            return "no padding"
        return f"{_zeros_phrase(top, 'row')} and column{'' if top == 1 else 's'} of zeros on every side"
    parts = [
        f"{_zeros_phrase(count, unit)} {where}"
        for count, unit, where in (
            (top, "row", "at the top"),
            (bottom, "row", "at the bottom"),
            (left, "column", "on the left"),
            (right, "column", "on the right"),
        )
        if count
    ]
    return "zeros added: " + ", ".join(parts)


@dataclass(frozen=True)
class WindowBreakdown:
    """One output value of a convolution, written out.

    Attributes:
        step: index of the window in visiting order (left to right, then down).
        out_row, out_col: where the value lands in the feature map.
        rows, cols: the padded-input rows and columns the kernel's taps read.
        padding: ((top, bottom), (left, right)) zeros added to the input.
        window: (k, k, channels) input values under the kernel.
        kernel: (k, k, channels) weights.
        products: window * kernel, element by element.
        channel_sums: (channels,) sum of the products of each channel.
        total: the output value, the sum over all channels.
    """

    step: int
    out_row: int
    out_col: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    padding: tuple[tuple[int, int], tuple[int, int]]
    window: np.ndarray
    kernel: np.ndarray
    products: np.ndarray
    channel_sums: np.ndarray
    total: float


def window_breakdown(x, kernel, spec: ConvSpec, step: int) -> WindowBreakdown:
    """The dot product behind one feature-map value, tap by tap and channel by channel.

    Args:
        x: (height, width) or (height, width, channels) input.
        kernel: (k, k) shared by all channels, or (k, k, channels): one filter.
        spec: stride, padding and dilation.
        step: 0-based window index in the order the kernel visits them:
            left to right along a row, then down to the next row.
    """
    image = _as_image(x)
    bank = _as_filter_bank(kernel, image.shape[2])
    if bank.shape[3] != 1:
        raise UserError("The dot product is written out for one filter at a time.")
    kernel_size = bank.shape[0]
    padded, padding = _checked_padded_input(image, kernel_size, spec)
    out_height, out_width = feature_map_shape(image.shape[0], image.shape[1], kernel_size, spec)
    step = _require_whole_number(step, "Window step", 0)
    if step >= out_height * out_width:
        raise UserError(f"There are only {out_height * out_width} windows (got step {step}).")
    out_row, out_col = divmod(step, out_width)
    taps = np.arange(kernel_size) * spec.dilation
    rows = out_row * spec.stride + taps
    cols = out_col * spec.stride + taps
    window = padded[np.ix_(rows, cols)]
    weights = bank[..., 0]
    products = window * weights
    channel_sums = products.sum(axis=(0, 1))
    return WindowBreakdown(
        step=step,
        out_row=int(out_row),
        out_col=int(out_col),
        rows=tuple(int(r) for r in rows),
        cols=tuple(int(c) for c in cols),
        padding=padding,
        window=window,
        kernel=weights,
        products=products,
        channel_sums=channel_sums,
        total=float(channel_sums.sum()),
    )


def format_number(value: float) -> str:
    """Short text for a number, never in exponent form: integers as they are, others to 3 significant
    digits (whole numbers from 1000 up), e.g. 1000, 1235, 0.5, -3.14, 0.000123; ∞ and "not a number" in words."""
    value = float(value)
    if not math.isfinite(value):
        return "not a number" if math.isnan(value) else ("∞" if value > 0 else "-∞")
    if value.is_integer():
        return str(int(value))
    if abs(value) >= 1000:
        return str(round(value))
    return np.format_float_positional(value, precision=3, unique=False, fractional=False, trim="-")


def _signed(value: float) -> str:
    """A number for a product term: negatives in parentheses, e.g. 3×(-1)."""
    return f"({format_number(value)})" if value < 0 else format_number(value)


def dot_product_lines(breakdown: WindowBreakdown, channel_names: Sequence[str] = ("R", "G", "B")) -> list[str]:
    """The dot product as text: one line per channel, then the sum of channels.

    Each term is ``pixel×weight``; a single-channel input gives one line.
    """
    channels = breakdown.window.shape[2]
    names = list(channel_names) if channels == len(channel_names) else [f"channel {i}" for i in range(channels)]
    lines = []
    for channel in range(channels):
        terms = " + ".join(
            f"{format_number(pixel)}×{_signed(weight)}"
            for pixel, weight in zip(breakdown.window[..., channel].ravel(), breakdown.kernel[..., channel].ravel())
        )
        prefix = f"{names[channel]}: " if channels > 1 else ""
        lines.append(f"{prefix}{terms} = {format_number(breakdown.channel_sums[channel])}")
    if channels > 1:
        sums = " + ".join(format_number(value) for value in breakdown.channel_sums)
        lines.append(f"sum of channels: {sums} = {format_number(breakdown.total)}")
    return lines


# --------------------------------------------------------------------------
# ReLU and pooling
# --------------------------------------------------------------------------


def relu(x) -> np.ndarray:
    """max(0, x) element by element: negatives become 0, the rest pass unchanged."""
    return np.maximum(np.asarray(x, dtype=float), 0.0)


def count_negatives(x) -> int:
    """How many values ReLU will set to zero."""
    return int(np.count_nonzero(np.asarray(x) < 0))


def _pool_windows(x, size: int, stride: int | None) -> tuple[np.ndarray, int]:
    """(out_h, out_w, channels, size, size) views of the pooling windows, and the stride.

    Pooling uses "valid" padding, as keras' pooling layers do by default.
    """
    image = _as_image(x)
    size = _require_whole_number(size, "Pool size", 1)
    stride = size if stride is None else _require_whole_number(stride, "Stride", 1)
    for n in image.shape[:2]:
        if size > n:
            raise UserError(f"A {size}x{size} pool does not fit in an input {n} pixels wide.")
    return _windows(image, size, stride, 1), stride


def _restore_rank(result: np.ndarray, x) -> np.ndarray:
    """Drop the channel axis again when the input had none."""
    return result[..., 0] if np.ndim(x) == 2 else result


def max_pool(x, size: int = 2, stride: int | None = None) -> np.ndarray:
    """The largest value of each size x size window (stride defaults to size)."""
    windows, _ = _pool_windows(x, size, stride)
    return _restore_rank(windows.max(axis=(3, 4)), x)


def avg_pool(x, size: int = 2, stride: int | None = None) -> np.ndarray:
    """The mean of each size x size window (stride defaults to size)."""
    windows, _ = _pool_windows(x, size, stride)
    return _restore_rank(windows.mean(axis=(3, 4)), x)


@dataclass(frozen=True)
class PoolResult:
    """Max pooling with where each maximum came from.

    Attributes:
        values: pooled output, same rank as the input.
        rows, cols: input coordinates of the chosen (maximum) element of each
            window, same shape as `values`; on ties the first in reading order.
    """

    values: np.ndarray
    rows: np.ndarray
    cols: np.ndarray


def max_pool_with_argmax(x, size: int = 2, stride: int | None = None) -> PoolResult:
    """Max pooling plus the input position of each window's maximum."""
    windows, stride = _pool_windows(x, size, stride)
    out_h, out_w, channels = windows.shape[:3]
    flat = windows.reshape(out_h, out_w, channels, size * size)
    offsets = flat.argmax(axis=-1)
    values = np.take_along_axis(flat, offsets[..., np.newaxis], axis=-1)[..., 0]
    row_offset, col_offset = np.divmod(offsets, size)
    rows = np.arange(out_h)[:, None, None] * stride + row_offset
    cols = np.arange(out_w)[None, :, None] * stride + col_offset
    return PoolResult(
        values=_restore_rank(values, x),
        rows=_restore_rank(rows, x),
        cols=_restore_rank(cols, x),
    )


@dataclass(frozen=True)
class PoolWindow:
    """One pooling window of a 2-D input, with its maximum and its mean.

    Attributes:
        step: index of the window in reading order.
        out_row, out_col: the output cell it fills.
        rows, cols: the input rows and columns it covers.
        values: (size, size) input values under the window.
        max_value: the largest value; max_row, max_col: where it is in the
            input (first in reading order on ties).
        mean: the average of `values`.
    """

    step: int
    out_row: int
    out_col: int
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    values: np.ndarray
    max_value: float
    max_row: int
    max_col: int
    mean: float


def pool_window(x, size: int, stride: int | None, step: int) -> PoolWindow:
    """The `step`-th pooling window (reading order) of a 2-D input, written out."""
    grid = np.asarray(x, dtype=float)
    if grid.ndim != 2:
        raise UserError("Pooling windows are written out for one 2-D feature map.")
    stride = size if stride is None else stride
    out_height = output_size(grid.shape[0], size, 0, stride)
    out_width = output_size(grid.shape[1], size, 0, stride)
    step = _require_whole_number(step, "Window step", 0)
    if step >= out_height * out_width:
        raise UserError(f"There are only {out_height * out_width} windows (got step {step}).")
    out_row, out_col = divmod(step, out_width)
    rows = tuple(range(out_row * stride, out_row * stride + size))
    cols = tuple(range(out_col * stride, out_col * stride + size))
    values = grid[np.ix_(rows, cols)]
    max_offset_row, max_offset_col = divmod(int(values.argmax()), size)
    return PoolWindow(
        step=step,
        out_row=int(out_row),
        out_col=int(out_col),
        rows=rows,
        cols=cols,
        values=values,
        max_value=float(values.max()),
        max_row=rows[max_offset_row],
        max_col=cols[max_offset_col],
        mean=float(values.mean()),
    )


def pool_window_lines(window: PoolWindow) -> list[str]:
    """Max and average of one pooling window, written out as text."""
    listed = ", ".join(format_number(value) for value in window.values.ravel())
    added = " + ".join(format_number(value) for value in window.values.ravel())
    return [
        f"window rows {window.rows[0]}-{window.rows[-1]}, columns {window.cols[0]}-{window.cols[-1]}",
        f"max({listed}) = {format_number(window.max_value)}  (at row {window.max_row}, column {window.max_col})",
        f"average = ({added}) / {window.values.size} = {format_number(window.mean)}",
    ]


# --------------------------------------------------------------------------
# Flatten, dense, softmax
# --------------------------------------------------------------------------


def flatten(x) -> np.ndarray:
    """All values in one vector, row by row (channels last, as keras Flatten)."""
    return np.asarray(x, dtype=float).reshape(-1)


def dense(x, weights, bias=None) -> np.ndarray:
    """A fully connected layer: every output is a weighted sum of every input, plus a bias.

    Args:
        x: (inputs,) vector.
        weights: (inputs, outputs) matrix.
        bias: optional (outputs,) vector.
    """
    vector = np.asarray(x, dtype=float)
    matrix = np.asarray(weights, dtype=float)
    if matrix.ndim != 2 or matrix.shape[0] != vector.shape[-1]:
        raise UserError(
            f"A dense layer on {vector.shape[-1]} inputs needs a weight matrix with "
            f"{vector.shape[-1]} rows (got shape {matrix.shape})."
        )
    result = vector @ matrix
    return result if bias is None else result + np.asarray(bias, dtype=float)


def softmax(logits) -> np.ndarray:
    """Scores -> probabilities between 0 and 1 that sum to 1 (along the last axis)."""
    scores = np.asarray(logits, dtype=float)
    # Subtracting the maximum leaves the result unchanged and keeps exp() from overflowing.
    shifted = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


# --------------------------------------------------------------------------
# Kernels
# --------------------------------------------------------------------------


def _identity(size: int) -> np.ndarray:
    kernel = np.zeros((size, size))
    kernel[size // 2, size // 2] = 1.0
    return kernel


def _box_blur(size: int) -> np.ndarray:
    return np.full((size, size), 1.0 / size**2)


def _edge(size: int) -> np.ndarray:
    # Centre minus its neighbours: 0 on flat areas, large where intensity changes.
    return size**2 * _identity(size) - np.ones((size, size))


def _sharpen(size: int) -> np.ndarray:
    # The pixel plus its edge response: flat areas unchanged, edges boosted.
    return _identity(size) + _edge(size)


def _sobel_x(size: int) -> np.ndarray:
    # Smooth down the rows (binomial weights), differentiate across the columns:
    # the 3x3 case is [[-1, 0, 1], [-2, 0, 2], [-1, 0, 1]]; 5 and 7 as in OpenCV.
    derivative = np.convolve(_binomial(size - 1), [-1.0, 1.0])
    return np.outer(_binomial(size), derivative)


def _binomial(length: int) -> np.ndarray:
    """Row `length - 1` of Pascal's triangle, e.g. 3 -> [1, 2, 1]."""
    row = np.array([1.0])
    for _ in range(length - 1):
        row = np.convolve(row, [1.0, 1.0])
    return row


def _sobel_y(size: int) -> np.ndarray:
    return _sobel_x(size).T


def _report_example(size: int) -> np.ndarray:
    return REPORT_EXAMPLE_KERNEL.copy()


# name -> (builder, sizes where the kernel means something)
_PRESETS = {
    "report example": (_report_example, (3,)),
    "identity": (_identity, (1, 3, 5, 7)),
    "edge": (_edge, (3, 5, 7)),
    "sharpen": (_sharpen, (3, 5, 7)),
    "box blur": (_box_blur, (1, 3, 5, 7)),
    "Sobel x": (_sobel_x, (3, 5, 7)),
    "Sobel y": (_sobel_y, (3, 5, 7)),
}
KERNEL_PRESETS = tuple(_PRESETS)


def preset_sizes(name: str) -> tuple[int, ...]:
    """The odd kernel sizes for which the preset `name` is defined."""
    if name not in _PRESETS:
        raise UserError(f'Unknown kernel "{name}": choose one of {", ".join(KERNEL_PRESETS)}.')
    return _PRESETS[name][1]


def kernel_preset(name: str, size: int = 3) -> np.ndarray:
    """A hand-made kernel: the report's example, identity, edge, sharpen, box blur, Sobel x or Sobel y.

    Sobel x responds to left-to-right increases in brightness (vertical edges),
    Sobel y to top-to-bottom ones.
    """
    sizes = preset_sizes(name)
    size = _require_whole_number(size, "Kernel size", 1)
    if size not in sizes:
        raise UserError(f"The {name} kernel is defined for sizes {', '.join(map(str, sizes))} (got {size}).")
    return _PRESETS[name][0](size)


MAX_KERNEL_WEIGHT = 1000


def kernel_from_grid(grid) -> np.ndarray:
    """Check a user-edited kernel grid and return it as a float array.

    The grid must be square, of odd size 1..7 (so it has a centre pixel), and
    hold only numbers from -MAX_KERNEL_WEIGHT to MAX_KERNEL_WEIGHT (so sums of pixels times
    weights stay readable and finite).
    """
    try:
        kernel = np.asarray(grid, dtype=float)
    except (TypeError, ValueError):
        raise UserError("Every kernel cell must hold a number.") from None
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1]:
        raise UserError(f"A kernel must be a square grid (got shape {kernel.shape}).")
    size = kernel.shape[0]
    if size % 2 == 0 or not 1 <= size <= 7:
        raise UserError(f"A kernel must have an odd size from 1 to 7, so it has a centre (got {size}).")
    if not np.all(np.isfinite(kernel)):
        raise UserError("Every kernel cell must hold a number (empty cells are not allowed).")
    if np.abs(kernel).max() > MAX_KERNEL_WEIGHT:
        raise UserError(
            f"Kernel weights go from -{MAX_KERNEL_WEIGHT} to {MAX_KERNEL_WEIGHT} (got {np.abs(kernel).max():.3g})."
        )
    return kernel


# --------------------------------------------------------------------------
# Why a CNN needs fewer weights than a dense network
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class WeightComparison:
    """Weights of one dense neuron versus one convolution filter on the same image.

    Attributes:
        dense_neuron_weights: height * width * channels (one per input value).
        conv_filter_weights: k * k * channels, whatever the image size.
        ratio: how many times more weights the dense neuron needs.
    """

    dense_neuron_weights: int
    conv_filter_weights: int
    ratio: float


def weight_comparison(height: int, width: int, channels: int, kernel_size: int) -> WeightComparison:
    """Count the weights (biases aside) of one dense neuron and one k x k filter.

    The report's example: a 200x200x3 image gives 120,000 weights per dense
    neuron, while a 3x3x3 filter has 27 and is reused at every position.
    """
    height = _require_whole_number(height, "Image height", 1)
    width = _require_whole_number(width, "Image width", 1)
    channels = _require_whole_number(channels, "Channels", 1)
    kernel_size = _require_whole_number(kernel_size, "Filter size", 1)
    dense_weights = height * width * channels
    conv_weights = kernel_size * kernel_size * channels
    return WeightComparison(dense_weights, conv_weights, dense_weights / conv_weights)


# --------------------------------------------------------------------------
# A tiny untrained network, end to end (report figures 14-15)
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class NetworkStage:
    """One step of `toy_network`: its name, what it does, and its output."""

    name: str
    description: str
    values: np.ndarray

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.values.shape)


def toy_network(
    image,
    num_filters: int = 4,
    kernel_size: int = 3,
    pool_size: int = 2,
    num_classes: int = NUM_CLASSES,
    seed: int = 0,
) -> list[NetworkStage]:
    """Run image -> conv -> ReLU -> max pool -> flatten -> dense -> softmax.

    The weights are random (seeded, so the same seed gives the same numbers)
    and untrained: the probabilities show the mechanics, not a prediction.

    Args:
        image: (height, width, channels) pixels 0-255.
        num_filters: filters in the convolution layer.
        kernel_size: odd filter size; "same" padding keeps height and width.
        pool_size: max-pooling window and stride.
        num_classes: outputs of the dense layer.
        seed: random seed of the weights.

    Returns:
        The stages in order, starting with the input scaled to 0-1.
    """
    num_filters = _require_whole_number(num_filters, "Number of filters", 1)
    num_classes = _require_whole_number(num_classes, "Number of classes", 1)
    rng = np.random.default_rng(_require_whole_number(seed, "Seed", 0))
    scaled = _as_image(image) / 255.0
    channels = scaled.shape[2]
    # Glorot-like scale keeps the values in a readable range at every step.
    filters = rng.normal(
        0, np.sqrt(2 / (kernel_size**2 * (channels + num_filters))), (kernel_size, kernel_size, channels, num_filters)
    )
    feature_maps = conv2d(scaled, filters, ConvSpec(padding="same"))
    activated = relu(feature_maps)
    pooled = max_pool(activated, pool_size)
    vector = flatten(pooled)
    weights = rng.normal(0, np.sqrt(2 / (vector.size + num_classes)), (vector.size, num_classes))
    scores = dense(vector, weights, np.zeros(num_classes))
    return [
        NetworkStage("input", "pixels scaled from 0-255 to 0-1", scaled),
        NetworkStage(
            "convolution",
            f"{num_filters} filters of {kernel_size}x{kernel_size}x{channels}, 'same' padding",
            feature_maps,
        ),
        NetworkStage("ReLU", "negatives set to 0", activated),
        NetworkStage("max pooling", f"{pool_size}x{pool_size} windows, stride {pool_size}", pooled),
        NetworkStage("flatten", "every value in one long vector", vector),
        NetworkStage("dense", f"{num_classes} neurons, each connected to all {vector.size} values", scores),
        NetworkStage("softmax", "scores turned into probabilities that sum to 1", softmax(scores)),
    ]
