"""Evaluate page pieces: a model's predictions, per-class metrics, confusion matrix, mistakes, model comparison.

A shipped model's predictions are stored beside it (`models/NAME.predictions.npz`,
verified against the model's sha256), so its page draws at once without
TensorFlow. A model without them is measured here: the exact test images
0-999 first, with a progress bar and an estimate, the whole test set when
asked. Measured predictions are kept per (model file, test data) for every
session, and stored ones are checked once: both are keyed by the file's
`resources.ModelFile` (path, inode, size, mtime), so a rerun hashes nothing
and a retrained file is checked or measured afresh.
"""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cnn import CLASS_NAMES, NUM_CLASSES, artifacts
from cnn.data import CLEAN_TEST_STOP
from cnn.errors import UserError
from cnn.evaluation import (
    PREDICTIONS_KEY,
    SERVER_BATCH,
    Estimate,
    Evaluation,
    Predictions,
    ProgressClock,
    load_stored_predictions,
    predict_split,
    predictions_path,
)
from cnn.pictures import enlarge
from cnn.zoo import report_accuracy, zoo_position
from ui import resources
from ui.plots import COLOR_SCALE, LINE_COLOR, OKABE_ITO

CONFUSION_KEY = "eval_confusion"
TRUE_KEY, PREDICTED_KEY = "eval_true", "eval_predicted"
GALLERY_PAGE_KEY = "eval_gallery_page"
MISTAKES_SHOWN = 12  # images per gallery page
GALLERY_COLUMNS = 4  # images per row: room for each one's three-line caption
GALLERY_SCALE = 4  # screen pixels per image pixel: square pixels keep the 32x32 images sharp
TABLE_ROW_PX = 35  # st.dataframe's row height: the per-class table is sized to show every row
CLEAN_LABEL = "test images 0-999 (exact)"
WHOLE_LABEL = "whole test set (images 1000-9999 JPEG-derived in the shared copy)"
SAMPLE_LABEL = "bundled sample (exact test images 0-999)"
MEASURED_HERE = "No usable predictions are stored with this model, so it is run here"
STORED_DESCRIPTION = (
    "the whole CIFAR-10 test set, from the predictions stored beside the model "
    "(recorded by `python -m cnn evaluate {name} --record`; in the shared copy, images 1000-9999 "
    "are JPEG-derived)"
)


@dataclass(frozen=True)
class TestEvaluation:
    """A model's evaluations on the test data (exact part, whole set): stored beside the model, or measured here."""

    clean: Evaluation  # test images 0-999: exact
    whole: Evaluation | None  # the whole test set, when stored or measured
    data_description: str

    @property
    def main(self) -> Evaluation:
        return self.whole or self.clean


# ---------------------------------------------------------------- stored predictions


def stored_evaluation(name: str) -> TestEvaluation | None:
    """The evaluation drawn from the predictions stored beside the model; None when it has none.

    Raises ModelFileError (a UserError) when they are stale or damaged: the page then says so and measures.
    Checked once per version of the model file, its sidecar and its predictions file, not on every rerun.
    """
    file = resources.model_file(name)
    path = Path(file.path)
    outcome = _stored_evaluation(
        file, resources.file_version(artifacts.sidecar_path(path)), resources.file_version(predictions_path(path))
    )
    if isinstance(outcome, UserError):
        raise copy.copy(outcome)  # a fresh raise: the cached error, shared by every session, keeps no traceback
    return outcome


