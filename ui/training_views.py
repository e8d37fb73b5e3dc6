"""Train page pieces: the settings form, the live run panel (polled fragment) and learning-curve figures.

The run itself is a worker process (`cnn.jobs`); everything shown here is read
back from its run folder, so a reload or a second tab shows the same run.
No TensorFlow here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import plotly.graph_objects as go
import streamlit as st

from cnn import data, jobs
from cnn.errors import UserError
from cnn.training import TrainConfig

POLL_S = 1.0  # seconds between reads of the run folder while a run is active
# Okabe-Ito: a qualitative palette that colour-blind readers can tell apart.
OKABE_ITO = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#000000", "#F0E442")
CLASSROOM_EPOCHS = 3  # default epochs of a classroom run (the recipes' 15-35 take too long in class)
CLASSROOM_SUBSET = 5_000  # default training images of a classroom run
BATCH_SIZES = (8, 16, 32, 64, 128, 256, 512, 1024)
METRICS = {"loss": "loss (cross-entropy)", "accuracy": "accuracy"}
LINE_STYLES = {"training": dict(dash="solid", symbol="circle"), "validation": dict(dash="dash", symbol="square")}


# ---------------------------------------------------------------- figures (no Streamlit)


def learning_curve(histories: Mapping[str, Sequence[dict]], metric: str) -> go.Figure:
    """Training (solid, circles) and validation (dashed, squares) `metric` per epoch, one colour per model.

    Args:
        histories: model name -> per-epoch rows (`epoch`, `loss`, `val_loss`, `accuracy`, `val_accuracy`).
        metric: "loss" or "accuracy".
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}, not {metric!r}")
    figure = go.Figure()
    for index, (name, rows) in enumerate(histories.items()):
        color = OKABE_ITO[index % len(OKABE_ITO)]
        for part, key in (("training", metric), ("validation", f"val_{metric}")):
            points = [row for row in rows if row.get(key) is not None]
            if not points:
                continue
            values = [float(row[key]) for row in points]
            last_text = f"{values[-1]:.1%}" if metric == "accuracy" else f"{values[-1]:.3f}"
            figure.add_trace(go.Scatter(
                x=[row["epoch"] for row in points], y=values, name=f"{name}: {part}",
                mode="lines+markers+text", text=[""] * (len(values) - 1) + [last_text],
                textposition="middle right", textfont=dict(color=color),
                line=dict(color=color, width=2, dash=LINE_STYLES[part]["dash"]),
                marker=dict(symbol=LINE_STYLES[part]["symbol"], size=7, color=color),
                hovertemplate=f"{name} {part}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
            ))
    figure.update_layout(title=f"{METRICS[metric].capitalize()} per epoch", height=340,
                         margin=dict(l=60, r=60, t=50, b=40), legend=dict(orientation="h", y=-0.25))
    figure.update_xaxes(title_text="epoch", rangemode="tozero", dtick=_epoch_tick(histories))
    figure.update_yaxes(title_text=METRICS[metric], tickformat=".0%" if metric == "accuracy" else None)
    return figure


def _epoch_tick(histories: Mapping[str, Sequence[dict]]) -> int | None:
    longest = max((len(rows) for rows in histories.values()), default=0)
    return 1 if longest <= 20 else None


def learning_curves(histories: Mapping[str, Sequence[dict]]) -> tuple[go.Figure, go.Figure]:
    """The loss and the accuracy figure of the same runs."""
    return learning_curve(histories, "loss"), learning_curve(histories, "accuracy")


# ---------------------------------------------------------------- settings


@dataclass(frozen=True)
class TrainRequest:
    """What the settings form asks for: the config, where to save, and whether replacing is allowed."""

    config: TrainConfig
    out_path: Path
    overwrite: bool


def classroom_settings(model: str, *, disabled: bool) -> TrainRequest | None:
    """The hyperparameter form for `model`; the request when Start was pressed and the settings are valid."""
    recipe = TrainConfig.for_model(model)
    with st.form(f"train_settings_{model}", border=True):
        left, right = st.columns(2)
        epochs = left.number_input("Epochs (passes over the images)", 1, 200,
                                   min(CLASSROOM_EPOCHS, recipe.epochs), key=f"train_epochs_{model}")
        batch_size = right.select_slider("Batch size (images per step)", BATCH_SIZES,
                                         value=recipe.batch_size if recipe.batch_size in BATCH_SIZES else 32,
                                         key=f"train_batch_{model}")
        learning_rate = left.number_input("Learning rate", 1e-5, 10.0, float(recipe.learning_rate),
                                          format="%.5f", key=f"train_lr_{model}")
        subset = right.number_input("Training images (first N of the training set)", 16, 45_000,
                                    CLASSROOM_SUBSET, step=500, key=f"train_subset_{model}")
        augment = st.checkbox("Augmentation: random flips and shifts of up to 2 pixels", recipe.augment,
                              key=f"train_augment_{model}")
        with st.expander("Validation and saving"):
            val_size = st.number_input("Validation images (the last N training images)", 10, 10_000,
                                       data.VALIDATION_SIZE, step=500, key=f"train_val_{model}")
            out_name = st.text_input("Save as models/NAME.keras", jobs.default_output_name(model),
                                     key=f"train_out_{model}")
            overwrite = st.checkbox("Overwrite an existing shipped model of that name", False,
                                    key=f"train_overwrite_{model}")
        submitted = st.form_submit_button("Start training", type="primary", disabled=disabled,
                                          icon=":material/play_arrow:")
    if not submitted:
        return None
    try:
        config = TrainConfig.for_model(model, epochs=int(epochs), batch_size=int(batch_size),
                                       learning_rate=float(learning_rate), augment=bool(augment),
                                       subset=int(subset), val_size=int(val_size))
        return TrainRequest(config, jobs.output_path(out_name.strip()), bool(overwrite))
    except UserError as error:
        st.error(str(error), icon=":material/error:")
        return None


