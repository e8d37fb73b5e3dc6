"""Train page pieces: the settings form, the live run panel (polled fragment) and learning-curve figures.

The run itself is a worker process (`cnn.jobs`); everything shown here is read
back from its run folder, so a reload or a second tab shows the same run.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import plotly.graph_objects as go
import streamlit as st

from cnn import classroom, data, jobs, runs
from cnn.errors import UserError
from cnn.hardware import cpu_has_native_bf16
from cnn.runs import NOT_STARTED_MESSAGE, RunState
from cnn.training import TrainConfig
from ui.plots import SERIES_COLORS
from ui.resources import show_user_error

POLL_S = 1.0  # seconds between reads of the run folder while a run is active
CLASSROOM_EPOCHS = 3  # default epochs of a classroom run (the recipes' 15-35 take too long in class)
CLASSROOM_SUBSET = 5_000  # default training images of a classroom run
MAX_TRAIN_IMAGES = 45_000  # the training split without its default 5,000 validation images
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
METRICS = {"loss": "loss (cross-entropy)", "accuracy": "accuracy"}
LINE_STYLES = {"training": dict(dash="solid", symbol="circle"), "validation": dict(dash="dash", symbol="square")}
PARTIAL_DASH = "dot"  # the segment to a partial epoch: dotted, ending in an open marker
LABEL_ROOM_EPOCHS = 0.6  # x-axis room past the last epoch for its value label (at least this many epochs)
LABEL_ROOM_SHARE = 0.2  # ... or this share of the plotted epochs, whichever is larger


# ---------------------------------------------------------------- figures (no Streamlit)


def partial_note(row: Mapping) -> str:
    """'partial epoch (N of M batches)' for a history row stopped mid-epoch; '' for a full epoch."""
    done = row.get("partial_batches")
    if not done:
        return ""
    total = row.get("batches_per_epoch")
    return f"partial epoch ({done} of {total} batches)" if total else f"partial epoch ({done} batches)"


def epoch_position(row: Mapping) -> float:
    """Where a row sits on the epoch axis: its epoch, or the share of it done for a partial epoch."""
    done, total = row.get("partial_batches"), row.get("batches_per_epoch")
    if done and total:
        return row["epoch"] - 1 + done / total
    return row["epoch"]


def _value_text(metric: str, value: float) -> str:
    return f"{value:.1%}" if metric == "accuracy" else f"{value:.3f}"


def learning_curve(histories: Mapping[str, Sequence[dict]], metric: str) -> go.Figure:
    """Training (solid, circles) and validation (dashed, squares) `metric` per epoch, one colour per model.

    A last row stopped mid-epoch (`partial_batches`) is its own trace: a dotted segment to an open
    marker at the share of the epoch done, named "partial epoch (N of M batches)", never a full epoch.
    The x-axis reaches past the last epoch so the value written at each line's end shows in full.

    Args:
        histories: model name -> per-epoch rows (`epoch`, `loss`, `val_loss`, `accuracy`, `val_accuracy`,
            and `partial_batches`/`batches_per_epoch` on a partial last row).
        metric: "loss" or "accuracy".
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    figure = go.Figure()
    for index, (name, rows) in enumerate(histories.items()):
        color = SERIES_COLORS[index % len(SERIES_COLORS)]
        for part, key in (("training", metric), ("validation", f"val_{metric}")):
            points = [row for row in rows if row.get(key) is not None]
            full = [row for row in points if not row.get("partial_batches")]
            partial = points[-1] if points and points[-1].get("partial_batches") else None
            style = dict(color=color, part=part, key=key, metric=metric, name=name)
            if full:
                _add_full_epochs(figure, full, labelled=partial is None, **style)
            if partial is not None:
                _add_partial_epoch(figure, full[-1] if full else None, partial, **style)
    figure.update_layout(
        title=f"{METRICS[metric].capitalize()} per epoch",
        height=340,
        margin=dict(l=60, r=70, t=50, b=40),
        legend=dict(orientation="h", y=-0.25),
    )
    figure.update_xaxes(title_text="epoch", range=_epoch_range(histories), dtick=_epoch_tick(histories))
    figure.update_yaxes(title_text=METRICS[metric], tickformat=".0%" if metric == "accuracy" else None)
    return figure


