"""AppTest runs of the Predict page, and its URL path against a real local HTTP server.

The page gets untrained zoo models saved in a temporary models folder
(CNN_MODELS_DIR), so it runs without any shipped model. The page itself never
allows loopback addresses, so its URL test checks the refusal; the download
path is tested at the function level with `FetchConfig(allow_loopback=True)`.
"""

import io
import os
import socket
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from cnn import CLASS_NAMES
from cnn.fetch import FetchConfig
from cnn.images import MESSAGE_UNSUPPORTED
from tests.helpers_http import ScriptedServer, allow_only_the_port_of

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90  # importing TensorFlow and loading a model is slow on a busy machine


def encode(array: np.ndarray, image_format: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, image_format)
    return buffer.getvalue()


def picture(width: int, height: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def save_untrained(folder: Path, name: str, accuracy: float) -> None:
    from cnn.artifacts import save_model
    from cnn.models import ZOO

    save_model(ZOO[name].build(), folder / f"{name}.keras",
               {"builder": name, "metrics": {"val_accuracy": accuracy}})


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """A models folder with an untrained `base` (listed first) and `fast`, set as CNN_MODELS_DIR."""
    folder = tmp_path_factory.mktemp("models")
    save_untrained(folder, "base", 0.6)
    save_untrained(folder, "fast", 0.5)
    previous = os.environ.get("CNN_MODELS_DIR")
    os.environ["CNN_MODELS_DIR"] = str(folder)
    yield folder
    if previous is None:
        del os.environ["CNN_MODELS_DIR"]
    else:
        os.environ["CNN_MODELS_DIR"] = previous


def run_page() -> AppTest:
    return AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=TIMEOUT).run()


def assert_no_exception(app: AppTest) -> None:
    assert not app.exception, [exception.value for exception in app.exception]


def cards(app: AppTest) -> list[dict]:
    """Each result card as {label, errors, tables, warnings}, in page order."""
    found = []
    for block in _blocks(app.main):
        first = next(iter(block.children.values()), None)
        if first is not None and first.type == "markdown" and first.value.startswith("**"):
            found.append({
                "label": first.value.strip("*"),
                "errors": [element.value for element in _elements(block, "error")],
                "tables": [element.value for element in _elements(block, "dataframe")],
                "warnings": [element.value for element in _elements(block, "warning")],
            })
    return found


def _blocks(node):
    for child in getattr(node, "children", {}).values():
        if getattr(child, "children", None) is not None:
            yield child
            yield from _blocks(child)


def _elements(node, element_type):
    for child in getattr(node, "children", {}).values():
        if child.type == element_type:
            yield child
        yield from _elements(child, element_type)


def test_without_images_the_page_asks_for_one(shipped):
    app = run_page()
    assert_no_exception(app)
    assert app.selectbox(key="predict_model").value == "base"  # the best (by validation accuracy) first
    assert any("Add a picture" in info.value for info in app.info)
    policy = app.selectbox(key="predict_policy")
    assert policy.options == ["Squash to a square", "Crop the centre square"]
    assert any("stretched" in caption.value for caption in app.caption)


def test_several_uploads_one_bad_keeps_the_others(shipped):
    app = run_page()
    app.file_uploader(key="predict_uploads").set_value([
        ("wide.png", encode(picture(64, 40, seed=1), "PNG"), "image/png"),
        ("broken.png", b"this is not an image at all", "image/png"),
        ("photo.jpg", encode(picture(50, 50, seed=2), "JPEG"), "image/jpeg"),
        ("anim.gif", encode(picture(20, 30, seed=3), "GIF"), "image/gif"),
    ]).run()
    assert_no_exception(app)
    by_label = {card["label"]: card for card in cards(app)}
    assert list(by_label) == ["Upload: wide.png", "Upload: broken.png", "Upload: photo.jpg", "Upload: anim.gif"]
    assert by_label["Upload: broken.png"]["errors"] == [MESSAGE_UNSUPPORTED]
    assert by_label["Upload: broken.png"]["tables"] == []
    for label in ("Upload: wide.png", "Upload: photo.jpg", "Upload: anim.gif"):
        card = by_label[label]
        assert card["errors"] == []
        (table,) = card["tables"]
        assert list(table.columns) == ["Rank", "Class", "Probability"]
        assert list(table["Rank"]) == [1, 2, 3]
        assert set(table["Class"]) <= set(CLASS_NAMES)
        # An untrained model spreads its probability: the low-confidence note must show.
        assert any("only knows these 10 classes" in warning for warning in card["warnings"])
    assert any("Grad-CAM" in caption.value and "approximate" in caption.value for caption in app.caption)


