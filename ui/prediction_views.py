"""Widgets and result cards of the Predict page: gather images from every source, show each prediction.

Each input becomes an `InputImage` whose `load()` does the untrusted work
(decoding, downloading) only when its card is drawn, so a bad file or URL
fails inside its own card and every other image still gets its answer.
What a load decoded (or the error it met) is kept in the session for as long
as its upload or link stays on the page, so a rerun (another policy, model
or sample) neither downloads nor decodes again.

Results come as a compact grid first (the picture, what the model sees,
top-3, right or wrong when the true class is known), about a tenth of the
height of full cards; the full card (all ten probabilities, Grad-CAM) is
drawn for one picture at a time, on demand.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable

import numpy as np
import pandas as pd
import streamlit as st
from PIL import Image

from cnn import CLASS_NAMES, IMAGE_SIZE
from cnn.errors import UserError
from cnn.fetch import FetchConfig, fetch_url
from cnn.images import (
    FORMATS_IN_WORDS,
    ORIGINAL_SIZE_KEY,
    RESIZE_POLICIES,
    UPLOAD_EXTENSIONS,
    decode_image,
)
from cnn.pictures import enlarge, fit_within, overlay
from ui import plots
from ui.image_widgets import decoded_once, file_key, forget_all_but
from ui.resources import get_sample, show_user_error

SHOWN_SIDE = 192  # pixels: how large the 32x32 pictures are drawn
SHOWN_SCALE = SHOWN_SIDE // IMAGE_SIZE  # screen pixels per model pixel
POLICY_LABELS = {"squash": "Squash to a square", "center_crop": "Crop the centre square"}
# Files answered per upload: each costs a decode and a prediction on a server
# the whole class shares, and 20 cards are already a long page.
MAX_UPLOADS = 20
DECODED_KEY = "predict_decoded"  # session state: source key -> decoded image or its UserError


@dataclass(frozen=True)
class InputImage:
    """One image to predict: a label for its card, a loader that may raise UserError, and its
    true class when known (the CIFAR-10 samples)."""

    label: str
    load: Callable[[], Image.Image]
    true_class: str | None = None


def policy_picker() -> str:
    """The resize-policy selectbox, with what each policy does written under it."""
    policy = st.selectbox(
        "How a picture becomes 32x32", list(RESIZE_POLICIES), format_func=POLICY_LABELS.get, key="predict_policy"
    )
    st.caption(RESIZE_POLICIES[policy] + " Training images were already 32x32, so this only matters for yours.")
    return policy


def fetch_image(url: str, config: FetchConfig = FetchConfig()) -> Image.Image:
    """Download and decode the image at `url` (FetchError or ImageError on failure).

    The page always uses the default config, which refuses local and private
    addresses; tests pass `allow_loopback` to reach their own server.
    """
    return decode_image(fetch_url(url, config=config))


def _file_input(label: str, upload) -> tuple[str, InputImage]:
    """(cache key, input) of an uploaded file or camera photo."""
    key = file_key(upload)
    return key, InputImage(label, lambda: decoded_once(DECODED_KEY, key, upload.getvalue))


def _answered_uploads(uploads: list) -> list:
    """The first MAX_UPLOADS files, with a warning naming how many were left out."""
    if len(uploads) > MAX_UPLOADS:
        ignored = len(uploads) - MAX_UPLOADS
        st.warning(
            f"You gave {len(uploads)} files, and one upload answers at most {MAX_UPLOADS}: the first "
            f"{MAX_UPLOADS} are answered below and the other {ignored} were ignored. Remove some and "
            "upload the rest in another round.",
            icon=":material/block:",
        )
    return uploads[:MAX_UPLOADS]


def collect_inputs() -> list[InputImage]:
    """Tabs for the four sources; returns every image given, in tab order."""
    upload_tab, link_tab, camera_tab, sample_tab = st.tabs(["Upload", "Link", "Camera", "CIFAR-10 samples"])
    keyed: dict[str, InputImage] = {}
    with upload_tab:
        uploads = st.file_uploader(
            f"Drop one or several images ({FORMATS_IN_WORDS}; of a GIF, its first frame)",
            type=UPLOAD_EXTENSIONS,
            accept_multiple_files=True,
            key=upload_key(),
        )
        keyed.update(
            _file_input(f"Upload: {upload.name}", upload) for upload in _answered_uploads(unique_uploads(uploads or []))
        )
    with link_tab:
        url = st.text_input(
            "Address of an image (http or https)", key="predict_url", placeholder="https://example.org/cat.jpg"
        ).strip()
        st.caption("The address must be public: local and private network addresses are refused.")
        if url:
            url_key = f"url:{url}"
            keyed[url_key] = InputImage(
                f"Link: {url}", lambda: decoded_once(DECODED_KEY, url_key, lambda: fetch_url(url))
            )
    with camera_tab:
        if st.toggle("Turn on the camera", key="predict_camera_on"):
            photo = st.camera_input("Take a photo", key="predict_camera")
            if photo is not None:
                keyed.update([_file_input("Camera photo", photo)])
    forget_all_but(DECODED_KEY, set(keyed))
    found = list(keyed.values())
    with sample_tab:
        sample = get_sample()
        picks = st.multiselect(
            "Test images (the bundled exact CIFAR-10 test images 0-999)",
            range(len(sample)),
            key="predict_samples",
            format_func=lambda index: f"{index}: {CLASS_NAMES[int(sample.labels[index])]}",
        )
        found += [
            InputImage(
                f"CIFAR-10 test image {index} (true class: {CLASS_NAMES[int(sample.labels[index])]})",
                lambda index=index: Image.fromarray(sample.images[index]),
                true_class=CLASS_NAMES[int(sample.labels[index])],
            )
            for index in picks
        ]
    return found


def top_table(top) -> pd.DataFrame:
    """The report's chapter IV table: Rank, Class, Probability."""
    return pd.DataFrame(
        {
            "Rank": [ranked.rank for ranked in top],
            "Class": [ranked.class_name for ranked in top],
            "Probability": [f"{ranked.probability:.1%}" for ranked in top],
        }
    )


