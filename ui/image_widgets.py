"""Widgets that give a page one image: a bundled CIFAR-10 test image or the user's upload.

Shared by the Learn and Inspect pages. Each returns (RGB uint8 array,
description), or None until a valid upload; a bad upload gets one plain
message. The drawing helpers behind them are in `cnn.pictures`. No TensorFlow.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import streamlit as st

from cnn import CLASS_NAMES
from cnn.errors import UserError
from cnn.images import FORMATS_IN_WORDS, UPLOAD_EXTENSIONS, decode_image
from cnn.pictures import fit_within
from ui.resources import get_sample, show_user_error

SAMPLE = "A CIFAR-10 test image"
UPLOAD = "Upload an image"
UPLOAD_PROMPT = f"Drop an image ({FORMATS_IN_WORDS})"


def sample_image(key: str, default_index: int = 0) -> tuple[np.ndarray, str]:
    """A number input choosing one bundled test image; returns (32x32x3 uint8, description)."""
    sample = get_sample()
    index = st.number_input(
        f"Test image number (0-{len(sample) - 1})",
        min_value=0,
        max_value=len(sample) - 1,
        value=default_index,
        key=f"{key}_sample_index",
    )
    return sample.images[index], f"CIFAR-10 test image {index} (a {CLASS_NAMES[int(sample.labels[index])]})"


def uploaded_image(key: str, purpose: str, max_side: int | None = None) -> tuple[np.ndarray, str] | None:
    """A file uploader; returns (height x width x 3 uint8, description), or None until a valid upload.

    Args:
        key: prefix of the widget's key.
        purpose: how the hint shown before an upload ends, e.g. "to see it convolved".
        max_side: shrink larger pictures (keeping their shape) to fit this square, and say so.
    """
    upload = st.file_uploader(UPLOAD_PROMPT, type=UPLOAD_EXTENSIONS, key=f"{key}_upload")
    if upload is None:
        st.info(f"Upload an image {purpose}.")
        return None
    try:
        image = decode_image(upload.getvalue())
    except UserError as error:
        show_user_error(error)
        return None
    if max_side is not None:
        fitted, shrunk = fit_within(image, max_side)
        if shrunk:
            st.caption(
                f"Your {image.width}x{image.height} image was shrunk to {fitted.width}x{fitted.height} "
                "so that every change redraws quickly."
            )
        image = fitted
    return np.asarray(image), f"your image ({image.width}x{image.height})"


def image_chooser(
    key: str,
    sources: Sequence[str] = (SAMPLE, UPLOAD),
    *,
    purpose: str,
    label: str = "Image",
    examples: Mapping[str, tuple[np.ndarray, str]] | None = None,
    max_side: int | None = None,
    horizontal: bool = False,
) -> tuple[np.ndarray, str] | None:
    """A radio over the sources; returns (image array, description), or None until a valid upload.

    Args:
        key: prefix of the widgets' keys.
        sources: the radio's options: SAMPLE, UPLOAD and the names of `examples`.
        purpose: what an upload is for, ending the hint shown before one (see `uploaded_image`).
        label: the radio's label.
        examples: fixed inputs by option name, e.g. the report's 5x5 example.
        max_side: uploads larger than this square are shrunk to fit it.
        horizontal: lay the radio's options out in a row.
    """
    source = st.radio(label, sources, horizontal=horizontal, key=f"{key}_source")
    if examples and source in examples:
        return examples[source]
    if source == SAMPLE:
        return sample_image(key)
    return uploaded_image(key, purpose, max_side)
