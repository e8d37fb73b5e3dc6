"""Home: what the dashboard is, the path through it, and the models it ships with."""

import streamlit as st

from ui import resources
from ui.home_views import COLUMN_CONFIG, model_descriptions, models_table, split_shipped, unusable_table

st.title("How a convolutional neural network learns to see")
st.markdown(
    "This dashboard follows one idea from start to finish on the **CIFAR-10** images "
    "(60,000 small 32x32 colour pictures of 10 classes): how a CNN computes, how it is trained, "
    "how well it does, what it looks at, and what it says about *your* pictures. "
    "Every model here was trained by a command in this project, and every figure says where it comes from."
)

st.subheader("Where to start")
steps = st.columns(5)
links = [
    ("pages/learn_pixels.py", "1. Learn", "Pixels, convolution, ReLU, pooling, softmax: the operations, step by step."),
    ("pages/dataset.py", "2. Data", "The 10 classes, normalization, one-hot labels, augmentation."),
    ("pages/train.py", "3. Train", "Train a model live, watch the curves, stop and resume."),
    ("pages/evaluate.py", "4. Evaluate", "Accuracy, classification report, confusion matrix, comparisons."),
    ("pages/predict.py", "5. Predict", "Your own pictures: upload, link or camera, with the top-3 classes."),
]
for column, (path, label, text) in zip(steps, links):
    with column:
        st.page_link(path, label=label)
        st.caption(text)

st.subheader("Models that ship with the dashboard")
entries = resources.saved_models()
shipped, trained_here = split_shipped(entries)
if shipped:
    st.dataframe(models_table(shipped), hide_index=True, width="stretch", column_config=COLUMN_CONFIG)
    st.caption(
        "Accuracies. Validation = the last 5,000 training images (used to choose settings). "
        "Test 0-999 (exact) = CIFAR-10 test images 0-999, identical to the official ones. "
        "Test all 10,000 (JPEG) = all 10,000 test images, JPEG-affected: in this copy images 1000-9999 were rebuilt "
        "from JPEG files, which costs a little accuracy. Report = the figure the course report gives."
    )
    st.markdown(model_descriptions(shipped))
elif not entries:
    st.info("No trained model is in models/ yet: train one on the Train page.")
else:
    st.info(
        "No shipped model is in models/: models trained here are listed below; `python -m cnn evaluate NAME "
        "--record` records a model's test figures."
    )
if trained_here:
    st.subheader("Trained here")
    st.dataframe(
        models_table(trained_here),
        hide_index=True,
        width="stretch",
        column_config=COLUMN_CONFIG,
        key="home_trained_here",
    )
    st.caption(
        "Models trained on this machine (classroom runs on the Train page, or the command line) whose "
        "test figures have not been recorded; the Evaluate page measures them."
    )
if len(shipped) + len(trained_here) < len(entries):
    st.warning("These saved models cannot be used (the others are not affected):", icon=":material/warning:")
    st.dataframe(unusable_table(entries), hide_index=True, width="stretch", key="home_unusable")
