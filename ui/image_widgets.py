"""Widgets that give a page one image: a bundled CIFAR-10 test image or the user's upload.

Shared by the Learn and Inspect pages. Each returns (RGB uint8 array,
description), or None until a valid upload; a bad upload gets one plain
message. The drawing helpers behind them are in `cnn.pictures`. No TensorFlow.

An upload is decoded once per session (`decoded_once`, also used by the
Predict page): a rerun (any widget change) neither decodes it again nor takes
one of the server's shared decode slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Callable, Mapping, Sequence, TypeVar

import numpy as np
import streamlit as st
from PIL import Image

from cnn import CLASS_NAMES
from cnn.errors import UserError
from cnn.images import FORMATS_IN_WORDS, UPLOAD_EXTENSIONS, DecodeBusyError, decode_image
from cnn.pictures import fit_within
from ui.resources import get_sample, show_user_error

SAMPLE = "A CIFAR-10 test image"
UPLOAD = "Upload an image"
UPLOAD_PROMPT = f"Drop an image ({FORMATS_IN_WORDS})"

Prepared = TypeVar("Prepared")


def _as_decoded(image: Image.Image) -> Image.Image:
    return image


def decoded_once(
    store: str,
    key: str,
    read: Callable[[], bytes],
    prepare: Callable[[Image.Image], Prepared] = _as_decoded,
) -> Prepared:
    """`prepare(decode_image(read()))`, or the UserError met, remembered in this session under `key`.

    Args:
        store: the session-state key of the dict that remembers (one per page or widget).
        key: what is read, e.g. `file_key(upload)`; a rerun with the same key neither reads nor decodes.
        read: the untrusted bytes (an upload's `getvalue`, a download).
        prepare: what is kept of the decoded image (the image itself by default).

    A busy server (DecodeBusyError) is not remembered: the next rerun tries again.
    """
    remembered = st.session_state.setdefault(store, {})
    if key not in remembered:
        try:
            remembered[key] = prepare(decode_image(read()))
        except DecodeBusyError:
            raise
        except UserError as error:
            remembered[key] = error
    if isinstance(remembered[key], UserError):
        # Without its old traceback: raising the kept error on every rerun would otherwise lengthen it.
        raise remembered[key].with_traceback(None)
    return remembered[key]


def forget_all_but(store: str, keys: set[str]) -> None:
    """Drop what `store` remembers of uploads and links no longer on the page."""
    remembered = st.session_state.get(store, {})
    for key in set(remembered) - keys:
        del remembered[key]


def file_key(upload) -> str:
    """The `decoded_once` key of an uploaded file or camera photo: its file_id is new for every upload."""
    return f"file:{upload.file_id}"


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


@dataclass(frozen=True)
class _ShownUpload:
    """An upload as a page uses it: its pixels, how to name it, and the note saying it was shrunk ("" if not)."""

    pixels: np.ndarray  # read-only (numpy's view of a Pillow image): every rerun gets the same array
    description: str
    shrink_note: str


def _shown_upload(image: Image.Image, max_side: int | None) -> _ShownUpload:
    """The decoded upload shrunk (keeping its shape) to fit max_side x max_side, when given."""
    shrink_note = ""
    if max_side is not None:
        fitted, shrunk = fit_within(image, max_side)
        if shrunk:
            shrink_note = (
                f"Your {image.width}x{image.height} image was shrunk to {fitted.width}x{fitted.height} "
                "so that every change redraws quickly."
            )
        image = fitted
    return _ShownUpload(np.asarray(image), f"your image ({image.width}x{image.height})", shrink_note)


def _upload_store(key: str) -> str:
    """The session-state key under which `uploaded_image(key, ...)` keeps its decoded upload."""
    return f"{key}_decoded"


def uploaded_image(key: str, purpose: str, max_side: int | None = None) -> tuple[np.ndarray, str] | None:
    """A file uploader; returns (height x width x 3 uint8, description), or None until a valid upload.

    The upload is decoded and shrunk once: reruns reuse it (or its error) for as long as it stays.

    Args:
        key: prefix of the widget's key.
        purpose: how the hint shown before an upload ends, e.g. "to see it convolved".
        max_side: shrink larger pictures (keeping their shape) to fit this square, and say so.
    """
    upload = st.file_uploader(UPLOAD_PROMPT, type=UPLOAD_EXTENSIONS, key=f"{key}_upload")
    store = _upload_store(key)
    forget_all_but(store, set() if upload is None else {file_key(upload)})
    if upload is None:
        st.info(f"Upload an image {purpose}.")
        return None
    try:
        shown = decoded_once(store, file_key(upload), upload.getvalue, partial(_shown_upload, max_side=max_side))
    except UserError as error:
        show_user_error(error)
        return None
    if shown.shrink_note:
        st.caption(shown.shrink_note)
    return shown.pixels, shown.description


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
    if source != UPLOAD:  # the uploader is gone, and its file with it: free the decoded picture now
        forget_all_but(_upload_store(key), set())
    if examples and source in examples:
        return examples[source]
    if source == SAMPLE:
        return sample_image(key)
    return uploaded_image(key, purpose, max_side)