def _add_full_epochs(
    figure: go.Figure, rows: Sequence[dict], *, labelled: bool, color: str, part: str, key: str, metric: str, name: str
) -> None:
    values = [float(row[key]) for row in rows]
    text = [""] * (len(values) - 1) + [_value_text(metric, values[-1]) if labelled else ""]
    figure.add_trace(
        go.Scatter(
            x=[row["epoch"] for row in rows],
            y=values,
            name=f"{name}: {part}",
            mode="lines+markers+text",
            text=text,
            textposition="middle right",
            textfont=dict(color=color),
            cliponaxis=False,  # the end label may reach past the plot area
            line=dict(color=color, width=2, dash=LINE_STYLES[part]["dash"]),
            marker=dict(symbol=LINE_STYLES[part]["symbol"], size=7, color=color),
            hovertemplate=f"{name} {part}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
        )
    )


def _add_partial_epoch(
    figure: go.Figure, previous: dict | None, row: dict, *, color: str, part: str, key: str, metric: str, name: str
) -> None:
    note = partial_note(row)
    rows = ([previous] if previous else []) + [row]
    value = float(row[key])
    figure.add_trace(
        go.Scatter(
            x=[epoch_position(point) for point in rows],
            y=[float(point[key]) for point in rows],
            name=f"{name}: {part}, {note}",
            mode="lines+markers+text",
            text=[""] * (len(rows) - 1) + [f"{_value_text(metric, value)} (partial)"],
            textposition="middle right",
            textfont=dict(color=color),
            cliponaxis=False,
            line=dict(color=color, width=2, dash=PARTIAL_DASH),
            marker=dict(
                symbol=[LINE_STYLES[part]["symbol"]] * (len(rows) - 1) + [f"{LINE_STYLES[part]['symbol']}-open"],
                size=[7] * (len(rows) - 1) + [10],
                color=color,
                line=dict(width=2, color=color),
            ),
            customdata=[partial_note(point) or "full epoch" for point in rows],
            hovertemplate=f"{name} {part}<br>epoch %{{x:.2f}}: %{{y:.4f}}<br>%{{customdata}}<extra></extra>",
        )
    )


def _epoch_range(histories: Mapping[str, Sequence[dict]]) -> list[float]:
    """0 to the last epoch plus room for the end-of-line value labels."""
    last = max((epoch_position(row) for rows in histories.values() for row in rows), default=1)
    return [0, last + max(LABEL_ROOM_EPOCHS, LABEL_ROOM_SHARE * last)]


def _epoch_tick(histories: Mapping[str, Sequence[dict]]) -> int | None:
    longest = max((len(rows) for rows in histories.values()), default=0)
    return 1 if longest <= 20 else None


def learning_curves(histories: Mapping[str, Sequence[dict]]) -> tuple[go.Figure, go.Figure]:
    """The loss and the accuracy figure of the same runs."""
    return learning_curve(histories, "loss"), learning_curve(histories, "accuracy")


# ---------------------------------------------------------------- who is at the keyboard


def session_owner() -> str:
    """This browser session's id (recorded as `made_by` in the sidecars of the models it trains)."""
    if "train_owner" not in st.session_state:
        st.session_state["train_owner"] = classroom.new_owner_id()
    return st.session_state["train_owner"]


def _secret_teacher_key() -> object:
    """`teacher_key` from .streamlit/secrets.toml, or None when there is no such file or entry."""
    try:
        return st.secrets.get("teacher_key")
    except Exception:  # noqa: BLE001 - no secrets file is the normal case
        return None


def teacher_mode() -> bool:
    """The sidebar's teacher-key field; True when the key entered matches the server's."""
    expected = classroom.expected_teacher_key(_secret_teacher_key())
    with st.sidebar:
        if expected is None:
            st.caption(
                "No teacher key is set on this server (CNN_TEACHER_KEY or teacher_key in "
                ".streamlit/secrets.toml): shipped models stay read-only and the classroom limits hold."
            )
            return False
        entered = st.text_input(
            "Teacher key",
            type="password",
            key="teacher_key_input",
            help="Unlocks replacing shipped models and raises the training limits.",
        )
        if not entered:
            return False
        if classroom.teacher_key_matches(entered, expected):
            st.success("Teacher mode: shipped models may be replaced; higher limits.", icon=":material/school:")
            return True
        st.error("That is not the teacher key.", icon=":material/lock:")
        return False


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainRequest:
    """What the settings form asks for: the config, where to save, and whether replacing is allowed."""

    config: TrainConfig
    out_path: Path
    replace: bool


SAMPLE_NOTE = (
    "Training on the bundled sample of 1,000 test images (the full CIFAR-10 is not on this machine): "
    "for trying the page, not for real accuracy. The last validation images of the sample validate; "
    "the dataset page downloads the full data."
)


