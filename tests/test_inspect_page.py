"""AppTest runs of the Inspect page on untrained zoo models saved in a temporary models folder."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnn.images import MESSAGE_UNSUPPORTED
from tests.test_predict_page import assert_no_exception, save_untrained, shipped  # noqa: F401 - the models-folder fixture
from ui import image_widgets

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90


def run_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "inspect.py"), default_timeout=TIMEOUT).run()


def table(app: AppTest):
    return app.dataframe[0].value


def chart_specs(app: AppTest) -> list[dict]:
    import json

    return [json.loads(chart.proto.spec) for chart in app.get("plotly_chart")]


def chart_titles(app: AppTest) -> list[str]:
    return [figure["layout"]["title"]["text"] for figure in chart_specs(app)]


def tile_labels(figure: dict) -> list[str]:
    return [annotation["text"] for annotation in figure["layout"].get("annotations", [])]


@pytest.fixture
def fast_is_best(tmp_path, monkeypatch):
    """A models folder where `fast` has the best validation accuracy, so it is listed first."""
    save_untrained(tmp_path, "fast", 0.9)
    save_untrained(tmp_path, "base", 0.6)
    monkeypatch.setenv("CNN_MODELS_DIR", str(tmp_path))


def test_opens_on_a_model_with_learned_first_filters_and_says_why_not_fast(fast_is_best):
    app = run_page()
    assert_no_exception(app)
    picker = app.selectbox(key="inspect_model")
    assert picker.options[0].startswith("fast")  # the best model is listed first...
    assert picker.value == "base"  # ...but the page opens on one whose first layer learned its filters
    assert not any("fixed, not learned" in info.value for info in app.info)
    picker.set_value("fast").run()
    assert_no_exception(app)
    (why,) = [info.value for info in app.info if "fixed, not learned" in info.value]
    assert "flat colour blocks" in why and "opens on 'base'" in why


def test_report_model_table_filters_feature_maps_and_grad_cam(shipped):  # noqa: F811
    app = run_page()
    assert_no_exception(app)
    assert app.selectbox(key="inspect_model").value == "base"
    layers = table(app).set_index("Layer")
    assert layers.loc["conv1", "Output shape"] == "(29, 29, 32)"
    assert layers.loc["conv1", "How the count comes"] == "(4*4*3+1)*32 = 1,568"
    assert layers.loc["dense", "How the count comes"] == "(800+1)*256 = 205,056"
    assert layers.loc["pool1", "Parameters"] == 0
    assert any("filters of 'conv1'" in caption.value for caption in app.caption)
    # conv1 (with its ReLU) and the pooling after it, then the Grad-CAM heatmap
    assert chart_titles(app) == [
        "conv1 (Conv2D + relu): 29x29x32",
        "pool1 (MaxPooling2D): 14x14x32",
        chart_titles(app)[2],
    ]
    assert chart_titles(app)[2].startswith("Grad-CAM: ")
    # Each tile of a mosaic is headed by its channel number; the axes carry no pixel numbers (0-250 before).
    conv1 = chart_specs(app)[0]
    assert tile_labels(conv1) == [f"channel {channel}" for channel in range(16)]
    assert conv1["layout"]["xaxis"]["showticklabels"] is False
    assert "channel %{customdata}" in conv1["data"][0]["hovertemplate"]
    assert any("Grad-CAM" in caption.value and "Approximate" in caption.value for caption in app.caption)

    app.selectbox(key="inspect_conv_layer").set_value("conv2")
    app.selectbox(key="inspect_cam_class").set_value("cat").run()
    assert_no_exception(app)
    assert chart_titles(app)[:2] == ["conv2 (Conv2D + relu): 11x11x32", "pool2 (MaxPooling2D): 5x5x32"]
    assert chart_titles(app)[2] == "Grad-CAM: cat"


def test_fast_model_expands_its_trunk_and_explains_whitening(shipped):  # noqa: F811
    app = run_page()
    app.selectbox(key="inspect_model").set_value("fast").run()
    assert_no_exception(app)
    layers = table(app)
    names = [name.strip() for name in layers["Layer"]]
    assert "fast / whiten" in names and "fast / block3_conv2" in names
    top_level = layers[~layers["Layer"].str.startswith(" ")]
    assert top_level["Parameters"].sum() == layers.loc[[n == "fast" for n in names], "Parameters"].sum()
    whiten = layers[[n == "fast / whiten" for n in names]].iloc[0]
    assert whiten["Trainable"] == "frozen (not trained)"
    assert any("'whiten'" in caption.value and "frozen" in caption.value for caption in app.caption)
    assert chart_titles(app)[0] == "whiten (Conv2D): 31x31x24"

    app.selectbox(key="inspect_conv_layer").set_value("block1_conv1").run()
    assert_no_exception(app)
    assert [title.split(" (")[0] for title in chart_titles(app)[:-1]] == [
        "block1_conv1",
        "block1_pool",
        "block1_bn1",
        "block1_relu1",
    ]
    assert any("unflipped image" in caption.value for caption in app.caption)


def test_uploaded_image_and_a_bad_upload(shipped):  # noqa: F811
    app = run_page()
    app.radio(key="inspect_image_source").set_value(image_widgets.UPLOAD).run()
    assert_no_exception(app)
    assert any("Upload an image" in info.value for info in app.info)
    app.file_uploader(key="inspect_image_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    assert_no_exception(app)
    assert [error.value for error in app.error] == [MESSAGE_UNSUPPORTED]
    buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)).save(buffer, "PNG")
    app.file_uploader(key="inspect_image_upload").set_value(("ok.png", buffer.getvalue(), "image/png")).run()
    assert_no_exception(app)
    assert not app.error
    assert len(app.get("plotly_chart")) == 3


def test_no_model_yet_shows_a_warning(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_MODELS_DIR", str(tmp_path))
    app = run_page()
    assert_no_exception(app)
    assert any("No saved model" in warning.value for warning in app.warning)