def show_prediction(item: InputImage, predictor, policy: str, index: int) -> bool:
    """One bordered card: the image, what the model sees, top-3, all ten bars, Grad-CAM.

    A UserError from loading or predicting is shown in the card; returns
    whether the card got a prediction.
    """
    from cnn.explain import LOW_CONFIDENCE, explain_prediction

    with st.container(border=True):
        st.markdown(f"**{item.label}**")
        try:
            image = item.load()
            result = explain_prediction(predictor, image, policy=policy)
        except UserError as error:
            show_user_error(error)
            return False
        original, seen, cam = st.columns(3)
        original.image(fit_within(image, 2 * SHOWN_SIDE)[0], width=SHOWN_SIDE)  # never send megapixels
        width, height = image.info.get(ORIGINAL_SIZE_KEY, image.size)
        original.caption(f"The original, {width}x{height} pixels.")
        seen.image(enlarge(result.model_input, SHOWN_SCALE))
        seen.caption(
            "What the model sees: the 32x32 input, made by the same preprocessing as in training "
            f"({POLICY_LABELS[policy].lower()}), drawn large."
        )
        cam.image(enlarge(overlay(result.model_input, result.cam.heatmap), SHOWN_SCALE))
        cam.caption(
            f"Grad-CAM for '{CLASS_NAMES[result.cam.class_index]}' (approximate): bright yellow marks "
            f"the regions that raised this class's score most, dark purple the least. {result.cam.note}"
        )
        best = result.top[0]
        st.markdown(f"Top guess: **{best.class_name}** with probability **{best.probability:.1%}**.")
        if result.low_confidence:
            st.warning(
                f"Low confidence: the top probability is below {LOW_CONFIDENCE:.0%}. The model only knows "
                f"these 10 classes ({', '.join(CLASS_NAMES)}), so it may be guessing, especially if the "
                "picture shows none of them.",
                icon=":material/help:",
            )
        table, bars = st.columns([1, 2])
        table.dataframe(top_table(result.top), hide_index=True)
        table.caption("The three most probable classes, as in the report's chapter IV.")
        bars.plotly_chart(
            plots.probability_bars(result.probabilities, CLASS_NAMES, "All ten classes"), key=f"predict_bars_{index}"
        )
        bars.caption(
            "Probability of each of the ten classes (they add up to 100%): "
            + ", ".join(f"{name} {value:.1%}" for name, value in zip(CLASS_NAMES, result.probabilities))
            + "."
        )
        return True


# ---------------------------------------------------------------- adding each picture once, clearing them all

UPLOAD_ROUND = "predict_uploads_round"  # bumped by Clear: a file uploader is emptied by giving it a new key


def upload_key() -> str:
    """The uploader's key: "predict_uploads" until the first Clear, then a fresh one per Clear."""
    round_number = st.session_state.get(UPLOAD_ROUND, 0)
    return "predict_uploads" if round_number == 0 else f"predict_uploads_{round_number}"