@dataclass(frozen=True)
class DataChoice:
    """What a classroom run can train on here: the most training and the default validation images."""

    use_sample: bool  # the full CIFAR-10 is absent: the bundled sample
    max_images: int  # training plus validation images available
    default_subset: int
    default_val: int


def data_choice(sample: bool) -> DataChoice:
    """The full training split, or the bundled sample when the full data is absent."""
    if sample:
        total = data.SAMPLE_SIZE
        return DataChoice(True, total, total - data.SAMPLE_VAL_SIZE, data.SAMPLE_VAL_SIZE)
    return DataChoice(False, MAX_TRAIN_IMAGES + data.VALIDATION_SIZE, CLASSROOM_SUBSET, data.VALIDATION_SIZE)


def classroom_settings(
    model: str, *, owner: str, teacher: bool, disabled: bool, sample: bool = False
) -> TrainRequest | None:
    """The hyperparameter form for `model`; the request when Start was pressed and the settings are valid.

    A form, so no value counts until Start is pressed; Enter in a field does not submit it.
    With `sample`, the run trains on the bundled 1,000-image sample (the full data is absent).
    """
    source = data_choice(sample)
    recipe = TrainConfig.for_model(model)
    bounds = classroom.limits(teacher)
    limit_note = "(the teacher's limit)" if teacher else "in a classroom run (the teacher key raises it)"
    with st.form(f"train_settings_{model}", border=True, enter_to_submit=False):
        left, right = st.columns(2)
        epochs = left.number_input(
            "Epochs (passes over the images)",
            1,
            bounds.max_epochs,
            min(CLASSROOM_EPOCHS, recipe.epochs),
            key=f"train_epochs_{model}",
            help=f"At most {bounds.max_epochs} {limit_note}.",
        )
        batch_size = right.select_slider(
            "Batch size (images per step)",
            BATCH_SIZES,
            value=recipe.batch_size if recipe.batch_size in BATCH_SIZES else 32,
            key=f"train_batch_{model}",
        )
        learning_rate = left.number_input(
            "Learning rate", 1e-5, 10.0, float(recipe.learning_rate), format="%.5f", key=f"train_lr_{model}"
        )
        most_images = min(bounds.max_subset, source.max_images - 1)
        subset = right.number_input(
            "Training images (first N of the " + ("sample)" if sample else "training set)"),
            16,
            most_images,
            min(source.default_subset, most_images),
            step=100 if sample else 500,
            key=f"train_subset_{model}",
            help=f"At most {most_images:,} {limit_note}.",
        )
        augment = st.checkbox(
            "Augmentation: random flips and shifts of up to 2 pixels", recipe.augment, key=f"train_augment_{model}"
        )
        mixed = st.checkbox(
            "Mixed precision (bf16): faster only on a CPU with native bf16",
            cpu_has_native_bf16(),
            key=f"train_bf16_{model}",
            help="On by default when this CPU has AVX-512 BF16 or AMX; without them bf16 "
            "is about 2.5x slower than float32.",
        )
        with st.expander("Validation and saving"):
            val_size = st.number_input(
                "Validation images (the last N " + ("sample images)" if sample else "training images)"),
                10,
                min(10_000, source.max_images - 16),
                source.default_val,
                step=100 if sample else 500,
                key=f"train_val_{model}",
            )
            out_name = st.text_input(
                f"Save as models/NAME.keras (letters, digits, _ and -; shipped names such as {model} are read-only)",
                classroom.suggested_name(model, owner),
                key=f"train_out_{model}",
            )
            replace = teacher and st.checkbox(
                "Replace an existing model of that name (teacher)", False, key=f"train_replace_{model}"
            )
        submitted = st.form_submit_button(
            "Start training", type="primary", disabled=disabled, icon=":material/play_arrow:"
        )
    if not submitted:
        return None
    try:
        if int(subset) + int(val_size) > source.max_images:
            raise UserError(
                f"{int(subset):,} training plus {int(val_size):,} validation images are more than the "
                f"{source.max_images:,} " + ("images of the sample." if sample else "training images.")
            )
        config = TrainConfig.for_model(
            model,
            epochs=int(epochs),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            augment=bool(augment),
            subset=int(subset),
            val_size=int(val_size),
            mixed_precision=bool(mixed),
            use_sample=sample or None,
        )
        return TrainRequest(config, classroom.output_path(out_name), bool(replace))
    except UserError as error:
        show_user_error(error)
        return None


def shown_run_dir(model: str, owner: str) -> Path:
    """The run this session watches: the page link's `?run=NAME` (kept across reloads), else its default name's."""
    name = st.query_params.get("run")
    if name and classroom.NAME_PATTERN.fullmatch(name):
        return runs.run_dir_for(name)
    return runs.run_dir_for(classroom.suggested_name(model, owner))


