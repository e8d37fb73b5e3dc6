"""Evaluate page pieces: cached test predictions, report table, confusion matrix, mistakes, model comparison.

Predictions are cached per (model file, sha256, test data), so coming back to a
model is instant and a retrained file is measured afresh. TensorFlow is loaded
only when a model has to be run.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st

from cnn import CLASS_NAMES
from cnn.data import CLEAN_TEST_STOP
from cnn.evaluation import EvalReport, report_from_probabilities
from cnn.inference import top_k
from cnn.recipes import ZOO_INFO
from ui import resources
from ui.plots import COLOR_SCALE, LINE_COLOR

CONFUSION_KEY = "eval_confusion"
TRUE_KEY, PREDICTED_KEY = "eval_true", "eval_predicted"
MISTAKES_SHOWN = 12
GALLERY_COLUMNS = 4  # images per row: room for each one's three-line caption
CLEAN_LABEL = "test images 0-999 (exact)"
WHOLE_LABEL = "whole test set (images 1000-9999 JPEG-derived in the shared copy)"
SAMPLE_LABEL = "bundled sample (exact test images 0-999)"


@dataclass(frozen=True)
class Evaluation:
    """A model's results on the test data this machine has."""

    clean: EvalReport  # test images 0-999: exact
    whole: EvalReport | None  # the whole test set, when the full data is present
    data_description: str

    @property
    def main(self) -> EvalReport:
        return self.whole or self.clean


# ---------------------------------------------------------------- cached predictions


def test_data():
    """(split, description, key naming the data for the cache, is_full)."""
    split, description = resources.test_images()
    is_full = resources.get_dataset() is not None
    return split, description, (f"full:{len(split)}" if is_full else f"sample:{len(split)}"), is_full


@st.cache_data(max_entries=32, show_spinner="Running the model on the test images...")
def _probabilities(name: str, file: resources.ModelFile, data_key: str) -> np.ndarray:
    """Test-set probabilities (N, 10) of one model file; the arguments are the cache key."""
    from cnn.inference import predict_proba

    model, _ = resources.get_model(name)
    split, _, _, _ = test_data()
    return predict_proba(model, split.images)


def evaluate_saved(name: str) -> Evaluation:
    """Evaluate a saved model on the clean images 0-999 and, with the full data, the whole test set."""
    split, description, data_key, is_full = test_data()
    probabilities = _probabilities(name, resources.model_file(name), data_key)
    stop = min(CLEAN_TEST_STOP, len(split))
    clean_name = CLEAN_LABEL if is_full else SAMPLE_LABEL
    clean = report_from_probabilities(probabilities[:stop], split.labels[:stop], clean_name)
    whole = (report_from_probabilities(probabilities, split.labels, WHOLE_LABEL)
             if is_full and len(split) > CLEAN_TEST_STOP else None)
    return Evaluation(clean, whole, description)


def cached_accuracies(record: dict) -> tuple[float | None, float | None]:
    """(clean, whole) test accuracy measured here, computing them (cached) for this model file."""
    evaluation = evaluate_saved(record["path"])
    return evaluation.clean.accuracy, evaluation.whole.accuracy if evaluation.whole else None


# ---------------------------------------------------------------- one model


def report_table(report: EvalReport) -> pd.DataFrame:
    """scikit-learn's classification report as a table: one row per class, then the averages."""
    rows = {name: report.report[name] for name in (*CLASS_NAMES, "macro avg", "weighted avg")}
    table = pd.DataFrame(rows).T[["precision", "recall", "f1-score", "support"]]
    table["support"] = table["support"].astype(int)
    return table


