"""Inspect page: a model's layers and parameter counts, its first filters, feature maps and Grad-CAM."""

import streamlit as st

from cnn.errors import UserError
from ui import inspect_views, resources

st.title("Inspect: inside a trained CNN")
st.markdown(
    "Open up a saved model: how each layer changes the shape of the data and how many weights it has, "
    "what its first filters look like, what each convolution makes of an image, and where the model "
    "looks when it decides (Grad-CAM)."
)

model_name = inspect_views.model_choice("inspect_model")
if model_name is None:
    st.stop()
try:
    model, _ = resources.get_model(model_name)
except UserError as error:
    resources.show_user_error(error)
    st.stop()

st.header("Layers and parameters")
inspect_views.show_layer_table(model)

st.header("Filters of the first convolution")
inspect_views.show_filters(model)

st.header("Feature maps")
chosen = inspect_views.image_chooser("inspect_image")
if chosen is None:
    st.stop()
image, description = chosen
inspect_views.show_feature_maps(model, image, description)

st.header("Grad-CAM: where the model looks")
inspect_views.show_grad_cam(model, image, description)
