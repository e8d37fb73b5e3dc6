"""One table of saved models for the Home page (no TensorFlow): short headers, so it fits at 1280 px."""

from __future__ import annotations

import pandas as pd
import streamlit as st

from cnn.report import REPORT_ACCURACY

TEST_EXACT = "Test 0-999 (exact)"
TEST_ALL = "Test all 10,000 (JPEG)"

# Widths in pixels add up to about 680, so the table fits the page at 1280 px;
# the long explanations live in the header tooltips, not in the column names.
COLUMN_CONFIG = {
    "Model": st.column_config.TextColumn(width=60),
    "Parameters": st.column_config.NumberColumn(format="localized", width=85,
                                                help="Number of weights, trained or not."),
    "Epochs": st.column_config.NumberColumn(width=55, help="Passes over the training images."),
    "Train (min)": st.column_config.NumberColumn(width=75, help="Training wall time in minutes."),
    "Validation": st.column_config.TextColumn(width=75, help="Accuracy on the last 5,000 training images."),
    TEST_EXACT: st.column_config.TextColumn(
        width=120, help="Accuracy on CIFAR-10 test images 0-999, identical to the official ones."),
    TEST_ALL: st.column_config.TextColumn(
        width=150, help="Accuracy on all 10,000 test images; 1000-9999 were rebuilt from JPEG files in this "
                        "copy, which costs a little accuracy."),
    "Report": st.column_config.TextColumn(width=60, help="The accuracy the course report gives."),
}


def models_table(records: list[dict]) -> pd.DataFrame:
    """Rows of parameters, epochs, training time and accuracies, one per saved model (sidecars)."""
    rows = []
    for record in records:
        metrics = record.get("metrics", {})
        rows.append({
            "Model": record["name"],
            "Parameters": record.get("parameters"),
            "Epochs": record.get("epochs"),
            "Train (min)": round(record.get("wall_time_s", 0) / 60, 1),
            "Validation": _percent(metrics.get("val_accuracy")),
            TEST_EXACT: _percent(metrics.get("test_clean_accuracy")),
            TEST_ALL: _percent(metrics.get("test_all_accuracy")),
            "Report": _percent(REPORT_ACCURACY.get(record.get("model"))),
        })
    return pd.DataFrame(rows)


def split_shipped(records: list[dict]) -> tuple[list[dict], list[dict]]:
    """(shipped, trained here): a shipped model's test figures were recorded by `python -m cnn evaluate NAME
    --record`; a classroom run (Train page) or another local training has none."""
    shipped = [record for record in records if record.get("metrics", {}).get("test_clean_accuracy") is not None]
    return shipped, [record for record in records if record not in shipped]


def model_descriptions(records: list[dict]) -> str:
    """What each model is, as a Markdown list (too long for a table cell)."""
    return "\n".join(f"- **{record['name']}**: {record.get('description') or 'no description'}"
                     for record in records)


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"