def unique_uploads(uploads: list) -> list:
    """The uploads with repeated pictures (same bytes, whatever the file name) left out, said in a caption."""
    first_by_digest: dict[str, str] = {}
    kept, repeats = [], []
    for upload in uploads:
        digest = hashlib.sha256(upload.getvalue()).hexdigest()
        if digest in first_by_digest:
            repeats.append(f"{upload.name} (the same picture as {first_by_digest[digest]})")
            continue
        first_by_digest[digest] = upload.name
        kept.append(upload)
    if repeats:
        st.caption("Added again, shown once: " + "; ".join(repeats) + ".")
    return kept


def _clear_inputs() -> None:
    st.session_state[UPLOAD_ROUND] = st.session_state.get(UPLOAD_ROUND, 0) + 1
    st.session_state["predict_url"] = ""
    st.session_state["predict_samples"] = []
    st.session_state["predict_camera_on"] = False


def clear_button() -> None:
    """Remove every picture given (uploads, link, camera, samples) in one click."""
    st.button("Clear all pictures", key="predict_clear", icon=":material/delete_sweep:", on_click=_clear_inputs)


# ---------------------------------------------------------------- the compact grid, details on demand

GRID_COLUMNS = 4
THUMBNAIL_SIDE = 96  # pixels (3 per model pixel): the picture and the 32x32 input side by side in a quarter of the page
THUMBNAIL_SCALE = THUMBNAIL_SIDE // IMAGE_SIZE
DETAILS = "predict_details"


@dataclass(frozen=True)
class Guess:
    """One picture's compact answer: the 32x32 input, its top-3 and whether the model may be guessing."""

    original: Image.Image
    model_input: np.ndarray
    top: list
    low_confidence: bool


def guess(item: InputImage, predictor, policy: str) -> Guess:
    """Load and predict one picture without Grad-CAM (the grid shows none). Raises UserError."""
    from cnn.explain import LOW_CONFIDENCE, TOP_K
    from cnn.inference import to_model_input

    image = item.load()
    model_input = to_model_input(image, policy)
    top = predictor.top(model_input[None], TOP_K)[0]
    return Guess(image, model_input, top, top[0].probability < LOW_CONFIDENCE)


def verdict(top, true_class: str | None) -> str | None:
    """Right or wrong in words and a sign (never colour alone), when the true class is known."""
    if true_class is None:
        return None
    article = "an" if true_class[0] in "aeiou" else "a"
    if top[0].class_name == true_class:
        return f"✓ Right: it is {article} {true_class}."
    return f"✗ Wrong: it is {article} {true_class}."


def show_compact_card(item: InputImage, predictor, policy: str) -> bool:
    """One small bordered card: label, picture, what the model sees, top-3, right/wrong. Returns success."""
    with st.container(border=True):
        st.markdown(f"**{item.label}**")
        try:
            result = guess(item, predictor, policy)
        except UserError as error:
            show_user_error(error)
            return False
        picture, seen = st.columns(2)
        picture.image(
            fit_within(result.original, 2 * THUMBNAIL_SIDE)[0],
            width=THUMBNAIL_SIDE,
            caption=f"original, {result.original.width}x{result.original.height}",
        )
        seen.image(enlarge(result.model_input, THUMBNAIL_SCALE), width=THUMBNAIL_SIDE, caption="the model's 32x32")
        st.markdown(
            "  \n".join(f"{ranked.rank}. **{ranked.class_name}** {ranked.probability:.1%}" for ranked in result.top)
        )
        said = verdict(result.top, item.true_class)
        if said is not None:
            st.markdown(said)
        if result.low_confidence:
            st.warning("Low confidence: it may be guessing.", icon=":material/help:")
        return True


def show_results(images: list[InputImage], predictor, policy: str) -> None:
    """The compact grid of every picture, then the full card of one picture chosen below it."""
    answered = []
    for start in range(0, len(images), GRID_COLUMNS):
        for index, column in zip(range(start, start + GRID_COLUMNS), st.columns(GRID_COLUMNS)):
            if index < len(images):
                with column:
                    if show_compact_card(images[index], predictor, policy):
                        answered.append(index)
    st.caption(
        "Each card: the picture, the 32x32 image the model really sees (the same preprocessing as in "
        f"training, {POLICY_LABELS[policy].lower()}), its three most probable classes and, for CIFAR-10 "
        "test images, whether the top class is right (✓) or wrong (✗)."
    )
    if not answered:
        return
    st.subheader("Details: all ten probabilities and Grad-CAM")
    chosen = st.selectbox("Picture", answered, format_func=lambda index: images[index].label, key=DETAILS)
    show_prediction(images[chosen], predictor, policy, chosen)
