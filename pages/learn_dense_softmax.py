"""Learn page: flatten, the fully connected layer and softmax, and why a CNN needs fewer weights."""

import streamlit as st

from cnn import CLASS_NAMES, ops
from ui import image_widgets, plots

st.title("Flatten, fully connected layer and softmax")
st.markdown(
    "After the convolution and pooling layers, the feature maps are **flattened**: their values "
    "are read row by row into one long vector. A **fully connected** (dense) layer follows: each "
    "of its neurons multiplies *every* value of that vector by its own weight, adds them and a "
    "bias. The last dense layer has one neuron per class, and **softmax** turns its scores into "
    "probabilities between 0 and 1 that add up to 1."
)

st.subheader("Flatten: a 3x3 matrix becomes a 9x1 vector")
matrix_column, vector_column = st.columns(2)
matrix_column.plotly_chart(plots.heatmap(ops.FLATTEN_EXAMPLE_INPUT, "3x3 matrix"), key="dense_matrix")
matrix_column.caption("A 3x3 matrix holding 1 to 9, read row by row.")
vector_column.plotly_chart(plots.heatmap(ops.flatten(ops.FLATTEN_EXAMPLE_INPUT), "9x1 vector"), key="dense_vector")
vector_column.caption("The same nine values after flattening: row 0 first, then row 1, then row 2.")

st.subheader("One image through a tiny network")
st.info(
    "The weights here are random (fixed by the seed) and **untrained**: the probabilities show "
    "how the numbers flow, not what the picture is. Training is what makes them meaningful."
)
controls, outputs = st.columns([1, 2])
with controls:
    image, description = image_widgets.sample_image("dense")
    num_filters = st.slider("Convolution filters", 1, 8, 4, key="dense_filters")
    kernel_size = st.select_slider("Filter size", (3, 5), 3, key="dense_kernel_size")
    seed = st.number_input("Random seed of the weights", 0, 9999, 0, key="dense_seed")
stages = ops.toy_network(image, num_filters=num_filters, kernel_size=kernel_size, seed=seed)
with outputs:
    st.dataframe(
        [
            {
                "step": stage.name,
                "what it does": stage.description,
                "output shape": " x ".join(map(str, stage.shape)),
                "values": stage.values.size,
            }
            for stage in stages
        ],
        hide_index=True,
    )
    st.plotly_chart(
        plots.probability_bars(stages[-1].values, CLASS_NAMES, "Softmax output (untrained)"), key="dense_probabilities"
    )
    st.caption(
        f"Probability of each CIFAR-10 class for {description}, from the untrained network; the bars add up to 100%."
    )

st.subheader("Why not a plain dense network on images?")
st.markdown(
    "A dense neuron needs one weight per input value. A convolution filter only looks at a "
    "small patch and reuses the same weights at every position of the image."
)
height_column, width_column, channels_column, filter_column = st.columns(4)
height = height_column.number_input("Image height", 1, 4096, 200, key="dense_height")
width = width_column.number_input("Image width", 1, 4096, 200, key="dense_width")
channels = channels_column.number_input("Channels", 1, 16, 3, key="dense_channels")
filter_size = filter_column.number_input("Filter size", 1, 15, 3, key="dense_filter_size")
comparison = ops.weight_comparison(height, width, channels, filter_size)
dense_metric, conv_metric = st.columns(2)
dense_metric.metric(
    f"Weights of one dense neuron on {height}x{width}x{channels}", f"{comparison.dense_neuron_weights:,}"
)
conv_metric.metric(
    f"Weights of one {filter_size}x{filter_size}x{channels} filter", f"{comparison.conv_filter_weights:,}"
)
st.markdown(
    f"The dense neuron needs **{comparison.ratio:,.0f} times** as many weights, and a layer has "
    "many such neurons. (Biases aside: one per neuron or filter.)"
)