def confusion_figure(report: EvalReport, normalized: bool) -> go.Figure:
    """The confusion matrix: rows true class, columns predicted class, every cell's value written in it."""
    counts = report.confusion.astype(float)
    totals = counts.sum(axis=1, keepdims=True)
    values = np.divide(counts, totals, out=np.zeros_like(counts), where=totals > 0) if normalized else counts
    text = [[f"{value:.0%}" if normalized else f"{int(value)}" for value in row] for row in values]
    names = list(CLASS_NAMES)
    figure = go.Figure(go.Heatmap(
        z=values, x=names, y=names, colorscale=COLOR_SCALE, text=text, texttemplate="%{text}",
        colorbar=dict(title="share of true class" if normalized else "images"),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>",
    ))
    # Invisible points on the cell centres make every cell clickable (plotly selects points, not heatmap cells).
    true_index, predicted_index = np.meshgrid(range(len(names)), range(len(names)), indexing="ij")
    figure.add_trace(go.Scatter(
        x=[names[i] for i in predicted_index.ravel()], y=[names[i] for i in true_index.ravel()],
        customdata=np.stack([true_index.ravel(), predicted_index.ravel()], axis=1), mode="markers",
        marker=dict(size=28, symbol="square", opacity=0), hoverinfo="skip", showlegend=False,
    ))
    figure.update_layout(title=f"Confusion matrix ({'row-normalized' if normalized else 'counts'})", height=560,
                         margin=dict(l=90, r=20, t=50, b=80), clickmode="event+select")
    figure.update_xaxes(title_text="predicted class", tickangle=-40)
    figure.update_yaxes(title_text="true class", autorange="reversed")
    return figure


def pair_from_selection(points: Sequence[dict]) -> tuple[str, str] | None:
    """(true, predicted) class names of the first clicked confusion-matrix cell."""
    for point in points:
        custom = point.get("customdata")
        if custom is not None and len(custom) == 2:
            return CLASS_NAMES[int(custom[0])], CLASS_NAMES[int(custom[1])]
        if point.get("y") in CLASS_NAMES and point.get("x") in CLASS_NAMES:
            return point["y"], point["x"]
    return None


def _select_clicked_pair() -> None:
    """on_select callback: a clicked cell sets the pair pickers (before they are drawn)."""
    event = st.session_state.get(CONFUSION_KEY)
    pair = pair_from_selection((event or {}).get("selection", {}).get("points", []))
    if pair:
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = pair


def confusion_matrix(report: EvalReport, normalized: bool) -> None:
    st.plotly_chart(confusion_figure(report, normalized), key=CONFUSION_KEY, on_select=_select_clicked_pair,
                    selection_mode="points")
    st.caption(f"Rows: the true class; columns: the class the model predicted; {report.n:,} images of the "
               f"{report.split}. The diagonal holds the correct answers. Click a cell to see its images.")


def pair_picker(report: EvalReport) -> tuple[int, int]:
    """Two selectboxes (true, predicted), preset to the most confused pair; returns class indices."""
    if TRUE_KEY not in st.session_state:
        worst = report.most_confused(1)
        st.session_state[TRUE_KEY], st.session_state[PREDICTED_KEY] = (
            worst[0][:2] if worst else (CLASS_NAMES[3], CLASS_NAMES[5]))
    left, right = st.columns(2)
    true_name = left.selectbox("True class", CLASS_NAMES, key=TRUE_KEY)
    predicted_name = right.selectbox("Predicted as", CLASS_NAMES, key=PREDICTED_KEY)
    return CLASS_NAMES.index(true_name), CLASS_NAMES.index(predicted_name)


def mistakes_gallery(report: EvalReport, images: np.ndarray, true_label: int, predicted_label: int) -> None:
    """The images of `true_label` predicted as `predicted_label`, each with the model's top-3."""
    indices = report.mistakes(true_label, predicted_label)
    true_name, predicted_name = CLASS_NAMES[true_label], CLASS_NAMES[predicted_label]
    verb = "correctly classified" if true_label == predicted_label else f"predicted as {predicted_name}"
    st.markdown(f"**{len(indices)}** {true_name} image(s) {verb}"
                + (f"; the first {MISTAKES_SHOWN} are shown." if len(indices) > MISTAKES_SHOWN else "."))
    columns = st.columns(GALLERY_COLUMNS, gap="medium")
    for position, index in enumerate(indices[:MISTAKES_SHOWN]):
        ranked = top_k(report.probabilities[index], 3)
        # One line per class ("  \n" is a Markdown line break), so the top-3 reads as a short list.
        caption = f"**#{index}**" + (" (JPEG)" if index >= CLEAN_TEST_STOP else "") + "  \n" + "  \n".join(
            f"{row.rank}. {row.class_name} {row.probability:.0%}" for row in ranked)
        # 4x nearest-neighbour enlargement keeps the 32x32 pixels sharp.
        columns[position % GALLERY_COLUMNS].image(np.kron(images[index], np.ones((4, 4, 1), np.uint8)),
                                                  caption=caption)
    if len(indices):
        st.caption(f"Test images whose true class is {true_name}, {verb}; under each: its test-set index and the "
                   "model's three most probable classes.")