@st.cache_resource(max_entries=32)
def _stored_evaluation(
    file: resources.ModelFile, sidecar_version: tuple | None, predictions_version: tuple | None
) -> TestEvaluation | UserError | None:
    """`stored_evaluation`'s answer for these versions of the three files (the versions only key the cache);
    a stale or damaged file's error is kept too, so reruns do not check it again."""
    path = Path(file.path)
    try:
        record = artifacts.read_sidecar(path)
        if record.get(PREDICTIONS_KEY) is None:  # none stored: the model is measured, and hashed when it loads
            return None
        stored = load_stored_predictions(path, record, artifacts.sha256_of(path))
    except UserError as error:
        return error
    answers = None if stored is None else stored.get("test")
    if answers is None:
        return None
    clean = Evaluation.from_predictions(answers.subset(0, CLEAN_TEST_STOP), CLEAN_LABEL)
    whole = Evaluation.from_predictions(answers, WHOLE_LABEL) if len(answers) > CLEAN_TEST_STOP else None
    return TestEvaluation(clean, whole, STORED_DESCRIPTION.format(name=path.stem))


# ---------------------------------------------------------------- predictions measured here


def test_data():
    """(split, description, key naming the data for the cache, is_full)."""
    split, description = resources.test_images()
    is_full = resources.full_test_split() is not None
    return split, description, (f"full:{len(split)}" if is_full else f"sample:{len(split)}"), is_full


@st.cache_resource
def _measured() -> dict:
    """Predictions measured on this machine, shared by every session: {(ModelFile, data key, stop): ...}.

    Compact (15 bytes per image), so keeping every model's is cheap.
    """
    return {"lock": threading.Lock(), "model_locks": {}, "answers": {}, "pace_s": {}}


def _measured_key(name: str, data_key: str, stop: int) -> tuple:
    """(model file, test data, images 0..stop-1): one `stat`, no hashing; a retrained file is a new key."""
    return resources.model_file(name), data_key, stop


def measured_evaluation(name: str) -> TestEvaluation | None:
    """The evaluation measured here so far: images 0-999, and the whole set once it has been measured."""
    split, description, data_key, is_full = test_data()
    store = _measured()["answers"]
    clean_key = _measured_key(name, data_key, min(CLEAN_TEST_STOP, len(split)))
    if clean_key not in store:
        return None
    clean = _measured_evaluation_of(clean_key, CLEAN_LABEL if is_full else SAMPLE_LABEL)
    whole_key = _measured_key(name, data_key, len(split))
    whole = (
        _measured_evaluation_of(whole_key, WHOLE_LABEL) if whole_key in store and len(split) > CLEAN_TEST_STOP else None
    )
    return TestEvaluation(clean, whole, description)


@st.cache_resource(max_entries=32)
def _measured_evaluation_of(key: tuple, split_name: str) -> Evaluation:
    """The evaluation of the predictions measured under `key`, made once: a rerun reuses its sklearn report."""
    return Evaluation.from_predictions(_measured()["answers"][key], split_name)


def measure(name: str, stop: int, show: Callable[[Estimate], None]) -> Predictions:
    """Run the model on test images 0..stop-1 (those already measured are reused), reporting progress."""
    split, _, data_key, _ = test_data()
    stop = min(stop, len(split))
    memory = _measured()
    key = _measured_key(name, data_key, stop)
    with memory["lock"]:
        model_lock = memory["model_locks"].setdefault(key[:2], threading.Lock())
    with model_lock:  # two sessions asking for the same model measure it once; other models go on
        if key in memory["answers"]:
            return memory["answers"][key]
        model, _ = resources.get_model(name)
        done = _longest_measured_prefix(memory["answers"], key)
        start = len(done) if done is not None else 0
        clock = ProgressClock(lambda estimate: show(Estimate(start + estimate.done, stop, estimate.elapsed_s)))
        rest = predict_split(model, split.subset(start, stop), batch_size=SERVER_BATCH, progress=clock)
        answers = rest if done is None else done.concatenate(rest)
        memory["answers"][key] = answers
        memory["pace_s"][key[0]] = clock.elapsed_s / max(1, stop - start)
    return answers


def seconds_per_image(name: str) -> float | None:
    """The pace measured on this machine for the model, for the whole-set button's estimate."""
    return _measured()["pace_s"].get(resources.model_file(name))


