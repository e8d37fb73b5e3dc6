"""Learn page: ReLU, the activation that keeps positive values and sets negatives to zero."""

import streamlit as st

from cnn import ops
from ui import image_widgets, learn_widgets, plots

SIGNED_KERNELS = ("Sobel x", "Sobel y", "edge", "sharpen")  # kernels whose maps have negatives

st.title("ReLU: negatives become zero")
st.markdown(
    "After each convolution a CNN applies the **Rectified Linear Unit**, ReLU(x) = max(0, x), "
    "to every value of the feature map: negative values become 0, positive values pass "
    "unchanged. Without such a bend, stacking layers would still give one linear function; with "
    "it the network can learn non-linear patterns. It is also cheap to compute, and the zeros "
    "mean that only some neurons are active at a time."
)

controls, curve = st.columns([1, 2])
with controls:
    image, description = learn_widgets.input_image("relu", sources=(learn_widgets.REPORT_EXAMPLE, image_widgets.SAMPLE))
    kernel_name = st.selectbox("Kernel that makes the feature map", SIGNED_KERNELS, key="relu_kernel")
with curve:
    st.plotly_chart(plots.relu_curve(), key="relu_curve")
    st.caption("The ReLU function: a flat line at 0 for negative inputs, the line y = x for positive ones.")

feature_map = ops.feature_maps(image, [ops.kernel_preset(kernel_name, 3)])[..., 0]
activated = ops.relu(feature_map)
st.markdown(
    f"**{ops.count_negatives(feature_map)} of {feature_map.size}** values are negative, "
    "so ReLU sets them to 0 (crossed cells)."
)

before, after = st.columns(2)
before.plotly_chart(
    plots.heatmap(feature_map, "Before ReLU", marks=plots.negative_marks(feature_map), marks_name="negative"),
    key="relu_before",
)
before.caption(
    f"Feature map of the 3x3 {kernel_name} kernel on {description}; crosses mark negative values."
    + plots.reading_hint(feature_map)
)
after.plotly_chart(
    plots.heatmap(activated, "After ReLU", marks=plots.negative_marks(feature_map), marks_name="set to 0"),
    key="relu_after",
)
after.caption(
    "The same map after ReLU: every crossed cell is now 0, the others are unchanged." + plots.reading_hint(activated)
)
