"""Widgets shared by the Learn pages: pick an input image, kernels and convolution settings.

Each helper draws its widgets (keys prefixed by the page's `key`) and returns
plain values, so the pages read like a description of the UI. No TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnn import ops
from ui.image_widgets import SAMPLE, UPLOAD, image_chooser

REPORT_EXAMPLE = "The report's 5x5 example"
# Larger uploads are shrunk to fit: the page redraws on every change.
MAX_UPLOAD_SIDE = 256
KERNEL_SIZES = (1, 3, 5, 7)
CUSTOM_KERNEL = "your kernel"  # the name of the edited grid, in menus, tabs and captions


def input_image(key: str, sources=(REPORT_EXAMPLE, SAMPLE, UPLOAD)) -> tuple[np.ndarray, str] | None:
    """A radio over the report's 5x5 example, a test image and an upload; returns (image, description) or None."""
    return image_chooser(
        key,
        sources,
        label="Input",
        purpose="to see it convolved",
        max_side=MAX_UPLOAD_SIDE,
        examples={REPORT_EXAMPLE: (ops.REPORT_EXAMPLE_INPUT, "the report's 5x5 example input")},
    )


def kernels(key: str, default_presets=("report example",)) -> list[tuple[str, np.ndarray]]:
    """Preset kernels (one feature map each) or one editable grid; returns [(name, k x k array)].

    Raises UserError when the edited grid holds something other than numbers.
    """
    size = st.select_slider("Kernel size", KERNEL_SIZES, value=3, key=f"{key}_kernel_size")
    available = [name for name in ops.KERNEL_PRESETS if size in ops.preset_sizes(name)]
    mode = st.radio("Kernels", ["Presets", "Edit my own"], horizontal=True, key=f"{key}_kernel_mode")
    if mode == "Presets":
        names = st.multiselect(
            "Presets (one feature map each)",
            available,
            default=[name for name in default_presets if name in available] or available[:1],
            key=f"{key}_presets_{size}",  # one widget per size: options differ by size
        )
        return [(name, ops.kernel_preset(name, size)) for name in names]
    start = st.selectbox("Start from", available, key=f"{key}_grid_start_{size}")
    starting_grid = pd.DataFrame(ops.kernel_preset(start, size), columns=[str(c) for c in range(size)])
    edited = st.data_editor(starting_grid, key=f"{key}_grid_{start}_{size}", width="content")
    return [(CUSTOM_KERNEL, ops.kernel_from_grid(edited.to_numpy()))]


def kernel_phrase(name: str) -> str:
    """How a caption names a kernel: "the Sobel x kernel", but "your kernel" for the edited grid."""
    return CUSTOM_KERNEL if name == CUSTOM_KERNEL else f"the {name} kernel"


def conv_settings(key: str) -> ops.ConvSpec:
    """Stride, padding (valid, same or custom p) and dilation widgets; returns a ConvSpec."""
    stride = st.slider("Stride", 1, 4, 1, key=f"{key}_stride")
    padding_mode = st.radio("Padding", ["valid", "same", "custom p"], horizontal=True, key=f"{key}_padding")
    padding = (
        st.number_input("p: rows/columns of zeros on each side", 0, 5, 1, key=f"{key}_padding_p")
        if padding_mode == "custom p"
        else padding_mode
    )
    dilation = st.slider("Dilation (gap between kernel taps)", 1, 3, 1, key=f"{key}_dilation")
    return ops.ConvSpec(stride=stride, padding=padding, dilation=dilation)