def start_or_resume(request: TrainRequest | None, resume_dir: Path | None, *, owner: str, teacher: bool) -> bool:
    """Start the requested run or resume `resume_dir` (classroom rules apply); True when one was started.

    The started run's name goes into the page link (`?run=NAME`), so a reload shows it again.
    """
    try:
        if resume_dir is not None:
            classroom.resume_run(resume_dir, teacher=teacher)
            return True
        if request is not None:
            run_dir = classroom.start_run(
                request.config, request.out_path, owner=owner, teacher=teacher, replace=request.replace
            )
            st.query_params["run"] = run_dir.name
            return True
    except UserError as error:
        show_user_error(error)
    return False


def settings_summary(config: Mapping | None) -> str:
    """One line naming a run's settings."""
    if not config:
        return ""
    subset = f"{config['subset']:,} images" if config.get("subset") else "all training images"
    if config.get("use_sample"):
        subset += " of the bundled 1,000-image sample"
    return (
        f"{config['model']}: {config['epochs']} epochs, batch {config['batch_size']}, learning rate "
        f"{config['learning_rate']:g}, augmentation {'on' if config.get('augment') else 'off'}, {subset}, "
        f"{config.get('val_size', 0):,} validation images"
    )


# ---------------------------------------------------------------- the machine's queue


def machine_queue(*, teacher: bool) -> None:
    """How busy the machine is (slots in use, runs waiting), and the teacher's worker limit."""
    try:
        limit, busy, line = jobs.max_workers(), jobs.slots_in_use(), jobs.waiting()
    except UserError as error:
        show_user_error(error)
        return
    st.caption(
        f"This machine trains at most {limit} run{'s' if limit > 1 else ''} at once: {busy} training now, "
        f"{len(line)} waiting in line. Further starts wait their turn."
    )
    if teacher:
        chosen = st.number_input(
            "Runs that may train at once (teacher)", 1, jobs.MAX_WORKERS_LIMIT, limit, key="train_max_workers"
        )
        if chosen != limit:
            jobs.set_max_workers(int(chosen))


# ---------------------------------------------------------------- the live run


def read_state(run_dir: Path) -> RunState | None:
    """The run's state (with its place in the queue), or None after showing why its files cannot be read."""
    try:
        return jobs.run_state_in_queue(run_dir)
    except UserError as error:
        st.error(f"{error} Start a new run to replace it.", icon=":material/error:")
        return None


def resume_button(state: RunState | None) -> bool:
    """A Resume button, shown only when the run can be resumed (its status says so)."""
    return bool(state and state.can_resume) and st.button(
        "Resume",
        icon=":material/resume:",
        key="train_resume",
        help="Continue this run's checkpoint and history (or start it again if it had no checkpoint yet).",
    )


@dataclass(frozen=True)
class _RunControl:
    """The button that ends a run early, and what pressing it does to the run folder."""

    label: str
    icon: str
    help: str
    act: Callable[[Path], None]


_CANCEL = _RunControl(
    "Cancel", ":material/cancel:", "Takes this run out of the line; nothing is trained.", jobs.cancel_run
)
_STOP = _RunControl(
    "Stop", ":material/stop:", "Stops after the current batch; history and checkpoint are kept.", jobs.stop_run
)


def _run_control(state: RunState, run_dir: Path) -> None:
    """Cancel for a queued run, Stop for a running one (none for a finished one); a press redraws the panel."""
    control = _CANCEL if state.state == "queued" else _STOP if state.active else None
    if control is None:
        return
    key = f"{control.label.lower()}_{run_dir.name}"
    if st.button(control.label, icon=control.icon, key=key, help=control.help):
        control.act(run_dir)
        st.rerun(scope="fragment")


def run_panel(run_dir: Path) -> None:
    """Status, batch progress, Stop or Cancel, and the live charts of the run in `run_dir`.

    Polls the run folder every POLL_S seconds while the run is active (a fragment,
    so only this panel redraws); when the run ends, the whole page reruns once
    so the Start and Resume buttons come back.
    """
    first = read_state(run_dir)
    active = bool(first and first.active)

    @st.fragment(run_every=POLL_S if active else None)
    def panel() -> None:
        state = read_state(run_dir)
        if state is None:
            return
        if active and not state.active:
            st.rerun()  # the run just ended: redraw the buttons outside this panel
        _status(state, run_dir)
        _run_control(state, run_dir)
        if state.history:
            charts(state.history, key=f"live_{run_dir.name}")
            st.caption(
                f"{state.epoch} finished epoch(s) of {state.epochs}"
                + (
                    " and a partial one (stopped mid-epoch: the dotted end with an open marker)"
                    if state.partial_last_epoch
                    else ""
                )
                + f", read from {run_dir.name}/history.jsonl; the charts gain a point after every epoch."
            )
        elif state.state not in ("idle", "queued", "cancelled"):
            st.caption("The charts appear after the first epoch.")

    panel()