def _longest_measured_prefix(answers: dict, key: tuple) -> Predictions | None:
    """The longest run of images 0..k already measured for the same model file and data."""
    prefixes = [
        value for (file, data_key, stop), value in answers.items() if (file, data_key) == key[:2] and stop < key[2]
    ]
    return max(prefixes, key=len, default=None)


def progress_text(estimate: Estimate) -> str:
    """'400 of 1,000 test images, about 6 s left' for the progress bar."""
    left = estimate.remaining_s
    tail = "" if left is None else f", about {format_duration(left)} left"
    return f"Running the model: {estimate.done:,} of {estimate.total:,} test images{tail}"


def format_duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.1f} min"


def evaluation_measured_here(name: str) -> TestEvaluation:
    """A model without stored predictions: test images 0-999 first (progress bar and estimate), the whole
    test set when asked (a button with its estimated time)."""
    split, _, _, _ = test_data()
    st.info(
        f"{MEASURED_HERE}: first on the exact test images 0-999. `python -m cnn evaluate NAME --record` stores "
        "a model's predictions beside it, so that its page draws at once.",
        icon=":material/info:",
    )
    if measured_evaluation(name) is None:
        measure_with_progress(name, CLEAN_TEST_STOP)
    evaluation = measured_evaluation(name)
    if evaluation.whole is None and len(split) > CLEAN_TEST_STOP:
        pace = seconds_per_image(name)
        estimate = f", about {format_duration(pace * (len(split) - CLEAN_TEST_STOP))}" if pace else ""
        if st.button(f"Evaluate the whole test set ({len(split):,} images{estimate})", key="eval_whole"):
            measure_with_progress(name, len(split))
            evaluation = measured_evaluation(name)
    return evaluation


def measure_with_progress(name: str, stop: int) -> None:
    """`measure` behind a progress bar that says how many images are done and about how long is left."""
    bar = st.progress(0.0, text="Loading the model...")
    measure(
        name, stop, show=lambda estimate: bar.progress(estimate.done / estimate.total, text=progress_text(estimate))
    )
    bar.empty()


def cached_accuracies(name: str) -> tuple[float | None, float | None]:
    """(clean, whole) test accuracy: stored beside the model, else measured here (images 0-999 at least)."""
    evaluation = stored_evaluation(name)
    if evaluation is None:
        measure(name, CLEAN_TEST_STOP, show=lambda estimate: None)
        evaluation = measured_evaluation(name)
    return evaluation.clean.accuracy, evaluation.whole.accuracy if evaluation.whole else None


# ---------------------------------------------------------------- one model


def class_metrics_table(evaluation: Evaluation) -> pd.DataFrame:
    """Precision, recall, F1 and support per class (scikit-learn's classification_report) as a table: one row
    per class, then the averages."""
    rows = {name: evaluation.class_metrics[name] for name in (*CLASS_NAMES, "macro avg", "weighted avg")}
    table = pd.DataFrame(rows).T[["precision", "recall", "f1-score", "support"]]
    table["support"] = table["support"].astype(int)
    return table


def table_height(rows: int) -> int:
    """Pixels that show a header and `rows` rows of st.dataframe without an inner scroll bar."""
    return (rows + 1) * TABLE_ROW_PX + 3


