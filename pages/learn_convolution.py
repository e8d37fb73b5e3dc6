"""Learn page: convolution, a kernel sliding over the image and one dot product per position."""

import streamlit as st

from cnn import ops
from cnn.errors import UserError
from ui import convolution_views, learn_widgets, plots, resources

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

controls, results = st.columns([1, 3], gap="medium")
with controls:
    chosen_input = learn_widgets.input_image("conv")
    try:
        chosen_kernels = learn_widgets.kernels("conv")
    except UserError as error:
        resources.show_user_error(error)
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
        resources.show_user_error(error)
        st.stop()

    filter_column, play_column = st.columns([3, 1], vertical_alignment="bottom")
    stepped_name = filter_column.selectbox("Filter to step through", kernel_names, key="conv_step_filter")
    stepped_index = kernel_names.index(stepped_name)
    with play_column:
        convolution_views.play_button(feature_maps[..., stepped_index].size)
    convolution_views.step_through(
        image, description, stepped_name, chosen_kernels[stepped_index][1], spec, feature_maps[..., stepped_index]
    )

    st.subheader("Feature-map size")
    st.markdown(
        "output = floor((n + 2p − d·(k − 1) − 1) / s) + 1, with n input, k kernel, p padding, "
        "s stride, d dilation (with d = 1 and p = 0 this is the report's n − k + 1)."
    )
    st.code(f"rows:    {formulas['rows']}\ncolumns: {formulas['columns']}", language=None)

    st.subheader("All feature maps")
    for index, (tab, (name, kernel)) in enumerate(zip(st.tabs(kernel_names), chosen_kernels)):
        with tab:
            kernel_column, map_column = st.columns(2)
            kernel_figure = plots.heatmap(kernel, "Kernel", colorbar_title="weight", colorbar_below=True)
            kernel_column.plotly_chart(kernel_figure, key=f"conv_kernel_{index}")
            kernel_column.caption(f"The {kernel_size}x{kernel_size} weights of {learn_widgets.kernel_phrase(name)}.")
            map_figure = plots.heatmap(feature_maps[..., index], "Feature map", colorbar_below=True)
            map_column.plotly_chart(map_figure, key=f"conv_all_maps_{index}")
            map_column.caption(
                f"The feature map of {learn_widgets.kernel_phrase(name)}, {feature_maps.shape[0]} "
                f"rows by {feature_maps.shape[1]} columns." + plots.reading_hint(feature_maps)
            )
