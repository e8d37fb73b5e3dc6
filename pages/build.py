"""Build page: stack your own CNN, see every layer's shape and weights live, train it, race it."""

import streamlit as st

from cnn import classroom, data
from cnn import spec as specs
from cnn.artifacts import list_models
from cnn.errors import UserError
from ui import build_views, resources, training_views

st.title("Build your own CNN")
st.markdown(
    "Stack the layers of a network yourself, as the course report's chapter III does step by step: start "
    "from one of the report's six models (or an empty idea), add, remove, move or duplicate layers, and "
    "watch how each one changes the shape of the data and how many weights it adds. The softmax output "
    "over the 10 classes is always the last layer. Then train it on this machine and race it against the "
    "report's models."
)

try:
    limits = specs.classroom_limits()
except UserError as error:
    st.error(f"The classroom limits are misconfigured: {error}", icon=":material/error:")
    st.stop()

build_views.starting_point_picker()
build_views.show_message()
stack = build_views.current_stack()
editor, live = st.columns([1, 1], gap="large")
with editor:
    st.subheader("Layers")
    build_views.layer_editor(stack)
with live:
    st.subheader("Shapes and parameters")
    analysis = specs.analyze(build_views.as_spec(stack), limits)
    build_views.live_table(analysis, limits)

st.header("Train it")
name = st.session_state.get("build_name", build_views.DEFAULT_NAME).strip()
run_dir = build_views.run_dir_of(name)
state = training_views.read_state(run_dir) if run_dir else None
has_data = data.find_data_dir() is not None
if not has_data:
    st.warning(
        "Training needs the CIFAR-10 training images, which are not on this machine: set CIFAR10_DIR or "
        "download them from the dataset page.",
        icon=":material/cloud_off:",
    )
settings, panel = st.columns([2, 3], gap="large")
with settings:
    teacher = training_views.teacher_mode()
    request = build_views.train_form(analysis, teacher=teacher, disabled=not has_data or bool(state and state.active))
    if (
        state
        and state.can_resume
        and st.button(
            "Resume",
            icon=":material/resume:",
            key="build_resume",
            help="Continue this model's last run: its checkpoint and history.",
        )
    ):
        request = "resume"
    build_views.export_button(analysis, name)
    st.caption(
        "Training runs in the same worker process and run folder as on the Train page "
        "(`python -m cnn train`, queued like every run) and saves models/NAME.keras with the spec in its "
        "sidecar: the "
        "model then appears on the Evaluate, Inspect and Predict pages and can be loaded back here."
    )
if request is not None:
    try:
        if request == "resume":
            classroom.resume_run(run_dir, teacher=teacher)
        else:  # the classroom's rules and queue, as on the Train page
            classroom.start_run(
                request.config,
                request.out_path,
                owner=training_views.session_owner(),
                teacher=teacher,
                replace=request.replace,
            )
    except UserError as error:
        with settings:
            resources.show_user_error(error)
    else:
        st.rerun()  # redraw with Start disabled and the live panel polling
with panel:
    if run_dir:
        training_views.run_panel(run_dir)

st.header("Race")
board = build_views.leaderboard(list_models())
if board.empty:
    st.info("No model trained yet: train yours above.", icon=":material/info:")
else:
    st.dataframe(board, hide_index=True, column_config=build_views.LEADERBOARD_COLUMNS, key="build_race")
    st.caption(
        f"Models built on this page and the reference models: {build_views.reference_models_text()}. "
        "Validation: the last 5,000 training images; test 0-999: the exact CIFAR-10 test images. A short "
        "classroom run on a subset is not a fair fight with a model trained for many epochs on all images: "
        "compare epochs and minutes too."
    )
    chosen = st.multiselect(
        "Overlay the training curves of",
        board["Model"].tolist(),
        default=build_views.default_race(board),
        key="build_race_overlay",
    )
    histories = training_views.saved_histories(list_models(), chosen)
    if histories:
        training_views.charts(histories, key="race")
        st.caption(
            "Stored per-epoch history of each chosen model: solid lines with circles are the training "
            "images, dashed lines with squares the validation images, one colour per model (a "
            "colour-blind-safe palette); the last value is written at the end of each line."
        )