def confusion_figure(evaluation: Evaluation, normalized: bool) -> go.Figure:
    """The confusion matrix: rows true class, columns predicted class, every cell's value written in it."""
    counts = evaluation.confusion.astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) if normalized else counts
    text = [[f"{value:.0%}" if normalized else f"{int(value)}" for value in row] for row in values]
    names = list(CLASS_NAMES)
    figure = go.Figure(
        go.Heatmap(
            z=values,
            x=names,
            y=names,
            colorscale=COLOR_SCALE,
            text=text,
            texttemplate="%{text}",
            colorbar=dict(title="share of true class" if normalized else "images"),
            hoverinfo="skip",
        )
    )
    # Invisible points on the cell centres make every cell clickable: plotly selects points, not heatmap
    # cells. A click selects the point under the pointer found by hovering, so these points carry the
    # hover label; with hoverinfo="skip" a click selected nothing.
    true_index, predicted_index = np.meshgrid(range(len(names)), range(len(names)), indexing="ij")
    figure.add_trace(
        go.Scatter(
            x=[names[i] for i in predicted_index.ravel()],
            y=[names[i] for i in true_index.ravel()],
            # Plain lists: a numpy array travels as a typed array and comes back from a click as {"0": .., "1": ..}.
            customdata=[[int(t), int(p)] for t, p in zip(true_index.ravel(), predicted_index.ravel())],
            text=[cell for row in text for cell in row],
            mode="markers",
            marker=dict(size=30, symbol="square", opacity=0),
            showlegend=False,
            hovertemplate="true %{y}, predicted %{x}: %{text}<br>click to see these images<extra></extra>",
        )
    )
    figure.update_layout(
        title=f"Confusion matrix ({'row-normalized' if normalized else 'counts'})",
        height=560,
        margin=dict(l=90, r=20, t=50, b=80),
        clickmode="event+select",
        hovermode="closest",
    )
    figure.update_xaxes(title_text="predicted class", tickangle=-40)
    figure.update_yaxes(title_text="true class", autorange="reversed")
    return figure


def pair_from_selection(points: Sequence[dict]) -> tuple[str, str] | None:
    """(true, predicted) class names of the first clicked confusion-matrix cell."""
    for point in points:
        if point.get("y") in CLASS_NAMES and point.get("x") in CLASS_NAMES:
            return point["y"], point["x"]
        custom = point.get("customdata")
        if isinstance(custom, dict):  # a typed array, as the browser serializes it
            custom = [custom.get("0"), custom.get("1")]
        if (
            isinstance(custom, (list, tuple))
            and len(custom) == 2
            and all(isinstance(index, int) and 0 <= index < NUM_CLASSES for index in custom)
        ):
            return CLASS_NAMES[custom[0]], CLASS_NAMES[custom[1]]
    return None


def _select_clicked_pair() -> None:
    """on_select callback: a clicked cell sets the pair pickers (before they are drawn)."""
    event = st.session_state.get(CONFUSION_KEY)
    pair = pair_from_selection((event or {}).get("selection", {}).get("points", []))
    if pair:
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = pair


def confusion_matrix(evaluation: Evaluation, normalized: bool) -> None:
    st.plotly_chart(
        confusion_figure(evaluation, normalized),
        key=CONFUSION_KEY,
        on_select=_select_clicked_pair,
        selection_mode="points",
    )
    st.caption(
        f"Rows: the true class; columns: the class the model predicted; {evaluation.n:,} images of the "
        f"{evaluation.split}. The diagonal holds the correct answers; the colour scale (Cividis) is readable "
        "with colour-blindness, and every cell's value is written in it. Click a cell to see its images."
    )


def pair_picker(evaluation: Evaluation) -> tuple[int, int]:
    """Two selectboxes (true, predicted), preset to the most confused pair; returns class indices."""
    if TRUE_KEY not in st.session_state:
        worst = evaluation.most_confused(1)
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = (
            worst[0][:2] if worst else (CLASS_NAMES[3], CLASS_NAMES[5])
        )
    left, right = st.columns(2)
    true_name = left.selectbox("True class", CLASS_NAMES, key=TRUE_KEY)
    predicted_name = right.selectbox("Predicted as", CLASS_NAMES, key=PREDICTED_KEY)
    return CLASS_NAMES.index(true_name), CLASS_NAMES.index(predicted_name)


