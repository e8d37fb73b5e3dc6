"""AppTest of the Evaluate page on the bundled sample and on a (synthetic) full data set."""

from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnn.evaluation import Predictions, predictions_path, store_predictions
from ui import evaluation_views, resources

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
def saved_models(models_dir, save_untrained_model):
    """An untrained base (recorded test figures) and dropout (none): enough for every element."""
    metrics = {"val_accuracy": 0.62, "test_clean_accuracy": 0.63, "test_all_accuracy": 0.61}
    save_untrained_model("base", "base", metrics, parameters=1000, wall_time_s=90.0)
    save_untrained_model("dropout", "dropout", {"val_accuracy": 0.5})
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
    assert evaluation_views.MEASURED_HERE in app.info[0].value  # so it is measured here, images 0-999 first
    assert "bundled sample (exact CIFAR-10 test images 0-999)" in app.caption[0].value
    assert app.metric[0].label == "Accuracy, bundled sample (exact test images 0-999)"
    assert len(app.metric) == 2  # no whole-set figure on the sample
    assert "eval_whole" not in [button.key for button in app.button]  # the sample has no images 1000-9999
    class_metrics = app.dataframe[0].value
    assert list(class_metrics.columns) == ["precision", "recall", "f1-score", "support"]
    assert class_metrics.loc["weighted avg", "support"] == 1000

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
    assert table.loc[0, "report %"] == 64.0 and table.loc[1, "report %"] == 70.0
    assert table.loc[0, "test 0-999 %"] == 63.0 and np.isnan(table.loc[1, "test 0-999 %"])
    app.button(key="eval_measure_all").click()
    run(app)
    table = app.dataframe[-1].value
    assert 0 <= table.loc[1, "test 0-999 %"] <= 100 and table.loc[1, "figures from"] == "measured here"
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


def test_the_whole_test_set_is_measured_on_demand(saved_models, full_size_synthetic, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(full_size_synthetic))
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    labels = [metric.label for metric in app.metric]
    assert labels[0] == f"Accuracy, {evaluation_views.CLEAN_LABEL}" and len(labels) == 2  # images 0-999 first
    assert app.dataframe[0].value.loc["weighted avg", "support"] == 1000
    whole = app.button(key="eval_whole")
    assert "1,100 images" in whole.label and "about" in whole.label  # with an estimate from the first 1,000
    whole.click()
    run(app)
    labels = [metric.label for metric in app.metric]
    assert labels[:2] == [f"Accuracy, {evaluation_views.CLEAN_LABEL}", f"Accuracy, {evaluation_views.WHOLE_LABEL}"]
    app.radio(key="eval_part").set_value(evaluation_views.CLEAN_LABEL)
    run(app)
    assert app.dataframe[0].value.loc["weighted avg", "support"] == 1000
    app.radio(key="eval_part").set_value(evaluation_views.WHOLE_LABEL)
    run(app)
    assert app.dataframe[0].value.loc["weighted avg", "support"] == 1100
    assert "eval_whole" not in [button.key for button in app.button]


def test_the_report_texts_hold_however_many_figures_the_report_states(monkeypatch):
    """The captions' texts come from the zoo: with one stated figure, or none, they still say something true."""
    from cnn import zoo

    whole = dict(zoo.ZOO)
    assert zoo.report_figures_text() == "base 64.0%, dropout 70.0%, augmented 90.0%"
    assert zoo.report_progression_text() == "The report's progression goes from 64.0% (model 1) to 90.0% (model 6)."
    monkeypatch.setattr(zoo, "ZOO", {name: whole[name] for name in ("base", "deeper", "fast")})
    assert zoo.report_figures_text() == "base 64.0%"
    assert zoo.report_progression_text() == "The report states one test accuracy: 64.0% (model 1)."
    monkeypatch.setattr(zoo, "ZOO", {name: whole[name] for name in ("deeper", "fast")})
    assert zoo.report_figures_text() == "none"
    assert zoo.report_progression_text() == "The report states no test accuracy."


# ---------------------------------------------------------------- predictions stored beside a model


def crafted_predictions(labels: np.ndarray, wrong_as: int = 0) -> Predictions:
    """Predictions that call every image of class 3 (cat) `wrong_as` and get the others right."""
    probabilities = np.full((len(labels), 10), 0.01, np.float32)
    predicted = np.where(labels == 3, wrong_as, labels)
    probabilities[np.arange(len(labels)), predicted] = 0.91
    return Predictions.from_probabilities(probabilities, labels)


@pytest.fixture
def stored_model(save_untrained_model, tmp_path, monkeypatch):
    """A saved model with crafted predictions stored beside it, on the bundled sample (no full data)."""
    from cnn.data import load_sample

    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data-here"))
    (tmp_path / "no-data-here").mkdir()
    path = save_untrained_model("base", "base", {"val_accuracy": 0.5})
    answers = crafted_predictions(load_sample().labels)
    store_predictions(path, {"test": answers}, "bundled sample")
    return path, answers