def test_samples_and_center_crop_with_the_nested_fast_model(shipped):
    app = run_page()
    app.selectbox(key="predict_model").set_value("fast")
    app.selectbox(key="predict_policy").set_value("center_crop")
    app.multiselect(key="predict_samples").set_value([0, 7]).run()
    assert_no_exception(app)
    found = cards(app)
    assert [card["label"].split(" (")[0] for card in found] == ["CIFAR-10 test image 0", "CIFAR-10 test image 7"]
    assert all(len(card["tables"]) == 1 and not card["errors"] for card in found)
    assert any("unflipped image" in caption.value for caption in app.caption)  # Grad-CAM on the trunk, said so
    assert any("Cut the largest square" in caption.value for caption in app.caption)


def test_camera_photo_is_predicted(shipped):
    app = run_page()
    app.toggle(key="predict_camera_on").set_value(True).run()
    app.camera_input(key="predict_camera").set_value(
        ("photo.jpg", encode(picture(64, 48, seed=4), "JPEG"), "image/jpeg")).run()
    assert_no_exception(app)
    (card,) = cards(app)
    assert card["label"] == "Camera photo" and len(card["tables"]) == 1


@pytest.mark.parametrize("url", ["http://127.0.0.1/cat.png", "http://localhost/cat.png", "http://[::1]/cat.png",
                                 "http://169.254.169.254/latest/meta-data/"])
def test_local_urls_are_refused_with_a_plain_message_and_uploads_still_work(shipped, url, monkeypatch):
    connections = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(socket.socket, "connect",
                        lambda sock, address: connections.append(address) or real_connect(sock, address))
    app = run_page()
    app.text_input(key="predict_url").set_value(url)
    app.file_uploader(key="predict_uploads").set_value(("ok.png", encode(picture(32, 32), "PNG"), "image/png"))
    app.run()
    assert_no_exception(app)
    assert connections == []  # refused before any socket was opened
    by_label = {card["label"]: card for card in cards(app)}
    (error,) = by_label[f"Link: {url}"]["errors"]
    assert "not allowed" in error and "Traceback" not in error
    assert len(by_label["Upload: ok.png"]["tables"]) == 1


def test_the_page_never_reaches_a_local_server_even_on_its_port(shipped, monkeypatch):
    # With the server's port made a web port, only the address rule is left
    # to refuse it: the page must say the address is local and never connect.
    with ScriptedServer() as server:
        allow_only_the_port_of(server, monkeypatch)
        app = run_page()
        app.text_input(key="predict_url").set_value(server.url("/png")).run()
        assert server.connections == [] and server.seen == []
    assert_no_exception(app)
    (card,) = cards(app)
    (error,) = card["errors"]
    assert "not allowed: it points to a private, local" in error and not card["tables"]


def test_fetch_image_and_explain_through_a_real_local_server():
    from cnn.explain import explain_prediction
    from cnn.inference import Predictor
    from cnn.models import ZOO
    from ui.prediction_views import fetch_image

    with ScriptedServer() as server:
        image = fetch_image(server.url("/png"), FetchConfig(allow_loopback=True))
        assert server.seen and server.seen[0][0] == "/png"
    assert image.mode == "RGB" and image.size == (4, 4)
    result = explain_prediction(Predictor(ZOO["base"].build()), image)
    assert result.model_input.shape == (32, 32, 3) and result.model_input.dtype == np.uint8
    assert [ranked.rank for ranked in result.top] == [1, 2, 3]
    assert result.probabilities.shape == (10,) and abs(result.probabilities.sum() - 1) < 1e-4
    assert result.cam.heatmap.shape == (32, 32)


def test_fetch_image_errors_are_plain():
    from cnn.errors import FetchError, ImageError
    from ui.prediction_views import fetch_image

    with ScriptedServer() as server:
        with pytest.raises(FetchError, match="not allowed"):
            fetch_image("http://127.0.0.1/png")  # the page's default config
        with pytest.raises(FetchError, match="404"):
            fetch_image(server.url("/status/404"), FetchConfig(allow_loopback=True))
        with pytest.raises(ImageError):
            fetch_image(server.url("/html-as-png"), FetchConfig(allow_loopback=True))


def test_no_model_yet_shows_a_warning_not_a_traceback(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_MODELS_DIR", str(tmp_path))
    app = run_page()
    assert_no_exception(app)
    assert any("No saved model" in warning.value for warning in app.warning)