def gallery_images(evaluation: Evaluation, shown: int) -> np.ndarray | None:
    """This machine's test images for the gallery; None (with a note) when they are not the evaluated ones."""
    split, _ = resources.test_images()
    count = min(len(split), evaluation.n)
    if not np.array_equal(split.labels[:count], evaluation.labels[:count]):
        st.warning(
            "The test images on this machine are not the ones these predictions were made on, so the "
            "images are not shown.",
            icon=":material/warning:",
        )
        return None
    if shown > len(split):
        st.caption(f"Only test images 0-{len(split) - 1:,} are on this machine: the gallery shows those.")
    return split.images


def mistakes_gallery(evaluation: Evaluation, true_label: int, predicted_label: int) -> None:
    """The images of `true_label` predicted as `predicted_label`, 12 a page, each with the model's top-3."""
    indices = evaluation.mistakes(true_label, predicted_label)
    true_name, predicted_name = CLASS_NAMES[true_label], CLASS_NAMES[predicted_label]
    verb = "correctly classified" if true_label == predicted_label else f"predicted as {predicted_name}"
    images = gallery_images(evaluation, int(indices.max()) + 1 if len(indices) else 0)
    if images is None:
        return
    indices = indices[indices < len(images)]
    pages = max(1, -(-len(indices) // MISTAKES_SHOWN))
    heading, pager = st.columns([3, 1], vertical_alignment="bottom")
    # One page number per pair and evaluation, so a new cell starts at its first page.
    page = pager.number_input(
        f"Page (of {pages})",
        min_value=1,
        max_value=pages,
        value=1,
        step=1,
        key=f"{GALLERY_PAGE_KEY}_{true_label}_{predicted_label}_{evaluation.n}",
        disabled=pages == 1,
    )
    first = (int(page) - 1) * MISTAKES_SHOWN
    shown = indices[first : first + MISTAKES_SHOWN]
    heading.markdown(
        f"**{len(indices):,}** {true_name} image(s) {verb}"
        + (f"; images {first + 1}-{first + len(shown)} are shown." if pages > 1 else ".")
    )
    columns = st.columns(GALLERY_COLUMNS, gap="medium")
    for position, index in enumerate(shown):
        # One line per class ("  \n" is a Markdown line break), so the top-3 reads as a short list.
        caption = (
            f"**#{index}**"
            + (" (JPEG)" if index >= CLEAN_TEST_STOP else "")
            + "  \n"
            + "  \n".join(
                f"{row.rank}. {row.class_name} {row.probability:.0%}" for row in evaluation.answers.top(index)
            )
        )
        columns[position % GALLERY_COLUMNS].image(enlarge(images[index], GALLERY_SCALE), caption=caption)
    if len(indices):
        st.caption(
            f"Test images whose true class is {true_name}, {verb}; under each: its test-set index and the "
            f"model's three most probable classes. {MISTAKES_SHOWN} images a page."
        )


def per_class_figure(evaluation: Evaluation) -> go.Figure:
    accuracy = evaluation.per_class_accuracy()
    figure = go.Figure(
        go.Bar(
            x=list(accuracy.values()),
            y=list(accuracy),
            orientation="h",
            marker=dict(color=LINE_COLOR),
            text=[f"{value:.1%}" for value in accuracy.values()],
            textposition="outside",
        )
    )
    figure.update_layout(title="Accuracy per class", height=380, margin=dict(l=90, r=40, t=50, b=40))
    figure.update_xaxes(
        title_text="share of the class's images classified correctly (recall)", range=[0, 1.12], tickformat=".0%"
    )
    figure.update_yaxes(title_text="true class", autorange="reversed")
    return figure


PAIR_SHARE = "% of the true class"


def confused_pairs_table(evaluation: Evaluation, count: int = 8) -> pd.DataFrame:
    """The pairs with the most mistakes, each with its share of the true class's images in percent."""
    totals = evaluation.confusion.sum(axis=1)
    return pd.DataFrame(
        [
            {
                "true class": true,
                "predicted as": predicted,
                "images": images,
                PAIR_SHARE: 100 * images / max(1, totals[CLASS_NAMES.index(true)]),
            }
            for true, predicted, images in evaluation.most_confused(count)
        ]
    )


# ---------------------------------------------------------------- comparing models


VALIDATION, TEST_EXACT, TEST_ALL, REPORTED = "validation %", "test 0-999 %", "test all %", "report %"
PERCENT_COLUMNS = (VALIDATION, TEST_EXACT, TEST_ALL, REPORTED)


def comparison_table(records: Sequence[dict], measured: dict[str, tuple]) -> pd.DataFrame:
    """One row per saved model, in the report's order (then ours, then the rest); accuracies in percent."""
    rows = []
    for record in sorted(records, key=lambda r: (zoo_position(r.get("model")), r["name"])):
        metrics = record.get("metrics", {})
        clean, whole = metrics.get("test_clean_accuracy"), metrics.get("test_all_accuracy")
        source = "sidecar" if clean is not None else ""
        if clean is None and record["name"] in measured:
            clean, whole = measured[record["name"]]
            source = "measured here"
        rows.append(
            {
                "model": record["name"],
                "zoo model": record.get("model"),
                "parameters": record.get("parameters"),
                "epochs": record.get("epochs"),
                "train (min)": (record.get("wall_time_s") or 0) / 60 or None,
                VALIDATION: _percent(metrics.get("val_accuracy")),
                TEST_EXACT: _percent(clean),
                TEST_ALL: _percent(whole),
                REPORTED: _percent(report_accuracy(record.get("model"))),
                "figures from": source,
            }
        )
    return pd.DataFrame(rows)


def _percent(share: float | None) -> float | None:
    return None if share is None else 100 * share


def comparison_column_config() -> dict:
    """Short headers with their explanation in the tooltip; every percentage with one decimal."""
    helps = {
        VALIDATION: "Accuracy on the last 5,000 training images (used to choose settings).",
        TEST_EXACT: "Accuracy on CIFAR-10 test images 0-999, identical to the official ones.",
        TEST_ALL: "Accuracy on all 10,000 test images; 1000-9999 are JPEG-derived in the shared copy.",
        REPORTED: "The test accuracy the course report gives.",
    }
    config = {name: st.column_config.NumberColumn(name, format="%.1f", help=text) for name, text in helps.items()}
    config["parameters"] = st.column_config.NumberColumn("parameters", format="localized")
    config["train (min)"] = st.column_config.NumberColumn(
        "train (min)", format="%.1f", help="Training wall time in minutes."
    )
    config["figures from"] = st.column_config.TextColumn(
        "figures from",
        help="sidecar: recorded by `python -m cnn evaluate NAME --record`; measured here: run in this session.",
    )
    return config


def _percent_bars(table: pd.DataFrame, column: str, name: str, marker: dict) -> go.Bar:
    """One bar per model that has a value in `column` (percent), each labelled with it."""
    rows = table.dropna(subset=[column])
    return go.Bar(
        x=rows["model"],
        y=rows[column],
        name=name,
        marker=marker,
        text=[f"{value:.1f}%" for value in rows[column]],
        textposition="outside",
    )


def story_figure(table: pd.DataFrame) -> go.Figure:
    """Our test accuracy (exact images 0-999) beside the report's figure, per model, in percent."""
    figure = go.Figure(
        [
            _percent_bars(table, TEST_EXACT, "ours: test images 0-999 (exact)", dict(color=OKABE_ITO["blue"])),
            _percent_bars(
                table, REPORTED, "the report's test accuracy", dict(color=OKABE_ITO["orange"], pattern=dict(shape="/"))
            ),
        ]
    )
    figure.update_layout(
        title="Test accuracy: ours and the report's",
        barmode="group",
        height=380,
        margin=dict(l=60, r=20, t=50, b=80),
        legend=dict(orientation="h", y=-0.3),
    )
    figure.update_xaxes(title_text="saved model")
    figure.update_yaxes(title_text="test accuracy (%)", range=[0, 110], ticksuffix="%")
    return figure