def _status(state: RunState, run_dir: Path) -> None:
    name = Path(state.out_path or f"{run_dir.name}.keras").name
    if state.state == "idle":
        st.info(
            f"No run of this model yet under the name {run_dir.name}: choose the settings and press Start.",
            icon=":material/info:",
        )
        return
    st.markdown(f"**Run {run_dir.name}:** {settings_summary(state.config)}")
    if state.state == "queued":
        position = jobs.ordinal(state.queue_position) if state.queue_position else "next"
        limit = jobs.max_workers()
        st.info(
            f"Waiting: {position} in line. This machine trains {limit} run{'s' if limit > 1 else ''} at once, "
            "so that every run gets its share of the processor; yours starts by itself when a slot frees. "
            "Cancel takes it out of the line.",
            icon=":material/hourglass_top:",
        )
        return
    if state.active:
        epoch_now = min(state.epoch + 1, state.epochs)
        detail = state.message or (
            f"epoch {epoch_now} of {state.epochs}, batch {state.batch} of {state.batches}"
            if state.batches
            else f"epoch {epoch_now} of {state.epochs}"
        )
        st.progress(state.progress, text=f"{state.state.capitalize()}: {detail}")
        return
    if state.state == "finished":
        st.success(
            f"Finished {state.epoch} epochs and saved {name} with its sidecar: it is on the Evaluate page now.",
            icon=":material/check_circle:",
        )
    elif state.state == "stopped" and state.message == NOT_STARTED_MESSAGE:
        st.info(state.message, icon=":material/pause_circle:")
    elif state.state == "stopped":
        partial = " and part of the next" if state.partial_last_epoch else ""
        st.info(
            f"Stopped after {state.epoch} of {state.epochs} epochs{partial}; the model so far is saved as "
            f"{name}. Resume continues the same history" + (" (it redoes the partial epoch)." if partial else "."),
            icon=":material/pause_circle:",
        )
    elif state.state == "cancelled":
        st.info(state.message, icon=":material/cancel:")
    elif state.state == "killed":
        how = (
            "Resume continues from its last checkpoint: at most one epoch is lost."
            if state.has_checkpoint
            else "It had not finished an epoch, so there is no checkpoint: Resume starts it again with the "
            "same settings."
        )
        st.warning(f"{state.message} {how}", icon=":material/warning:")
    elif state.state == "failed":
        st.error(f"The run failed: {state.message}", icon=":material/error:")
        with st.expander("Worker log (last lines)"):
            st.code(jobs.log_tail(run_dir), language="text")


def charts(histories_or_rows, *, key: str) -> None:
    """The loss and accuracy charts side by side, for one run's rows or {name: rows}."""
    histories = histories_or_rows if isinstance(histories_or_rows, Mapping) else {"this run": histories_or_rows}
    loss, accuracy = learning_curves(histories)
    left, right = st.columns(2)
    left.plotly_chart(loss, key=f"{key}_loss")
    right.plotly_chart(accuracy, key=f"{key}_accuracy")


def other_active_runs(current: Path) -> None:
    """A note for every other run that is training or waiting now (in this or another session)."""
    for folder, state in jobs.active_runs(current.parent):
        if folder != current:
            where = (
                f"waiting, {jobs.ordinal(state.queue_position)} in line"
                if state.queue_position
                else f"epoch {min(state.epoch + 1, state.epochs)} of {state.epochs}"
            )
            st.info(
                f"{folder.name} ({state.model}) is {'queued' if state.state == 'queued' else 'training'} now: {where}.",
                icon=":material/model_training:",
            )


def saved_histories(records: Sequence[dict], names: Sequence[str]) -> dict[str, list[dict]]:
    """{name: history} of the chosen saved models that stored one."""
    by_name = {record["name"]: record for record in records}
    return {name: by_name[name].get("history") or [] for name in names if name in by_name}


def default_overlay(records: Sequence[dict]) -> list[str]:
    """The report's model 1 and model 2 when saved (the overfitting story), else the two best."""
    names = [record["name"] for record in records]
    story = [name for name in ("base", "dropout") if name in names]
    return story if len(story) == 2 else names[:2]
