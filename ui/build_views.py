"""Build page pieces: the editable layer stack, the live shape table, import/export, the train form, the race.

The stack lives in the session as a list of layer dicts, each with a `uid` that
keys its widgets (so moving a layer moves its widgets with it). Every number
shown comes from `cnn.spec.analyze`; training goes through `cnn.jobs`, the same
worker and run folder as the Train page. No TensorFlow here.
"""

from __future__ import annotations

from typing import Sequence

import pandas as pd
import streamlit as st

from cnn import classroom, data, runs
from cnn import spec as specs
from cnn.artifacts import list_models
from cnn.errors import UserError
from cnn.training import TrainConfig
from cnn.zoo import ZOO, our_models, report_accuracy, report_figures_text, report_models, stated_report_models
from ui.resources import show_user_error
from ui.training_views import TrainRequest

STACK = "build_stack"  # session key of the layer list
NEXT_UID = "build_next_uid"
MESSAGE = "build_message"  # (kind, text) shown once after a load or an import
DEFAULT_NAME = "my_cnn"
FIELDS_PER_ROW = 3  # settings side by side in a layer's box (half the page wide)
DEFAULT_EPOCHS = 3
DEFAULT_SUBSET = 5_000  # training images of a classroom run (as on the Train page)
# Raced against the built models: the report's models with a figure in the report, and ours.
REFERENCE_MODELS = tuple(entry.name for entry in (*stated_report_models(), *our_models()))
FIELD_LABELS = {
    "filters": "filters",
    "kernel": "kernel size",
    "stride": "stride",
    "padding": "padding",
    "activation": "activation",
    "use_bias": "bias",
    "size": "pool size",
    "rate": "dropout rate",
    "units": "units",
}


# ---------------------------------------------------------------- the stack (plain data, no widgets)


def with_uids(layers: Sequence[dict], first_uid: int) -> list[dict]:
    """Copies of `layers`, each with a fresh `uid` from `first_uid` on."""
    return [{**layer, "uid": first_uid + offset} for offset, layer in enumerate(layers)]


def moved(stack: list[dict], uid: int, step: int) -> list[dict]:
    """The stack with layer `uid` moved `step` places (-1 up, +1 down), unchanged at either end."""
    index = next(position for position, layer in enumerate(stack) if layer["uid"] == uid)
    target = index + step
    if not 0 <= target < len(stack):
        return stack
    result = list(stack)
    result[index], result[target] = result[target], result[index]
    return result


def duplicated(stack: list[dict], uid: int, new_uid: int) -> list[dict]:
    """The stack with a copy of layer `uid` right after it (the copy has no name: names are unique)."""
    index = next(position for position, layer in enumerate(stack) if layer["uid"] == uid)
    copy = {key: value for key, value in stack[index].items() if key != "name"}
    return stack[: index + 1] + [{**copy, "uid": new_uid}] + stack[index + 1 :]


def removed(stack: list[dict], uid: int) -> list[dict]:
    return [layer for layer in stack if layer["uid"] != uid]


def inserted(stack: list[dict], kind: str, after: int, new_uid: int) -> list[dict]:
    """The stack with a new `kind` layer after position `after` (0 = at the top)."""
    return stack[:after] + [{**specs.NEW_LAYERS[kind], "uid": new_uid}] + stack[after:]


def as_spec(stack: Sequence[dict]) -> dict:
    """The spec of the stack (the uids dropped)."""
    return {
        "version": specs.SPEC_VERSION,
        "layers": [{key: value for key, value in layer.items() if key != "uid"} for layer in stack],
    }


# ---------------------------------------------------------------- session state and callbacks


def _new_uid() -> int:
    uid = st.session_state.get(NEXT_UID, 0)
    st.session_state[NEXT_UID] = uid + 1
    return uid


