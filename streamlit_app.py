"""Router of the CNN classroom dashboard: page config, navigation and the shared sidebar."""

import streamlit as st

from ui import menu
from ui.server_runtime import keep_keras_state_between_runs

keep_keras_state_between_runs()  # before any page runs: one server, many sessions (see ui/server_runtime.py)
st.set_page_config(page_title="CNN classroom", page_icon=":material/neurology:", layout="wide")

# st.navigation is called before anything else renders, so the legacy pages/ menu never appears.
page = st.navigation(menu.navigation_pages())

with st.sidebar:
    st.caption(
        "Concept → training → evaluation → explanation → prediction, on the same CIFAR-10 models. "
        "Test accuracies always say which part of the test set they come from."
    )

page.run()
