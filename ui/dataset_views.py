"""Plotly figures and cached computations for the CIFAR-10 dataset page. No TensorFlow here.

Figures follow ui/plots.py: colour-blind-safe colours, labelled axes, numbers
as text where they fit, and line dashes (not colour alone) telling channels apart.
"""

from __future__ import annotations

import base64
import io
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
from PIL import Image

from cnn import CLASS_NAMES, augment, data, explore, pictures
from cnn.ops import format_number
from ui.plots import LINE_COLOR, OKABE_ITO

MAX_SHIFT = augment.MAX_SHIFT
PART_TITLES = {"train": "training", "val": "validation", "test": "test"}

# Okabe-Ito colours that also read as the channel they stand for, plus a distinct dash each.
CHANNEL_STYLES = {
    "red": dict(color=OKABE_ITO["vermillion"], dash="solid"),
    "green": dict(color=OKABE_ITO["bluish green"], dash="dash"),
    "blue": dict(color=OKABE_ITO["blue"], dash="dot"),
    "all channels": dict(color=OKABE_ITO["black"], dash="solid"),
}
TILE = 32  # CIFAR-10 images are 32x32
GAP = 2  # white pixels between tiles of a mosaic


@st.cache_data(max_entries=16, show_spinner="Counting pixel values...")
def cached_histogram(cache_key: str, _images: np.ndarray, per_channel: bool) -> explore.PixelHistogram:
    """`explore.pixel_histogram`, computed once per data part (`cache_key` names it; images aren't hashed)."""
    return explore.pixel_histogram(_images, per_channel=per_channel)


def image_grid(
    images: np.ndarray,
    rows: list[np.ndarray],
    row_labels: Sequence[str],
    column_labels: Sequence[str],
    title: str,
    *,
    x_title: str,
    y_title: str,
) -> go.Figure:
    """A labelled mosaic: row r shows `images[rows[r]]`; hover names the tile."""
    picture = pictures.mosaic(images, rows, gap=GAP)
    figure = go.Figure(go.Image(source=png_data_uri(picture), hoverinfo="skip"))
    figure.update_layout(title=title, height=int(90 + 58 * len(rows)), margin=dict(l=100, r=10, t=50, b=50))
    figure.update_xaxes(
        title_text=x_title,
        tickvals=pictures.tile_centers(len(column_labels), TILE, GAP),
        ticktext=list(column_labels),
        showgrid=False,
    )
    figure.update_yaxes(
        title_text=y_title,
        tickvals=pictures.tile_centers(len(rows), TILE, GAP),
        ticktext=list(row_labels),
        showgrid=False,
    )
    return figure


