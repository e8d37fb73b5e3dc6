"""Widgets and figures of the Inspect page: layer table, filters, feature maps, Grad-CAM.

The helpers take a loaded model and draw; the numbers all come from
`cnn.explain`, so the page stays a description of the UI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnn import CLASS_NAMES, explain
from cnn.errors import UserError
from cnn.images import decode_image
from cnn.inference import to_model_input
from ui import plots
from ui.prediction_views import UPLOAD_TYPES, enlarged
from ui.resources import get_sample, show_user_error

SAMPLE = "A CIFAR-10 test image"
UPLOAD = "My own image"
PREDICTED = "the model's top class"


def layer_frame(model) -> pd.DataFrame:
    """The layer table of `explain.layer_table` as a DataFrame with readable headers."""
    rows = explain.layer_table(model)
    return pd.DataFrame({
        "Layer": [("    " * row.depth) + row.name for row in rows],
        "Type": [row.layer_type for row in rows],
        "Output shape": [row.output_shape for row in rows],
        "Parameters": [row.parameters for row in rows],
        "How the count comes": [row.formula for row in rows],
        "Trainable": [row.trainable for row in rows],
    })


def show_layer_table(model) -> None:
    """The table, its totals and how to read it."""
    st.dataframe(layer_frame(model), hide_index=True,
                 column_config={"Parameters": st.column_config.NumberColumn(format="localized")})
    trainable = sum(int(np.prod(weight.shape)) for weight in model.trainable_weights)
    total = model.count_params()
    st.caption(
        f"Every layer of {model.name!r}: output shape without the batch dimension (height, width, channels), "
        f"and its weights. Total: {total:,} parameters, {trainable:,} trained and {total - trainable:,} not "
        "(batch-normalization running statistics and frozen layers). Conv2D: (kernel height x width x input "
        "channels + 1 bias) x filters; Dense: (inputs + 1) x outputs; BatchNormalization: 4 per channel "
        "(gamma and beta trained, moving mean and variance not) or 2 when it only normalizes; pooling, "
        "flatten, dropout and activations have none."
    )
    if explain.is_view_averaging_wrapper(model):
        st.caption(f"The nested model {explain.conv_trunk(model).name!r} is the network itself: the wrapper "
                   "('views') feeds it six copies of the image (as is, shifted one pixel up-left and down-right, "
                   "and the mirror of each) and averages the answers ('view_average'), the unshifted pair "
                   "counting for half.")


FILTERS_PER_ROW = 8
FILTER_SIDE = 72  # pixels: how large each filter is drawn


def show_filters(model) -> None:
    """The first convolution's filters as RGB pictures, enlarged with square pixels, in rows of 8."""
    filters = explain.first_conv_filters(model)
    height, width = filters.images.shape[1:3]
    scale = max(1, FILTER_SIDE // max(height, width))
    st.image(explain.tile_images(filters.images, columns=FILTERS_PER_ROW, scale=scale, gap=6))
    st.caption(f"{filters.note} {len(filters.images)} filters, {FILTERS_PER_ROW} per row, numbered from 0 left to "
               f"right then top to bottom. Each {height}x{width} filter is drawn {scale} times larger with square "
               "pixels, its lowest weight black and its highest the brightest colour: the colour shows which "
               "input channel (red, green, blue) it weights most.")


def image_chooser(key: str) -> tuple[np.ndarray, str] | None:
    """A bundled test image or an upload; returns (RGB uint8 array, description) or None."""
    source = st.radio("Image", [SAMPLE, UPLOAD], horizontal=True, key=f"{key}_source")
    if source == SAMPLE:
        sample = get_sample()
        index = st.number_input(f"Test image number (0-{len(sample) - 1})", 0, len(sample) - 1, 0,
                                key=f"{key}_sample")
        return sample.images[index], f"CIFAR-10 test image {index} (a {CLASS_NAMES[int(sample.labels[index])]})"
    upload = st.file_uploader("Drop an image (PNG, JPEG, WebP, BMP or GIF)", type=UPLOAD_TYPES,
                              key=f"{key}_upload")
    if upload is None:
        st.info("Upload an image to see what the layers make of it.")
        return None
    try:
        return np.asarray(decode_image(upload.getvalue())), "your image"
    except UserError as error:
        show_user_error(error)
        return None


def show_feature_maps(model, image: np.ndarray, description: str) -> None:
    """A conv layer picker, then its channels and those of the layers that follow it."""
    layer_name = st.selectbox("Convolution layer", explain.conv_layer_names(model), key="inspect_conv_layer")
    channels = st.slider("Channels to show", 4, 64, 16, step=4, key="inspect_channels")
    for index, stage in enumerate(explain.feature_maps(model, image, layer_name)):
        height, width, count = stage.activations.shape
        shown = min(channels, count)
        grid = explain.tile_channels(stage.activations, shown, columns=8)
        st.plotly_chart(plots.heatmap(grid, f"{stage.layer_name} ({stage.layer_type}): {height}x{width}x{count}",
                                      colorbar_title="activation", show_values=False),
                        key=f"inspect_stage_{index}")
        st.caption(f"Channels 0-{shown - 1} of {count} after '{stage.layer_name}' for {description}: the output "
                   f"array is (height {height}, width {width}, channels {count}), channels last; each tile is "
                   f"one channel [:, :, c], left to right then top to bottom. Lighter means a larger value.")


def show_grad_cam(model, image: np.ndarray, description: str) -> None:
    """Grad-CAM for a chosen class: the 32x32 input, the heatmap and the overlay."""
    choice = st.selectbox("Explain the class", [PREDICTED, *CLASS_NAMES], key="inspect_cam_class")
    class_index = None if choice == PREDICTED else CLASS_NAMES.index(choice)
    model_input = to_model_input(image)
    cam = explain.grad_cam(model, model_input, class_index)
    seen, heat, blended = st.columns(3)
    seen.image(enlarged(model_input))
    seen.caption(f"The 32x32 input the model sees ({description}).")
    heat.plotly_chart(cam_figure(cam.heatmap, CLASS_NAMES[cam.class_index]), key="inspect_cam_heatmap")
    heat.caption("Importance of each region for the class, from 0 (none, dark purple) to 1 (most, yellow).")
    blended.image(enlarged(explain.overlay(model_input, cam.heatmap)))
    blended.caption("The same heatmap and colours (viridis: dark purple = none, yellow = most important) "
                    "blended half and half over the input.")
    st.caption(f"Grad-CAM for '{CLASS_NAMES[cam.class_index]}'. {cam.note}")


CAM_HEIGHT = 320  # pixels, before the colour bar's room: the grid about as large as the pictures beside it


def cam_figure(heatmap: np.ndarray, class_name: str):
    """The Grad-CAM heatmap in viridis (as the overlay), sized like the pictures beside it.

    The colour bar lies under the grid, so the grid gets the narrow column's whole width.
    """
    figure = plots.heatmap(heatmap, f"Grad-CAM: {class_name}", colorbar_title="importance", show_values=False,
                           zmin=0, zmax=1, color_scale="Viridis", colorbar_below=True, height=CAM_HEIGHT)
    figure.update_xaxes(dtick=8)
    figure.update_yaxes(dtick=8)
    return figure
