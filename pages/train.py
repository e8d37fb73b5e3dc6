"""Train page: start, watch, stop and resume a zoo model's training, or draw a saved model's curves."""

import streamlit as st

from cnn import data
from cnn.artifacts import list_models
from cnn.zoo import ZOO
from ui import training_views

st.title("Train a CNN")
st.markdown(
    "Pick a model from the zoo and its hyperparameters, then start. Training runs in a separate worker "
    "process (the same code as `python -m cnn train`), so this page stays responsive; the charts gain a "
    "point after every epoch. The machine trains a few runs at once: further runs wait in line. "
    "**Stop** ends the run after the current batch and keeps its history and last checkpoint; "
    "**Resume** continues the same history. Reloading the page, or opening its link in a second tab, "
    "shows the same run."
)
teacher = training_views.teacher_mode()
owner = training_views.session_owner()

train_tab, saved_tab = st.tabs(["Train a model", "Curves of saved models"])

with train_tab:
    model = st.selectbox(
        "Model", list(ZOO), format_func=lambda name: f"{name}: {ZOO[name].description}", key="train_model"
    )
    training_views.machine_queue(teacher=teacher)
    run_dir = training_views.shown_run_dir(model, owner)
    training_views.other_active_runs(run_dir)
    state = training_views.read_state(run_dir)
    on_sample = data.find_data_dir() is None
    if on_sample:
        st.warning(training_views.SAMPLE_NOTE, icon=":material/science:")
    settings, live = st.columns([2, 3], gap="large")
    with settings:
        request = training_views.classroom_settings(
            model, owner=owner, teacher=teacher, disabled=bool(state and state.active), sample=on_sample
        )
        resume = training_views.resume_button(state)
        st.caption(
            "Your run saves under its own name in models/. The models that ship with the dashboard, and "
            "models made in other sessions, are never replaced (the teacher key can)."
        )
        started = training_views.start_or_resume(request, run_dir if resume else None, owner=owner, teacher=teacher)
    if started:
        st.rerun()  # redraw with Start disabled and the live panel polling
    with live:
        training_views.run_panel(run_dir)

with saved_tab:
    records = list_models()
    if not records:
        st.info("No saved model yet: train one in the first tab.", icon=":material/info:")
    else:
        chosen = st.multiselect(
            "Saved models to overlay",
            [record["name"] for record in records],
            default=training_views.default_overlay(records),
            key="train_overlay",
        )
        histories = training_views.saved_histories(records, chosen)
        if histories:
            training_views.charts(histories, key="saved")
            st.caption(
                "Stored per-epoch history of each chosen model: solid lines with circles are the training "
                "images, dashed lines with squares the validation images; the last value is written at the end "
                "of each line; a dotted end to an open marker is a partial epoch (stopped mid-epoch). "
                "A training curve that keeps improving while the validation curve stalls or "
                "worsens is overfitting: compare the report's model 1 (base) with model 2 (dropout)."
            )
