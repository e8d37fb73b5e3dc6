"""Home page pieces: tables of the saved models (no TensorFlow), short headers so they fit at 1280 px."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnn.artifacts import SavedModel, display_name
from cnn.zoo import report_accuracy
from ui.resources import plain_markdown

TEST_EXACT = "Test 0-999 (exact)"
TEST_ALL = "Test all 10,000 (JPEG)"

# Widths in pixels add up to about 680, so the table fits the page at 1280 px;
# the long explanations live in the header tooltips, not in the column names.
COLUMN_CONFIG = {
    "Model": st.column_config.TextColumn(width=60),
    "Parameters": st.column_config.NumberColumn(
        format="localized", width=85, help="Number of weights, trained or not."
    ),
    "Epochs": st.column_config.NumberColumn(width=55, help="Passes over the training images."),
    "Train (min)": st.column_config.NumberColumn(width=75, help="Training wall time in minutes."),
    "Validation": st.column_config.TextColumn(width=75, help="Accuracy on the last 5,000 training images."),
    TEST_EXACT: st.column_config.TextColumn(
        width=120, help="Accuracy on CIFAR-10 test images 0-999, identical to the official ones."
    ),
    TEST_ALL: st.column_config.TextColumn(
        width=150,
        help="Accuracy on all 10,000 test images; 1000-9999 were rebuilt from JPEG files in this "
        "copy, which costs a little accuracy.",
    ),
    "Report": st.column_config.TextColumn(width=60, help="The accuracy the course report gives."),
}


def models_table(entries: list[SavedModel]) -> pd.DataFrame:
    """Rows of parameters, epochs, training time and accuracies, one per usable saved model (its sidecar)."""
    rows = []
    for entry in entries:
        if not entry.usable:
            continue
        sidecar, metrics = entry.sidecar, entry.sidecar.metrics
        rows.append(
            {
                "Model": entry.name,
                "Parameters": sidecar.parameters,
                "Epochs": sidecar.epochs,
                "Train (min)": round((sidecar.wall_time_s or 0) / 60, 1),
                "Validation": _percent(metrics.val_accuracy),
                TEST_EXACT: _percent(metrics.test_clean_accuracy),
                TEST_ALL: _percent(metrics.test_all_accuracy),
                "Report": _percent(report_accuracy(sidecar.model)),
            }
        )
    return pd.DataFrame(rows)


def split_shipped(entries: list[SavedModel]) -> tuple[list[SavedModel], list[SavedModel]]:
    """(shipped, trained here) among the usable models: a shipped model's test figures were recorded by
    `python -m cnn evaluate NAME --record`; a classroom run (Train page) or another local training has none."""
    usable = [entry for entry in entries if entry.usable]
    shipped = [entry for entry in usable if entry.sidecar.metrics.test_clean_accuracy is not None]
    return shipped, [entry for entry in usable if entry not in shipped]


def unusable_table(entries: list[SavedModel]) -> pd.DataFrame:
    """One row per saved model that cannot be used: its name and why (shown as plain text, never Markdown)."""
    return pd.DataFrame(
        [
            {"Model": display_name(entry.name), "Why it cannot be used": entry.problem}
            for entry in entries
            if not entry.usable
        ],
        columns=["Model", "Why it cannot be used"],
    )


def model_descriptions(entries: list[SavedModel]) -> str:
    """What each usable model is, as a Markdown list (too long for a table cell)."""
    return "\n".join(
        f"- **{entry.name}**: {plain_markdown(entry.sidecar.description or 'no description')}"
        for entry in entries
        if entry.usable
    )


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"