def per_class_figure(report: EvalReport) -> go.Figure:
    accuracy = report.per_class_accuracy()
    figure = go.Figure(go.Bar(
        x=list(accuracy.values()), y=list(accuracy), orientation="h", marker=dict(color=LINE_COLOR),
        text=[f"{value:.1%}" for value in accuracy.values()], textposition="outside",
    ))
    figure.update_layout(title="Accuracy per class", height=380, margin=dict(l=90, r=40, t=50, b=40))
    figure.update_xaxes(title_text="share of the class's images classified correctly (recall)", range=[0, 1.12],
                        tickformat=".0%")
    figure.update_yaxes(title_text="true class", autorange="reversed")
    return figure


def confused_pairs_table(report: EvalReport, count: int = 8) -> pd.DataFrame:
    totals = report.confusion.sum(axis=1)
    return pd.DataFrame(
        [{"true class": true, "predicted as": predicted, "images": images,
          "share of the true class": images / max(1, totals[CLASS_NAMES.index(true)])}
         for true, predicted, images in report.most_confused(count)])


# ---------------------------------------------------------------- comparing models


def comparison_table(records: Sequence[dict], measured: dict[str, tuple]) -> pd.DataFrame:
    """One row per saved model, in the report's order (then ours, then the rest)."""
    order = {name: position for position, name in enumerate(ZOO_INFO)}
    rows = []
    for record in sorted(records, key=lambda r: (order.get(r.get("model"), len(order)), r["name"])):
        metrics = record.get("metrics", {})
        clean, whole = metrics.get("test_clean_accuracy"), metrics.get("test_all_accuracy")
        source = "sidecar" if clean is not None else ""
        if clean is None and record["name"] in measured:
            clean, whole = measured[record["name"]]
            source = "measured here"
        entry = ZOO_INFO.get(record.get("model"))
        rows.append({
            "model": record["name"], "zoo model": record.get("model"),
            "parameters": record.get("parameters"), "epochs": record.get("epochs"),
            "training time (min)": (record.get("wall_time_s") or 0) / 60 or None,
            "validation accuracy": metrics.get("val_accuracy"),
            "test 0-999 (exact)": clean, "whole test set (JPEG-affected)": whole,
            "report's figure": entry.report_accuracy if entry else None, "test figures from": source,
            "description": record.get("description") or (entry.description if entry else ""),
        })
    return pd.DataFrame(rows)


PERCENT_COLUMNS = ("validation accuracy", "test 0-999 (exact)", "whole test set (JPEG-affected)", "report's figure")


def comparison_column_config() -> dict:
    config = {name: st.column_config.NumberColumn(name, format="percent") for name in PERCENT_COLUMNS}
    config["parameters"] = st.column_config.NumberColumn("parameters", format="localized")
    config["training time (min)"] = st.column_config.NumberColumn("training time (min)", format="%.1f")
    return config


def story_figure(table: pd.DataFrame) -> go.Figure:
    """Our test accuracy (exact images 0-999) beside the report's figure, per model."""
    figure = go.Figure()
    ours = table.dropna(subset=["test 0-999 (exact)"])
    figure.add_trace(go.Bar(
        x=ours["model"], y=ours["test 0-999 (exact)"], name="ours: test images 0-999 (exact)",
        marker=dict(color="#0072B2"), text=[f"{value:.1%}" for value in ours["test 0-999 (exact)"]],
        textposition="outside"))
    reported = table.dropna(subset=["report's figure"])
    figure.add_trace(go.Bar(
        x=reported["model"], y=reported["report's figure"], name="the report's test accuracy",
        marker=dict(color="#E69F00", pattern=dict(shape="/")),
        text=[f"{value:.0%}" for value in reported["report's figure"]], textposition="outside"))
    figure.update_layout(title="Test accuracy: ours and the report's", barmode="group", height=380,
                         margin=dict(l=60, r=20, t=50, b=80), legend=dict(orientation="h", y=-0.3))
    figure.update_xaxes(title_text="saved model")
    figure.update_yaxes(title_text="test accuracy", range=[0, 1.1], tickformat=".0%")
    return figure
