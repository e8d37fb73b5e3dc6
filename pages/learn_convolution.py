"""Learn page: convolution, a kernel sliding over the image and one dot product per position."""

import time

import streamlit as st

from cnn import ops
from cnn.errors import UserError
from ui import learn_widgets, plots

PLAY_STEPS = 20  # windows shown by one press of Play
PLAY_DELAY_S = 0.6

st.title("Convolution")
st.markdown(
    "A **kernel** (filter) is a small grid of weights. It is placed on a patch of the image, "
    "each pixel is multiplied by the weight on top of it and the products are added: a "
    "**dot product**, one number of the **feature map**. The kernel then moves right by the "
    "**stride**, and at the end of a row hops down by the stride and back to the left. "
    "**Padding** adds a border of zeros so the kernel can also sit on the edges; "
    "**dilation** spreads the kernel's taps apart. On a colour image each filter has one "
    "kernel slice per channel (R, G, B): the three dot products are added into one value."
)

controls, results = st.columns([1, 2], gap="large")
with controls:
    chosen_input = learn_widgets.input_image("conv")
    try:
        chosen_kernels = learn_widgets.kernels("conv")
    except UserError as error:
        st.error(str(error))
        st.stop()
    spec = learn_widgets.conv_settings("conv")

if chosen_input is None:
    st.stop()
if not chosen_kernels:
    st.info("Choose at least one kernel.")
    st.stop()
image, description = chosen_input
kernel_names = [name for name, _ in chosen_kernels]
kernel_size = len(chosen_kernels[0][1])

with results:
    try:
        feature_maps = ops.feature_maps(image, [kernel for _, kernel in chosen_kernels], spec)
        formulas = ops.output_size_formulas(image.shape, kernel_size, spec)
    except UserError as error:
        st.error(str(error))
        st.stop()

    st.subheader("Feature-map size")
    st.markdown("output = floor((n + 2p − d·(k − 1) − 1) / s) + 1, with n input, k kernel, p padding, "
                "s stride, d dilation (with d = 1 and p = 0 this is the report's n − k + 1).")
    st.code(f"rows:    {formulas['rows']}\ncolumns: {formulas['columns']}", language=None)

    st.subheader("Step through the windows")
    stepped_name = st.selectbox("Filter to step through", kernel_names, key="conv_step_filter")
    stepped_index = kernel_names.index(stepped_name)
    window_count = feature_maps[..., stepped_index].size
    step = st.slider("Window position (reading order)", 1, window_count, 1, key=f"conv_step_{window_count}")
    play = st.button("▶ Play the next windows", key="conv_play")
    window_view, product_view = st.columns(2)
    input_slot, map_slot = window_view.empty(), product_view.empty()
    lines_slot = st.empty()

    def show_window(step_index: int) -> None:
        """Draw the input with the current window, the feature map and the written-out dot product."""
        breakdown = ops.window_breakdown(image, chosen_kernels[stepped_index][1], spec, step_index)
        padded = ops.pad(image, breakdown.padding)
        with input_slot.container():
            st.plotly_chart(plots.input_figure(
                padded, f"Input, window {step_index + 1}",
                highlight=plots.box_around(breakdown.rows, breakdown.cols),
                marks=plots.window_marks(breakdown.rows, breakdown.cols) if spec.dilation > 1 else None,
                colorbar_below=True,
            ), key=f"conv_input_{step_index}")
            st.caption(f"{description}, with padding {breakdown.padding}; the outlined square is the "
                       "kernel's current window (crosses mark the taps when dilated).")
        with map_slot.container():
            cell = plots.Box(breakdown.out_row, breakdown.out_col, breakdown.out_row, breakdown.out_col)
            st.plotly_chart(plots.heatmap(feature_maps[..., stepped_index], "Feature map",
                                          highlight=cell, colorbar_below=True), key=f"conv_map_{step_index}")
            st.caption(f"Feature map of the {stepped_name} kernel; the outlined cell at row "
                       f"{breakdown.out_row}, column {breakdown.out_col} is {plots.format_value(breakdown.total)}.")
        with lines_slot.container():
            st.markdown("**The dot product, written out** (pixel × weight):")
            st.code("\n".join(ops.dot_product_lines(breakdown)), language=None, wrap_lines=True)

    if play:
        for step_index in range(step - 1, min(step - 1 + PLAY_STEPS, window_count)):
            show_window(step_index)
            time.sleep(PLAY_DELAY_S)
    else:
        show_window(step - 1)

    st.subheader("All feature maps")
    for index, (tab, (name, kernel)) in enumerate(zip(st.tabs(kernel_names), chosen_kernels)):
        with tab:
            kernel_column, map_column = st.columns(2)
            kernel_figure = plots.heatmap(kernel, "Kernel", colorbar_title="weight", colorbar_below=True)
            kernel_column.plotly_chart(kernel_figure, key=f"conv_kernel_{index}")
            kernel_column.caption(f"The {kernel_size}x{kernel_size} {name} kernel's weights.")
            map_figure = plots.heatmap(feature_maps[..., index], "Feature map", colorbar_below=True)
            map_column.plotly_chart(map_figure, key=f"conv_all_maps_{index}")
            map_column.caption(f"The {name} kernel's feature map, {feature_maps.shape[0]} rows by "
                               f"{feature_maps.shape[1]} columns.")