def load(layers: Sequence[dict], message: str) -> None:
    """Replace the stack with `layers` (a spec's list), with fresh widget keys."""
    for key in [key for key in st.session_state if str(key).startswith("build_layer_")]:
        del st.session_state[key]
    first = st.session_state.get(NEXT_UID, 0)
    st.session_state[NEXT_UID] = first + len(layers)
    st.session_state[STACK] = with_uids(layers, first)
    st.session_state[MESSAGE] = ("success", message)


def current_stack() -> list[dict]:
    """The session's stack; the report's model 1 the first time."""
    if STACK not in st.session_state:
        load(specs.REPORT_SPECS["base"]["layers"], "")
        st.session_state.pop(MESSAGE, None)
    return st.session_state[STACK]


def _update(new_stack: list[dict]) -> None:
    st.session_state[STACK] = new_stack


def _widget_key(uid: int, field: str) -> str:
    return f"build_layer_{uid}_{field}"


# ---------------------------------------------------------------- starting points and import/export


def starting_points() -> dict[str, dict]:
    """{label: spec} of the report's six models and of every saved model built on this page."""
    points = {
        f"Report model {entry.report_number}: {entry.name} ({entry.summary})": specs.REPORT_SPECS[entry.name]
        for entry in report_models()
    }
    for record in list_models():
        spec = specs.spec_of(record)
        if spec is not None:
            points[f"Built here: {record['name']}"] = spec
    return points


def starting_point_picker() -> None:
    """A choice of starting points and a Load button; a JSON file to import."""
    points = starting_points()
    choice, button = st.columns([4, 1], vertical_alignment="bottom")
    choice.selectbox("Start from", list(points), key="build_start")
    button.button(
        "Load",
        key="build_load",
        icon=":material/upload:",
        on_click=_load_chosen,
        help="Replaces the stack below with this model's layers.",
    )
    st.file_uploader(
        "Or import a spec file (JSON, as exported below)",
        type=["json"],
        key="build_upload",
        on_change=_import_upload,
        max_upload_size=1,
    )


def _load_chosen() -> None:
    """The Load button: the starting point chosen in the selectbox (a callback sees the latest choice)."""
    label = st.session_state["build_start"]
    points = starting_points()
    if label in points:
        load(points[label]["layers"], f"Loaded {label.split(' (')[0]}: edit it below.")


def _import_upload() -> None:
    uploaded = st.session_state.get("build_upload")
    if uploaded is None:
        return
    try:
        spec = specs.parse_spec_text(uploaded.getvalue())
    except UserError as error:
        st.session_state[MESSAGE] = ("error", f"{uploaded.name} was not loaded: {error}")
        return
    load(spec["layers"], f"Imported {uploaded.name}: edit it below.")


def show_message() -> None:
    """The result of the last load or import, once."""
    kind, text = st.session_state.pop(MESSAGE, (None, None))
    if kind == "error":
        st.error(text, icon=":material/error:")
    elif text:
        st.success(text, icon=":material/check_circle:")


def export_button(analysis: specs.Analysis, name: str) -> None:
    st.download_button(
        "Export the spec (JSON)",
        specs.spec_to_text(analysis.spec) if analysis.ok else "",
        file_name=f"{name or 'my_cnn'}.json",
        mime="application/json",
        disabled=not analysis.ok,
        icon=":material/download:",
        key="build_export",
        help="A file you can share, import here again, or train with `python -m cnn train --spec`.",
    )


# ---------------------------------------------------------------- the layer editor


def layer_editor(stack: list[dict]) -> None:
    """One bordered box per layer: its settings and the up/down/duplicate/remove buttons; then Add."""
    for position, layer in enumerate(stack, start=1):
        with st.container(border=True):
            _layer_box(position, layer, len(stack))
    kind_column, after_column, add_column = st.columns([3, 2, 1], vertical_alignment="bottom")
    kind_column.selectbox(
        "Layer type to add", list(specs.LAYER_TYPES), key="build_add_type", format_func=specs.LAYER_LABELS.get
    )
    after_key = f"build_add_after_{len(stack)}"  # keyed by the length, so the default follows the stack's end
    after_column.number_input("after layer (0 = at the top)", 0, len(stack), len(stack), key=after_key)
    add_column.button("Add", key="build_add", icon=":material/add:", type="primary", on_click=_add, args=(after_key,))


