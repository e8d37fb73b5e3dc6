"""Widgets shared by the Learn pages: pick an input image, kernels and convolution settings.

Each helper draws its widgets (keys prefixed by the page's `key`) and returns
plain values, so the pages read like a description of the UI. No TensorFlow.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from cnn import CLASS_NAMES, data, ops
from cnn.errors import UserError
from cnn.images import decode_image

REPORT_EXAMPLE = "The report's 5x5 example"
CIFAR_SAMPLE = "A CIFAR-10 test image"
UPLOAD = "Upload an image"
# Larger uploads are shrunk to fit: the page redraws on every change.
MAX_UPLOAD_SIDE = 256
KERNEL_SIZES = (1, 3, 5, 7)
CUSTOM_KERNEL = "your kernel"  # the name of the edited grid, in menus, tabs and captions


@st.cache_resource
def sample_images() -> data.Split:
    """The bundled 1,000 CIFAR-10 test images (read-only, shared by all sessions)."""
    return data.load_sample()


def fit_within(image: Image.Image, max_side: int = MAX_UPLOAD_SIDE) -> tuple[Image.Image, bool]:
    """Shrink `image` (keeping its shape) to fit max_side x max_side; say whether it shrank."""
    if max(image.size) <= max_side:
        return image, False
    smaller = image.copy()
    smaller.thumbnail((max_side, max_side))
    return smaller, True


def cifar_image(key: str, default_index: int = 0) -> tuple[np.ndarray, str]:
    """A number input choosing one bundled test image; returns (32x32x3 uint8, description)."""
    sample = sample_images()
    index = st.number_input(
        f"Test image number (0-{len(sample.labels) - 1})",
        min_value=0,
        max_value=len(sample.labels) - 1,
        value=default_index,
        key=f"{key}_sample_index",
    )
    label = CLASS_NAMES[int(sample.labels[index])]
    return sample.images[index], f"CIFAR-10 test image {index} (a {label})"


def uploaded_image(key: str) -> tuple[np.ndarray, str] | None:
    """A file uploader; returns (height x width x 3 uint8, description), or None until a valid upload."""
    upload = st.file_uploader(
        "Drop an image (PNG, JPEG, WEBP, BMP or GIF)",
        type=["png", "jpg", "jpeg", "webp", "bmp", "gif"],
        key=f"{key}_upload",
    )
    if upload is None:
        st.info("Upload an image to see it convolved.")
        return None
    try:
        image = decode_image(upload.getvalue())
    except UserError as error:
        st.error(str(error))
        return None
    fitted, shrunk = fit_within(image)
    if shrunk:
        st.caption(
            f"Your {image.width}x{image.height} image was shrunk to {fitted.width}x{fitted.height} "
            f"so that every change redraws quickly."
        )
    return np.asarray(fitted), f"your image ({fitted.width}x{fitted.height})"


def input_image(key: str, sources=(REPORT_EXAMPLE, CIFAR_SAMPLE, UPLOAD)) -> tuple[np.ndarray, str] | None:
    """Radio over the input sources; returns (image array, description) or None."""
    source = st.radio("Input", sources, key=f"{key}_source")
    if source == REPORT_EXAMPLE:
        return ops.REPORT_EXAMPLE_INPUT, "the report's 5x5 example input"
    if source == CIFAR_SAMPLE:
        return cifar_image(key)
    return uploaded_image(key)


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
