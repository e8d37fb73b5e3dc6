"""Learn page: max and average pooling, shrinking a feature map window by window."""

import streamlit as st

from cnn import ops
from cnn.errors import UserError
from ui import image_widgets, plots, resources

FIGURE_EXAMPLE = "The 4x4 example (report figure 12)"
FEATURE_MAP = "A feature map of a CIFAR-10 image (edge kernel, then ReLU)"

st.title("Pooling")
st.markdown(
    "A **pooling** layer slides a window over each feature map, like a convolution, but the "
    "window has no weights: it just summarises the values under it. **Max pooling** keeps the "
    "largest value, the strongest sign of a feature there; **average pooling** keeps the mean. "
    "With a 2x2 window and stride 2 each map shrinks to a quarter of its values, so later "
    "layers need less computation, and a feature moved by a pixel often still gives the same output."
)

controls, explanation = st.columns([1, 2])
with controls:
    source = st.radio("Input", (FIGURE_EXAMPLE, FEATURE_MAP), key="pool_source")
    if source == FIGURE_EXAMPLE:
        grid, description = ops.POOLING_EXAMPLE_INPUT, "the 4x4 example input"
    else:
        image, description = image_widgets.sample_image("pool")
        grid = ops.relu(ops.feature_maps(image, [ops.kernel_preset("edge", 3)])[..., 0])
    size = st.slider("Window size", 1, 4, 2, key="pool_size")
    stride = st.slider("Stride", 1, 4, 2, key="pool_stride")

try:
    maxima = ops.max_pool_with_argmax(grid, size, stride)
    averages = ops.avg_pool(grid, size, stride)
    formulas = ops.pool_output_size_formulas(grid.shape, size, stride)
except UserError as error:
    resources.show_user_error(error)
    st.stop()

with explanation:
    st.markdown(
        "Output size: floor((n − k) / s) + 1, with n input, k window and s stride (pooling "
        "adds no padding and spreads no taps apart)."
    )
    st.code(f"rows:    {formulas['rows']}\ncolumns: {formulas['columns']}", language=None)
    windows = maxima.values.size
    # A slider needs two ends: with a single window there is nothing to step through.
    step = st.slider("Window (reading order)", 1, windows, 1, key=f"pool_step_{windows}") if windows > 1 else 1
    window = ops.pool_window(grid, size, stride, step - 1)
    st.code("\n".join(ops.pool_window_lines(window)), language=None, wrap_lines=True)

window_box = plots.box_around(window.rows, window.cols)
output_cell = plots.Box(window.out_row, window.out_col, window.out_row, window.out_col)
st.plotly_chart(
    plots.heatmap(
        grid, "Input", highlight=window_box, marks=plots.maxima_marks(maxima), marks_name="kept by max pooling"
    ),
    key="pool_input",
)
st.caption(
    f"{description}: the dashed square is window {step}; a solid black-and-white border marks "
    "the element each max-pooling window keeps (a cross, when there are too many for borders)."
    + plots.reading_hint(grid)
)

max_column, average_column = st.columns(2)
max_column.plotly_chart(plots.heatmap(maxima.values, "Max pooling", highlight=output_cell), key="pool_max")
max_column.caption(
    f"Max pooling, {size}x{size} window, stride {stride}; the outlined cell comes from window {step}."
    + plots.reading_hint(maxima.values)
)
average_column.plotly_chart(plots.heatmap(averages, "Average pooling", highlight=output_cell), key="pool_avg")
average_column.caption(
    f"Average pooling with the same windows; the outlined cell is window {step}'s mean." + plots.reading_hint(averages)
)