def _add(after_key: str) -> None:
    """The Add button: the type and place from the widgets' state (a callback sees the latest values)."""
    after = int(st.session_state.get(after_key, len(current_stack())))
    _update(inserted(current_stack(), st.session_state["build_add_type"], after, _new_uid()))


def _layer_box(position: int, layer: dict, count: int) -> None:
    uid = layer["uid"]
    kind = layer.get("type")
    title, up, down, copy, drop = st.columns([6, 1, 1, 1, 1], vertical_alignment="center")
    title.markdown(f"**{position}. {specs.LAYER_LABELS.get(kind, kind)}**")
    up.button(
        "",
        key=f"build_up_{uid}",
        icon=":material/arrow_upward:",
        disabled=position == 1,
        help="Move up",
        on_click=lambda: _update(moved(current_stack(), uid, -1)),
    )
    down.button(
        "",
        key=f"build_down_{uid}",
        icon=":material/arrow_downward:",
        disabled=position == count,
        help="Move down",
        on_click=lambda: _update(moved(current_stack(), uid, +1)),
    )
    copy.button(
        "",
        key=f"build_copy_{uid}",
        icon=":material/content_copy:",
        help="Duplicate",
        on_click=lambda: _update(duplicated(current_stack(), uid, _new_uid())),
    )
    drop.button(
        "",
        key=f"build_remove_{uid}",
        icon=":material/delete:",
        help="Remove",
        on_click=lambda: _update(removed(current_stack(), uid)),
    )
    fields = list(specs.LAYER_TYPES.get(kind, {}).items())
    cells = [column for _ in range(0, len(fields) + 1, FIELDS_PER_ROW) for column in st.columns(FIELDS_PER_ROW)]
    for cell, (field, rule) in zip(cells, fields):
        with cell:
            layer[field] = _field_widget(uid, field, rule, layer.get(field, rule.default))
    with cells[len(fields)]:
        key = _widget_key(uid, "name")
        st.session_state.setdefault(key, layer.get("name", ""))
        name = st.text_input("name (optional)", key=key, max_chars=40)
        if name.strip():
            layer["name"] = name.strip()
        else:
            layer.pop("name", None)


def _field_widget(uid: int, field: str, rule, value):
    """The widget of one setting, its state kept under a key of the layer's uid."""
    key = _widget_key(uid, field)
    label = FIELD_LABELS.get(field, field)
    if isinstance(rule, specs.Number) and rule.whole:
        st.session_state.setdefault(key, int(value))
        return int(st.number_input(label, int(rule.low), int(rule.high), step=1, key=key))
    if isinstance(rule, specs.Number):
        st.session_state.setdefault(key, float(value))
        return float(st.number_input(label, rule.low, rule.high, step=0.05, format="%.2f", key=key))
    if isinstance(rule, specs.Choice):
        st.session_state.setdefault(key, value)
        return st.selectbox(label, rule.options, key=key)
    st.session_state.setdefault(key, bool(value))
    return st.checkbox(label, key=key)


# ---------------------------------------------------------------- the live table


def shape_table(analysis: specs.Analysis) -> pd.DataFrame:
    """The input row and one row per analysed layer: shape, parameters and how they come about."""
    rows = [
        {
            "#": 0,
            "Layer": "input image",
            "Output shape": str(specs.INPUT_SHAPE),
            "Parameters": 0,
            "Parameters: formula": "-",
            "Output size: formula": "32x32 pixels, 3 colour channels (RGB)",
        }
    ]
    rows += [
        {
            "#": row.index,
            "Layer": f"{row.layer} ({row.name})",
            "Output shape": str(row.output_shape),
            "Parameters": row.parameters,
            "Parameters: formula": row.parameter_formula,
            "Output size: formula": row.shape_formula,
        }
        for row in analysis.rows
    ]
    return pd.DataFrame(rows)