def test_stored_predictions_draw_the_page_without_running_the_model(stored_model, monkeypatch):
    def no_model(name):
        raise AssertionError("the model was loaded although its predictions are stored")

    monkeypatch.setattr(resources, "get_model", no_model)
    _, answers = stored_model
    cats = int((answers.labels == 3).sum())
    pages = -(-cats // evaluation_views.MISTAKES_SHOWN)
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    assert not app.info or evaluation_views.MEASURED_HERE not in app.info[0].value
    assert "stored beside the model" in app.caption[0].value
    assert app.metric[0].value == f"{(1000 - cats) / 1000:.1%}"  # every class right but cat
    counts = confusion_z(app)
    assert counts[3, 0] == cats and counts.sum() == 1000
    # The preset pair is the most confused one: cat -> airplane, 12 images a page.
    assert (app.selectbox(key="eval_true").value, app.selectbox(key="eval_predicted").value) == ("cat", "airplane")
    first_page = [image.captions[0].split("**")[1] for image in app.get("image")]
    assert len(first_page) == evaluation_views.MISTAKES_SHOWN
    pager = app.number_input(key="eval_gallery_page_3_0_1000")
    assert f"of {pages}" in pager.label
    pager.set_value(pages)
    run(app)
    last_page = [image.captions[0].split("**")[1] for image in app.get("image")]
    assert len(last_page) == cats - (pages - 1) * evaluation_views.MISTAKES_SHOWN
    assert not set(last_page) & set(first_page)
    assert "91%" in app.get("image")[0].captions[0]  # the stored top-3


def test_stale_stored_predictions_are_refused_and_the_model_is_measured(stored_model):
    path, _ = stored_model
    stored = predictions_path(path)
    stored.write_bytes(stored.read_bytes() + b"changed")
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    assert any("does not match the sha256" in error.value for error in app.error)
    assert evaluation_views.MEASURED_HERE in app.info[0].value  # measured here instead
    assert "bundled sample" in app.caption[0].value  # the data measured here, not the stored predictions


def test_a_clicked_cell_selects_its_pair():
    point = {"x": "dog", "y": "cat", "customdata": [3, 5]}
    assert evaluation_views.pair_from_selection([point]) == ("cat", "dog")
    assert evaluation_views.pair_from_selection([{"customdata": {"0": 9, "1": 1}}]) == ("truck", "automobile")
    assert evaluation_views.pair_from_selection([{"customdata": [3, 12]}, {"customdata": "x"}]) is None
    assert evaluation_views.pair_from_selection([{"x": "ship", "y": "truck"}]) == ("truck", "ship")
    assert evaluation_views.pair_from_selection([]) is None


def test_the_click_targets_take_part_in_hovering():
    """Plotly selects on click the points found by hovering: hoverinfo='skip' made every click select nothing."""
    from cnn.data import load_sample
    from cnn.evaluation import Evaluation

    evaluation = Evaluation.from_predictions(crafted_predictions(load_sample().labels), "test")
    import json

    figure = json.loads(evaluation_views.confusion_figure(evaluation, normalized=False).to_json())
    targets = figure["data"][1]
    assert targets.get("hoverinfo") != "skip"
    # Plain lists: a typed array (numpy's "bdata") comes back from a click as a dict, not a pair.
    assert isinstance(targets["customdata"], list) and targets["customdata"][19] == [1, 9]


def test_the_class_metrics_table_is_tall_enough_for_every_row():
    assert evaluation_views.table_height(12) >= 13 * evaluation_views.TABLE_ROW_PX


def test_a_kept_refusal_is_raised_afresh_each_time(stored_model):
    """The refusal is kept for every session: raising the kept error itself would lengthen its traceback
    (and keep every rerun's frames alive) on each rerun."""
    import traceback

    from cnn.errors import ModelFileError

    path, _ = stored_model
    stored = predictions_path(path)
    stored.write_bytes(stored.read_bytes() + b"changed")
    depths = []
    for _ in range(3):
        with pytest.raises(ModelFileError, match="does not match the sha256") as caught:
            evaluation_views.stored_evaluation("base")
        depths.append(len(traceback.extract_tb(caught.value.__traceback__)))
    assert depths[0] == depths[-1]


def test_changed_files_beside_the_model_are_checked_again_on_the_next_rerun(stored_model):
    """The stored evaluation is kept per version of the model, its sidecar and its predictions file: a rerun
    reuses it, and a change to any of them is seen on the next rerun."""
    from cnn import artifacts
    from cnn.evaluation import PREDICTIONS_KEY

    path, _ = stored_model
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    assert "stored beside the model" in app.caption[0].value
    stored = predictions_path(path)
    stored.write_bytes(stored.read_bytes() + b"changed")
    run(app)
    assert any("does not match the sha256" in error.value for error in app.error)
    artifacts.update_sidecar(path, **{PREDICTIONS_KEY: None})  # no stored predictions any more
    run(app)
    assert not app.error and evaluation_views.MEASURED_HERE in app.info[0].value


def reports_made_on_reruns(monkeypatch) -> tuple[list[str], list[str]]:
    """The splits evaluated (two scikit-learn calls each) by the page's first run, and by it and two reruns."""
    from cnn.evaluation import Evaluation

    made = []
    real = Evaluation.from_predictions
    spy = classmethod(lambda cls, answers, split: made.append(split) or real(answers, split))
    monkeypatch.setattr(Evaluation, "from_predictions", spy)
    app = run(AppTest.from_file(PAGE, default_timeout=120))
    first = list(made)
    app.segmented_control(key="eval_confusion_mode").set_value("row-normalized")
    run(app)
    run(app)
    return first, made


def test_reruns_make_a_stored_models_classification_reports_once(stored_model, monkeypatch):
    first, made = reports_made_on_reruns(monkeypatch)
    assert first and made == first


def test_reruns_make_a_measured_models_classification_reports_once(saved_models, tmp_path, monkeypatch):
    (tmp_path / "no-data-here").mkdir()
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data-here"))
    first, made = reports_made_on_reruns(monkeypatch)
    assert first and made == first
