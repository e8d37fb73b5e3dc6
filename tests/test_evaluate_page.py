"""AppTest of the Evaluate page on the bundled sample and on a (synthetic) full data set."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnn.artifacts import save_model
from cnn.models import ZOO
from ui import evaluation_views

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "evaluate.py")


@pytest.fixture(autouse=True)
def fresh_caches():
    """st.cache_* live in the process: each test finds its own data set."""
    import streamlit as st

    st.cache_resource.clear()
    st.cache_data.clear()
    yield
    st.cache_resource.clear()
    st.cache_data.clear()


@pytest.fixture
def saved_models(models_dir):
    """An untrained base (recorded test figures) and dropout (none): enough for every element."""
    history = [{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2}]
    save_model(ZOO["base"].build(), models_dir / "base.keras", {
        "model": "base", "parameters": 1000, "epochs": 1, "wall_time_s": 90.0, "history": history,
        "metrics": {"val_accuracy": 0.62, "test_clean_accuracy": 0.63, "test_all_accuracy": 0.61}})
    save_model(ZOO["dropout"].build(), models_dir / "dropout.keras", {
        "model": "dropout", "epochs": 1, "history": history, "metrics": {"val_accuracy": 0.5}})
    return models_dir


def confusion_z(app: AppTest) -> np.ndarray:
    """The confusion heatmap's values (plotly stores numpy arrays as base64 in the spec)."""
    import base64
    import json

    chart = next(chart for chart in app.get("plotly_chart") if "eval_confusion" in chart.proto.id)
    figure = json.loads(chart.proto.spec)
    assert figure["layout"]["xaxis"]["title"]["text"] == "predicted class"
    assert figure["layout"]["yaxis"]["title"]["text"] == "true class"
    z = figure["data"][0]["z"]
    if isinstance(z, dict):  # {"dtype", "bdata", "shape"}
        shape = tuple(int(side) for side in z["shape"].split(","))
        return np.frombuffer(base64.b64decode(z["bdata"]), dtype=z["dtype"]).reshape(shape)
    return np.asarray(z, dtype=float)


def run(app: AppTest) -> AppTest:
    app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def test_evaluate_on_the_bundled_sample(saved_models, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data-here"))
    (tmp_path / "no-data-here").mkdir()
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    assert app.selectbox(key="eval_model").value == "base"
    assert "bundled sample (exact CIFAR-10 test images 0-999)" in app.caption[0].value
    assert app.metric[0].label == "Accuracy, bundled sample (exact test images 0-999)"
    assert len(app.metric) == 2  # no whole-set figure on the sample
    report = app.dataframe[0].value
    assert list(report.columns) == ["precision", "recall", "f1-score", "support"]
    assert report.loc["weighted avg", "support"] == 1000

    counts = confusion_z(app)
    assert counts.sum() == 1000

    app.segmented_control(key="eval_confusion_mode").set_value("row-normalized")
    run(app)
    app.selectbox(key="eval_model").set_value("dropout")
    run(app)  # the toggle stays as set on another model
    assert app.segmented_control(key="eval_confusion_mode").value == "row-normalized"
    row_sums = confusion_z(app).sum(axis=1)
    assert np.allclose(row_sums[row_sums > 0], 1.0)

    # Pick a pair: its misclassified images appear with their top-3.
    mistakes = confusion_z(app) * (1 - np.eye(10))
    true_index, predicted_index = np.unravel_index(np.argmax(mistakes), mistakes.shape)
    app.selectbox(key="eval_true").set_value(evaluation_views.CLASS_NAMES[true_index])
    app.selectbox(key="eval_predicted").set_value(evaluation_views.CLASS_NAMES[predicted_index])
    run(app)
    images = app.get("image")
    assert images, "the chosen pair's images are shown"
    assert "1. " in images[0].captions[0] and "2. " in images[0].captions[0]

    # Compare: every saved model, recorded and measured test figures, the report's figures beside them.
    table = app.dataframe[-1].value
    assert list(table["model"]) == ["base", "dropout"]
    assert table.loc[0, "report's figure"] == 0.64 and table.loc[1, "report's figure"] == 0.70
    assert table.loc[0, "test 0-999 (exact)"] == 0.63 and np.isnan(table.loc[1, "test 0-999 (exact)"])
    app.button(key="eval_measure_all").click()
    run(app)
    table = app.dataframe[-1].value
    assert 0 <= table.loc[1, "test 0-999 (exact)"] <= 1 and table.loc[1, "test figures from"] == "measured here"
    assert any("JPEG-derived" in caption.value for caption in app.caption)


@pytest.fixture(scope="module")
def full_size_synthetic(tmp_path_factory):
    """Synthetic CIFAR-10 big enough for the default 5,000 validation images, with 1,100 test images."""
    import pickle

    from cnn import CLASS_NAMES
    from tests.conftest import write_batch

    folder = tmp_path_factory.mktemp("full") / "cifar-10-batches-py"
    folder.mkdir()
    for batch in range(1, 6):
        write_batch(folder / f"data_batch_{batch}", np.arange(1001) % 10, seed=batch)
    write_batch(folder / "test_batch", np.arange(1100) % 10, seed=99)
    (folder / "batches.meta").write_bytes(pickle.dumps({b"label_names": [n.encode() for n in CLASS_NAMES]}))
    return folder


def test_evaluate_with_the_full_data_shows_clean_and_whole_figures(saved_models, full_size_synthetic, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(full_size_synthetic))
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    labels = [metric.label for metric in app.metric]
    assert labels[:2] == [f"Accuracy, {evaluation_views.CLEAN_LABEL}", f"Accuracy, {evaluation_views.WHOLE_LABEL}"]
    app.radio(key="eval_part").set_value(evaluation_views.CLEAN_LABEL)
    run(app)
    assert app.dataframe[0].value.loc["weighted avg", "support"] == 1000
    app.radio(key="eval_part").set_value(evaluation_views.WHOLE_LABEL)
    run(app)
    assert app.dataframe[0].value.loc["weighted avg", "support"] == 1100


def test_a_clicked_cell_selects_its_pair():
    point = {"x": "dog", "y": "cat", "customdata": [3, 5]}
    assert evaluation_views.pair_from_selection([point]) == ("cat", "dog")
    assert evaluation_views.pair_from_selection([{"x": "ship", "y": "truck"}]) == ("truck", "ship")
    assert evaluation_views.pair_from_selection([]) is None