def live_table(analysis: specs.Analysis, limits: specs.Limits) -> None:
    """The shape table, the totals against the limits, and the first problem, if any."""
    st.dataframe(
        shape_table(analysis),
        hide_index=True,
        key="build_table",
        column_config={
            "#": st.column_config.NumberColumn(width=30),
            "Layer": st.column_config.TextColumn(width=190),
            "Output shape": st.column_config.TextColumn(width=95),
            "Parameters": st.column_config.NumberColumn(format="localized", width=85),
        },
    )
    if analysis.ok:
        total, work = st.columns(2)
        total.metric("Parameters", f"{analysis.parameters:,}", help=f"Classroom limit: {limits.max_parameters:,}")
        work.metric(
            "Multiply-adds per image",
            f"{analysis.multiply_adds / 1e6:,.1f} M",
            help=f"Forward pass of one image; classroom limit {limits.max_multiply_adds / 1e6:,.0f} M",
        )
    else:
        st.error(analysis.error, icon=":material/error:")
    st.caption(
        "Output shape: height, width, channels of each layer's output, without the batch. Conv2D: "
        "(kernel height x width x input channels + 1 bias) x filters; Dense: (inputs + 1) x units; "
        "BatchNormalization: 4 per channel; pooling, dropout, ReLU and flatten have none. The last row is "
        "the fixed softmax output over the 10 classes. The same formulas as the Inspect page."
    )


# ---------------------------------------------------------------- training


def train_form(analysis: specs.Analysis, *, teacher: bool, disabled: bool) -> TrainRequest | None:
    """Name, epochs and images, the estimate, and Start; the request when Start was pressed and all is valid."""
    name_column, epochs_column, subset_column = st.columns(3)
    name = name_column.text_input(
        "Model name (letters, digits, _ and -)", DEFAULT_NAME, key="build_name", max_chars=64
    ).strip()
    bounds = classroom.limits(teacher)  # the same epoch limit as the Train page's
    epochs = epochs_column.number_input(
        "Epochs",
        1,
        bounds.max_epochs,
        min(DEFAULT_EPOCHS, bounds.max_epochs),
        key="build_epochs",
        help=f"Classroom limit: {bounds.max_epochs}",
    )
    subset = subset_column.number_input(
        "Training images (first N)", 16, 45_000, DEFAULT_SUBSET, step=500, key="build_subset"
    )
    with st.expander("Validation images"):
        val_size = st.number_input(
            "Validation images (the last N training images)",
            10,
            10_000,
            data.VALIDATION_SIZE,
            step=500,
            key="build_val",
        )
    problem, existing = _name_problem(name)
    if problem:
        st.error(problem, icon=":material/error:")
    replace = False
    if existing:
        replace = st.checkbox(f"Replace the model {name!r} built earlier", key="build_replace")
    if analysis.ok:
        minutes = specs.minutes_per_epoch(analysis.spec, analysis.multiply_adds, int(subset), int(val_size))
        st.caption(
            f"Estimate on this machine: about {duration(minutes)} per epoch, {duration(minutes * epochs)} "
            f"for {epochs} epochs, plus about half a minute to start (from "
            f"{analysis.multiply_adds / 1e6:,.1f} M multiply-adds per image and the speeds measured on the "
            "report's models, with and without batch normalization; a busy machine is slower)."
        )
    start = st.button(
        "Start training",
        key="build_start_training",
        type="primary",
        icon=":material/play_arrow:",
        disabled=disabled or not analysis.ok or bool(problem),
    )
    if not start:
        return None
    try:
        config = TrainConfig.for_model(
            name, spec=analysis.spec, epochs=int(epochs), subset=int(subset), val_size=int(val_size)
        )
        return TrainRequest(config, classroom.output_path(name), replace)
    except UserError as error:
        show_user_error(error)
        return None


