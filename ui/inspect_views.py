"""Widgets and figures of the Inspect page: layer table, filters, feature maps, Grad-CAM.

The helpers take a loaded model and draw; the numbers all come from
`cnn.explain`, so the page stays a description of the UI.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import streamlit as st

from cnn import CLASS_NAMES, explain, pictures
from cnn.inference import to_model_input
from cnn.zoo import ZOO
from ui import image_widgets, plots, resources
from ui.prediction_views import SHOWN_SCALE

# Zoo models whose first convolution is not learned: `fast` and `best` start with a frozen 2x2 whitening
# layer computed from training images (cnn.models.build_fast_trunk), whose filters are flat colour blocks.
# Inspect opens on a model whose first filters were learned instead.
FIXED_FIRST_LAYER = tuple(name for name, entry in ZOO.items() if entry.needs_calibration)
PREDICTED = "the model's top class"


def zoo_name(record: dict) -> str:
    """The zoo model a saved model was built from (its sidecar's "model"), else its own name."""
    return record.get("model") or record["name"]


def learned_first_layer_model(records: list[dict]) -> str | None:
    """The best saved model (records come best first) whose first convolution has learned filters."""
    return next((record["name"] for record in records if zoo_name(record) not in FIXED_FIRST_LAYER), None)


def model_choice(key: str = "inspect_model") -> str | None:
    """The model picker, opened on a model with learned first filters; says why when a fixed one is chosen."""
    name = resources.model_picker("Model", key=key, default=learned_first_layer_model)
    if name is None:
        return None
    record = next(record for record in resources.shipped_models() if record["name"] == name)
    if zoo_name(record) in FIXED_FIRST_LAYER:
        alternative = learned_first_layer_model(resources.shipped_models())
        st.info(
            f"'{name}' is our {zoo_name(record)} network. Its first layer, 'whiten', is fixed, not learned: "
            "24 2x2 filters computed from CIFAR-10 statistics before training and never changed by it, so its "
            "first filters below are flat colour blocks. Its learned filters start at 'block1_conv1' (pick it "
            "under Feature maps)."
            + (
                f" This page opens on '{alternative}', a report model whose first filters were learned."
                if alternative
                else ""
            ),
            icon=":material/info:",
        )
    return name


def layer_frame(model) -> pd.DataFrame:
    """The layer table of `explain.layer_table` as a DataFrame with readable headers."""
    rows = explain.layer_table(model)
    return pd.DataFrame(
        {
            "Layer": [("    " * row.depth) + row.name for row in rows],
            "Type": [row.layer_type for row in rows],
            "Output shape": [row.output_shape for row in rows],
            "Parameters": [row.parameters for row in rows],
            "How the count comes": [row.formula for row in rows],
            "Trainable": [row.trainable for row in rows],
        }
    )


def show_layer_table(model) -> None:
    """The table, its totals and how to read it."""
    st.dataframe(
        layer_frame(model),
        hide_index=True,
        column_config={"Parameters": st.column_config.NumberColumn(format="localized")},
    )
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
        st.caption(
            f"The nested model {explain.conv_trunk(model).name!r} is the network itself: the wrapper "
            "('views') feeds it six copies of the image (as is, shifted one pixel up-left and down-right, "
            "and the mirror of each) and averages the answers ('view_average'), the unshifted pair "
            "counting for half."
        )


FILTERS_PER_ROW = 8
FILTER_SIDE = 72  # pixels: how large each filter is drawn


def show_filters(model) -> None:
    """The first convolution's filters as RGB pictures, enlarged with square pixels, in rows of 8."""
    filters = explain.first_conv_filters(model)
    height, width = filters.images.shape[1:3]
    scale = max(1, FILTER_SIDE // max(height, width))
    pictures_of_filters = pictures.enlarge(pictures.unit_to_uint8(filters.images), scale)
    st.image(pictures.mosaic(pictures_of_filters, pictures.grid_rows(len(filters.images), FILTERS_PER_ROW), gap=6))
    st.caption(
        f"{filters.note} {len(filters.images)} filters, {FILTERS_PER_ROW} per row, numbered from 0 left to "
        f"right then top to bottom. Each {height}x{width} filter is drawn {scale} times larger with square "
        "pixels, its lowest weight black and its highest the brightest colour: the colour shows which "
        "input channel (red, green, blue) it weights most."
    )


def image_chooser(key: str) -> tuple[np.ndarray, str] | None:
    """A bundled test image or an upload, side by side; returns (RGB uint8 array, description) or None."""
    return image_widgets.image_chooser(key, purpose="to see what the layers make of it", horizontal=True)


MOSAIC_COLUMNS = 8
MOSAIC_WIDTH = 1100  # pixels the mosaic is drawn for: the main column at 1440x900
LABEL_ROOM = 0.25  # the gap above each tile, as a share of the tile's height: room for its channel number


def mosaic_figure(activations: np.ndarray, shown: int, title: str):
    """The first `shown` channels as one heatmap of tiles, each headed by its channel number.

    One shared colour scale (so tiles compare); hover gives the channel and value;
    the axes carry no pixel numbers (a mosaic's positions mean nothing).
    """
    height, width, _ = activations.shape
    gap = max(1, round(height * LABEL_ROOM))
    grid = pictures.tile_channels(activations, shown, columns=MOSAIC_COLUMNS, gap=gap)
    channel_of_cell = pictures.tile_channels(
        np.broadcast_to(np.arange(activations.shape[2], dtype=np.float32), activations.shape),
        shown,
        MOSAIC_COLUMNS,
        gap,
    )
    figure = plots.heatmap(grid, title, colorbar_title="activation", show_values=False)
    figure.update_traces(customdata=channel_of_cell, hovertemplate="channel %{customdata}: %{z:.3~r}<extra></extra>")
    cell_pixels = MOSAIC_WIDTH / grid.shape[1]
    for channel, (top, left) in enumerate(pictures.tile_positions(shown, height, width, MOSAIC_COLUMNS, gap)):
        figure.add_annotation(
            x=left + (width - 1) / 2,
            y=top - 0.5,
            yanchor="bottom",
            showarrow=False,
            text=f"channel {channel}" if width * cell_pixels >= 70 else str(channel),
            font=dict(size=12),
        )
    figure.update_xaxes(showticklabels=False, ticks="", title_text="each tile: one channel, its width")
    figure.update_yaxes(
        showticklabels=False, ticks="", title_text="its height", range=[grid.shape[0] - 0.5, -gap - 0.5]
    )  # room for the first row's labels
    figure.update_layout(height=int(140 + MOSAIC_WIDTH * (grid.shape[0] + gap) / grid.shape[1]))
    return figure


def show_feature_maps(model, image: np.ndarray, description: str) -> None:
    """A conv layer picker, then its channels and those of the layers that follow it."""
    layer_name = st.selectbox("Convolution layer", explain.conv_layer_names(model), key="inspect_conv_layer")
    channels = st.slider("Channels to show", 4, 64, 16, step=4, key="inspect_channels")
    for index, stage in enumerate(explain.feature_maps(model, image, layer_name)):
        height, width, count = stage.activations.shape
        shown = min(channels, count)
        title = f"{stage.layer_name} ({stage.layer_type}): {height}x{width}x{count}"
        st.plotly_chart(mosaic_figure(stage.activations, shown, title), key=f"inspect_stage_{index}")
        st.caption(
            f"Channels 0-{shown - 1} of {count} after '{stage.layer_name}' for {description}: the output "
            f"array is (height {height}, width {width}, channels {count}), channels last. Each tile is one "
            f"channel [:, :, c], headed by its number c, {MOSAIC_COLUMNS} to a row. All tiles share one "
            "colour scale: lighter means a larger value. Point at a tile to read a value."
        )


def show_grad_cam(model, image: np.ndarray, description: str) -> None:
    """Grad-CAM for a chosen class: the 32x32 input, the heatmap and the overlay."""
    choice = st.selectbox("Explain the class", [PREDICTED, *CLASS_NAMES], key="inspect_cam_class")
    class_index = None if choice == PREDICTED else CLASS_NAMES.index(choice)
    model_input = to_model_input(image)
    cam = explain.grad_cam(model, model_input, class_index)
    seen, heat, blended = st.columns(3)
    seen.image(pictures.enlarge(model_input, SHOWN_SCALE))
    seen.caption(f"The 32x32 input the model sees ({description}).")
    heat.plotly_chart(cam_figure(cam.heatmap, CLASS_NAMES[cam.class_index]), key="inspect_cam_heatmap")
    heat.caption("Importance of each region for the class, from 0 (none, dark purple) to 1 (most, yellow).")
    blended.image(pictures.enlarge(pictures.overlay(model_input, cam.heatmap), SHOWN_SCALE))
    blended.caption(
        "The same heatmap and colours (viridis: dark purple = none, yellow = most important) "
        "blended half and half over the input."
    )
    st.caption(f"Grad-CAM for '{CLASS_NAMES[cam.class_index]}'. {cam.note}")


CAM_HEIGHT = 320  # pixels, before the colour bar's room: the grid about as large as the pictures beside it


def cam_figure(heatmap: np.ndarray, class_name: str):
    """The Grad-CAM heatmap in viridis (as the overlay), sized like the pictures beside it.

    The colour bar lies under the grid, so the grid gets the narrow column's whole width.
    """
    figure = plots.heatmap(
        heatmap,
        f"Grad-CAM: {class_name}",
        colorbar_title="importance",
        show_values=False,
        zmin=0,
        zmax=1,
        color_scale=plots.VIRIDIS_SCALE,
        colorbar_below=True,
        height=CAM_HEIGHT,
    )
    figure.update_xaxes(dtick=8)
    figure.update_yaxes(dtick=8)
    return figure
