"""Router of the CNN classroom dashboard: page config, navigation and the shared sidebar."""

import streamlit as st

from ui.server_runtime import keep_keras_state_between_runs

keep_keras_state_between_runs()  # before any page runs: one server, many sessions (see ui/server_runtime.py)
st.set_page_config(page_title="CNN classroom", page_icon=":material/neurology:", layout="wide")

PAGES = {
    "Start": [
        st.Page("pages/home.py", title="Home", icon=":material/home:", default=True),
    ],
    "Learn": [
        st.Page("pages/learn_pixels.py", title="How a computer sees", icon=":material/grid_on:"),
        st.Page("pages/learn_convolution.py", title="Convolution", icon=":material/filter_center_focus:"),
        st.Page("pages/learn_relu.py", title="ReLU", icon=":material/show_chart:"),
        st.Page("pages/learn_pooling.py", title="Pooling", icon=":material/compress:"),
        st.Page("pages/learn_dense_softmax.py", title="Flatten, dense, softmax", icon=":material/linear_scale:"),
    ],
    "Data": [
        st.Page("pages/dataset.py", title="CIFAR-10 dataset", icon=":material/photo_library:"),
    ],
    "Model": [
        st.Page("pages/build.py", title="Build", icon=":material/construction:"),
        st.Page("pages/train.py", title="Train", icon=":material/model_training:"),
        st.Page("pages/evaluate.py", title="Evaluate", icon=":material/fact_check:"),
        st.Page("pages/inspect.py", title="Inspect", icon=":material/visibility:"),
    ],
    "Predict": [
        st.Page("pages/predict.py", title="Predict", icon=":material/image_search:"),
    ],
}

# st.navigation is called before anything else renders, so the legacy pages/ menu never appears.
page = st.navigation(PAGES)

with st.sidebar:
    st.caption(
        "Concept → training → evaluation → explanation → prediction, on the same CIFAR-10 models. "
        "Test accuracies always say which part of the test set they come from."
    )

page.run()