def settings_summary(config: Mapping | None) -> str:
    """One line naming a run's settings."""
    if not config:
        return ""
    subset = f"{config['subset']:,} images" if config.get("subset") else "all training images"
    return (f"{config['model']}: {config['epochs']} epochs, batch {config['batch_size']}, learning rate "
            f"{config['learning_rate']:g}, augmentation {'on' if config.get('augment') else 'off'}, {subset}, "
            f"{config.get('val_size', 0):,} validation images")


# ---------------------------------------------------------------- the live run


def read_state(run_dir: Path) -> jobs.RunState | None:
    """The run's state, or None after showing why its files cannot be read."""
    try:
        return jobs.run_state(run_dir)
    except UserError as error:
        st.error(f"{error} Start a new run to replace it.", icon=":material/error:")
        return None


def run_panel(run_dir: Path) -> None:
    """Status, batch progress, Stop, and the live charts of the run in `run_dir`.

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
        if state.active and st.button("Stop", icon=":material/stop:", key=f"stop_{run_dir.name}",
                                      help="Stops after the current batch; history and checkpoint are kept."):
            jobs.stop_run(run_dir)
            st.rerun(scope="fragment")
        if state.history:
            charts(state.history, key=f"live_{run_dir.name}")
            st.caption(f"{len(state.history)} finished epoch(s) of {state.epochs}, read from {run_dir.name}/"
                       "history.jsonl; the charts gain a point after every epoch.")
        elif state.state != "idle":
            st.caption("The charts appear after the first epoch.")

    panel()


def _status(state: jobs.RunState, run_dir: Path) -> None:
    if state.state == "idle":
        st.info("No run of this model yet: choose the settings and press Start.", icon=":material/info:")
        return
    st.markdown(f"**Run:** {settings_summary(state.config)}")
    if state.active:
        epoch_now = min(state.epoch + 1, state.epochs)
        detail = state.message or (f"epoch {epoch_now} of {state.epochs}, batch {state.batch} of {state.batches}"
                                   if state.batches else f"epoch {epoch_now} of {state.epochs}")
        st.progress(state.progress, text=f"{state.state.capitalize()}: {detail}")
        return
    if state.state == "finished":
        st.success(f"Finished {state.epoch} epochs and saved {Path(state.out_path or '').name} with its sidecar: "
                   "it is on the Evaluate page now.", icon=":material/check_circle:")
    elif state.state == "stopped" and state.message == jobs.NOT_STARTED_MESSAGE:
        st.info(state.message, icon=":material/pause_circle:")
    elif state.state == "stopped":
        st.info(f"Stopped after {state.epoch} of {state.epochs} epochs (the last one may be partial); the model "
                f"so far is saved as {Path(state.out_path or '').name}. Resume continues the same history.",
                icon=":material/pause_circle:")
    elif state.state == "killed":
        st.warning(f"The worker was killed: {state.message}", icon=":material/warning:")
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
    """A note for every other model that is training now (in this or another tab)."""
    for folder, state in jobs.active_runs(current.parent):
        if folder != current:
            st.info(f"{state.model} is training now (epoch {min(state.epoch + 1, state.epochs)} of {state.epochs}, "
                    f"run folder {folder.name}).", icon=":material/model_training:")


def saved_histories(records: Sequence[dict], names: Sequence[str]) -> dict[str, list[dict]]:
    """{name: history} of the chosen saved models that stored one."""
    by_name = {record["name"]: record for record in records}
    return {name: by_name[name].get("history") or [] for name in names if name in by_name}


def default_overlay(records: Sequence[dict]) -> list[str]:
    """The report's model 1 and model 2 when saved (the overfitting story), else the two best."""
    names = [record["name"] for record in records]
    story = [name for name in ("base", "dropout") if name in names]
    return story if len(story) == 2 else names[:2]