def duration(minutes: float) -> str:
    """'40 s', '3.5 min' or '2 h 10 min'."""
    if minutes < 1:
        return f"{max(1, round(minutes * 60))} s"
    if minutes < 90:
        return f"{minutes:.1f} min"
    return f"{int(minutes // 60)} h {round(minutes % 60)} min"


def _name_problem(name: str) -> tuple[str | None, bool]:
    """(what is wrong with the name or None, whether a built model of that name exists)."""
    try:
        return None, specs.existing_model(name) is not None
    except UserError as error:
        return str(error), False


def run_dir_of(name: str):
    """The run folder of the model called `name` (None while the name is invalid)."""
    try:
        return runs.run_dir_for(specs.check_model_name(name))
    except UserError:
        return None


# ---------------------------------------------------------------- the race


def race_records(records: Sequence[dict]) -> list[dict]:
    """Models built on this page, and the reference models (the report's models with a figure, and ours)."""
    return [
        record
        for record in records
        if specs.spec_of(record) is not None
        or (record["name"] in REFERENCE_MODELS and record.get("model") == record["name"])
    ]


def reference_models_text() -> str:
    """The reference models of the race in words, from the zoo: "the report's models that it gives a test
    accuracy for (`report_figures_text()`) and ours (the names of `our_models()`)"."""
    ours = ", ".join(entry.name for entry in our_models())
    return f"the report's models that it gives a test accuracy for ({report_figures_text()}) and ours ({ours})"


def leaderboard(records: Sequence[dict]) -> pd.DataFrame:
    """One row per raced model, best validation accuracy first."""
    rows = []
    for record in race_records(records):
        metrics = record.get("metrics") or {}
        spec = specs.spec_of(record) or specs.REPORT_SPECS.get(record.get("model"))
        built = specs.spec_of(record) is not None
        entry = ZOO.get(record["name"])
        rows.append(
            {
                "Model": record["name"],
                "Kind": "built here"
                if built
                else (f"report model {entry.report_number}" if entry.report_number else "ours"),
                "Layers": len(spec["layers"]) + 1 if spec else None,
                "Parameters": record.get("parameters"),
                "Epochs": record.get("epochs"),
                "Train (min)": round((record.get("wall_time_s") or 0) / 60, 1),
                "Validation (%)": _percent(metrics.get("val_accuracy")),
                "Test 0-999 (%)": _percent(metrics.get("test_clean_accuracy")),
                "Report (%)": _percent(report_accuracy(record["name"])),
            }
        )
    frame = pd.DataFrame(rows)
    return frame.sort_values("Validation (%)", ascending=False, na_position="last") if len(frame) else frame


def _percent(fraction) -> float | None:
    return round(100 * fraction, 1) if isinstance(fraction, (int, float)) else None


LEADERBOARD_COLUMNS = {
    "Layers": st.column_config.NumberColumn(help="Layers of the stack plus the softmax output."),
    "Parameters": st.column_config.NumberColumn(format="localized"),
    "Train (min)": st.column_config.NumberColumn(help="Training wall time in minutes."),
    "Validation (%)": st.column_config.NumberColumn(
        format="%.1f", help="Accuracy on the validation images (the last training images)."
    ),
    "Test 0-999 (%)": st.column_config.NumberColumn(
        format="%.1f", help="Accuracy on the exact CIFAR-10 test images 0-999."
    ),
    "Report (%)": st.column_config.NumberColumn(format="%.1f", help="The accuracy the course report gives."),
}


def default_race(frame: pd.DataFrame) -> list[str]:
    """The best built model and the report's model 1, when present."""
    built = frame[frame["Kind"] == "built here"]["Model"].tolist()[:2] if len(frame) else []
    return built + [name for name in ("base",) if len(frame) and name in frame["Model"].tolist()]