def png_data_uri(picture: np.ndarray) -> str:
    """A uint8 RGB array as an inline PNG: a third of the size of plotly's raw pixel array."""
    buffer = io.BytesIO()
    Image.fromarray(picture).save(buffer, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def histogram_figure(histogram: explore.PixelHistogram, normalized: bool, title: str) -> go.Figure:
    """One line per channel over the 256 pixel values, raw (0-255) or divided by 255 (0-1)."""
    x_values = histogram.values(normalized)
    figure = go.Figure()
    for name, counts, mean in zip(histogram.names, histogram.counts, histogram.means):
        style = CHANNEL_STYLES[name]
        shown_mean = mean / 255 if normalized else mean
        figure.add_trace(
            go.Scatter(
                x=x_values,
                y=counts,
                mode="lines",
                name=f"{name} (mean {shown_mean:.3g})",
                line=dict(color=style["color"], dash=style["dash"], width=2),
                hovertemplate=f"{name}: value %{{x}}, %{{y}} pixels<extra></extra>",
            )
        )
    figure.update_layout(title=title, height=360, margin=dict(l=60, r=20, t=50, b=50), legend=dict(title="channel"))
    figure.update_xaxes(
        title_text="pixel value ÷ 255 (what the model sees)" if normalized else "pixel value (0-255)",
        range=[0, 1] if normalized else [0, 255],
    )
    figure.update_yaxes(title_text="number of pixels")
    return figure


def class_balance_figure(counts: np.ndarray, class_names: Sequence[str], title: str) -> go.Figure:
    """Bars of images per class, each labelled with its count."""
    figure = go.Figure(
        go.Bar(
            x=list(class_names),
            y=[int(count) for count in counts],
            text=[f"{int(count):,}" for count in counts],
            textposition="outside",
            marker=dict(color=LINE_COLOR),
            hovertemplate="%{x}: %{y} images<extra></extra>",
        )
    )
    figure.update_layout(title=title, height=340, margin=dict(l=60, r=20, t=50, b=50))
    figure.update_xaxes(title_text="class")
    figure.update_yaxes(title_text="number of images", range=[0, float(max(counts.max(), 1)) * 1.15])
    return figure


def redraw_button(label: str, icon: str, key: str) -> int:
    """A button that asks for a new random draw; returns the seed of the draw to show.

    The seed lives in session state (under `key` + "_seed"), so other reruns keep the same draw.
    """
    seed_key = f"{key}_seed"
    st.button(label, icon=icon, key=key, on_click=_next_seed, args=(seed_key,))
    return st.session_state.get(seed_key, 0)


def _next_seed(seed_key: str) -> None:
    st.session_state[seed_key] = st.session_state.get(seed_key, 0) + 1


def part_labels(dataset: data.Cifar10) -> dict[str, str]:
    """Radio labels of the three parts with their sizes, e.g. "training (45,000 images)"."""
    return {name: f"{title} ({len(dataset.split(name)):,} images)" for name, title in PART_TITLES.items()}


def progress_reporter(bar):
    """A `progress(done, total)` callback for `data.download_cifar10` that moves a st.progress bar."""

    def report(done: int, total: int) -> None:
        megabytes = f"{done / 1e6:,.1f} of {total / 1e6:,.1f} MB" if total else f"{done / 1e6:,.1f} MB"
        bar.progress(min(done / total, 1.0) if total else 0.0, text=f"Downloading CIFAR-10: {megabytes}")

    return report


@st.cache_data(max_entries=4)
def shapes_table(cache_key: str, _parts: Sequence[data.Split]) -> pd.DataFrame:
    """One row per array (images, labels) of each part: shape, dtype and value range (cached per `cache_key`)."""
    rows = []
    for part in _parts:
        for array_name, array in (("images", part.images), ("labels", part.labels)):
            rows.append({"part": part.name, "array": array_name, **explore.array_summary(array)})
    return pd.DataFrame(rows)


def channel_stats_table(histogram: explore.PixelHistogram) -> pd.DataFrame:
    """Mean and standard deviation of each histogram row, raw and divided by 255."""
    return pd.DataFrame(
        {
            "channel": histogram.names,
            "mean (0-255)": np.round(histogram.means, 2),
            "std (0-255)": np.round(histogram.stds, 2),
            "mean ÷255": np.round(histogram.means / 255, 4),
            "std ÷255": np.round(histogram.stds / 255, 4),
        }
    )


def pixel_rows(image: np.ndarray, count: int = 3) -> str:
    """The first `count` pixels of row 0 as text, one [R, G, B] per line (like the report's figure 21)."""
    return "\n".join(
        "[" + ", ".join(format_number(value) if float(value).is_integer() else f"{value:.8f}" for value in pixel) + "]"
        for pixel in image[0, :count]
    )


def one_hot_table(labels: np.ndarray, encoded: np.ndarray) -> pd.DataFrame:
    """Label, class name and the one-hot vector (a column per class) of each image."""
    table = pd.DataFrame(encoded.astype(int), columns=list(CLASS_NAMES))
    table.insert(0, "class", [CLASS_NAMES[label] for label in labels])
    table.insert(0, "label", labels.astype(int))
    table.insert(0, "image", range(len(labels)))
    return table


def augmentation_grid(originals: np.ndarray, copies: int, seed: int) -> go.Figure:
    """Each original (first column) beside `copies` augmented versions from `cnn.augment.augment_preview`."""
    count = len(originals)
    augmented = augment.augment_preview(np.repeat(originals, copies, axis=0), seed=seed)
    rows = [np.array([index, *range(count + index * copies, count + (index + 1) * copies)]) for index in range(count)]
    return image_grid(
        np.concatenate([originals, augmented]),
        rows,
        [f"image {n + 1}" for n in range(count)],
        ["original", *(f"copy {n + 1}" for n in range(copies))],
        "Original and augmented copies",
        x_title="augmented copy",
        y_title="image",
    )
