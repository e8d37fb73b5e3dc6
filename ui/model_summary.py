"""One table of saved models, shared by the Home and Evaluate pages (no TensorFlow)."""

from __future__ import annotations

import pandas as pd

from cnn.report import REPORT_ACCURACY


def models_table(records: list[dict]) -> pd.DataFrame:
    """Rows of parameters, epochs, training time and accuracies, one per saved model (sidecars)."""
    rows = []
    for record in records:
        metrics = record.get("metrics", {})
        rows.append({
            "Model": record["name"],
            "What it is": record.get("description", ""),
            "Parameters": record.get("parameters"),
            "Epochs": record.get("epochs"),
            "Training (min)": round(record.get("wall_time_s", 0) / 60, 1),
            "Validation": _percent(metrics.get("val_accuracy")),
            "Test (exact 0-999)": _percent(metrics.get("test_clean_accuracy")),
            "Test (all 10,000)": _percent(metrics.get("test_all_accuracy")),
            "Report": _percent(REPORT_ACCURACY.get(record.get("model"))),
        })
    return pd.DataFrame(rows)


def _percent(value) -> str:
    return f"{value:.1%}" if isinstance(value, (int, float)) else "-"
