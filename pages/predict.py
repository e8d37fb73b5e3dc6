"""Predict page: top-3 classes, all ten probabilities and Grad-CAM for uploaded, linked, camera or sample images."""

import streamlit as st

from cnn.errors import UserError
from cnn.inference import PREDICT_BUDGET_MS, quick_enough_model
from ui import prediction_views, resources

st.title("Predict: what is in this picture?")
st.markdown(
    "Give the model one or several pictures. For each one you see the picture, the **32x32 image the "
    "model really sees** (CIFAR-10 models only ever see 32x32 pixels) and its three most probable classes; "
    "choose one picture under the grid for the probability of all ten classes and a Grad-CAM heatmap of "
    "where it looked."
)

settings, _ = st.columns([1, 1])
with settings:
    model_name = resources.model_picker(
        f"Model (preselected: the most accurate that answers one image within {PREDICT_BUDGET_MS:.0f} ms)",
        key="predict_model",
        default=quick_enough_model,
    )
    policy = prediction_views.policy_picker()
if model_name is None:
    st.stop()

images = prediction_views.collect_inputs()
prediction_views.clear_button()
if not images:
    st.info("Add a picture: upload files, paste a link, take a photo or pick CIFAR-10 test images above.")
    st.stop()

try:
    predictor = resources.get_predictor(model_name)
except UserError as error:
    resources.show_user_error(error)
    st.stop()

prediction_views.show_results(images, predictor, policy)
