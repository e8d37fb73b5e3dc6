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
    from cnn.zoo import ZOO

    save_model(ZOO[name].build(), folder / f"{name}.keras", {"builder": name, "metrics": {"val_accuracy": accuracy}})


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
    """Each bordered card (the grid's, then the details card) as {label, errors, tables, warnings, text}."""
    found = []
    for block in _blocks(app.main):
        first = next(iter(block.children.values()), None)
        if first is not None and first.type == "markdown" and first.value.startswith("**"):
            found.append(
                {
                    "label": first.value.strip("*"),
                    "errors": [element.value for element in _elements(block, "error")],
                    "tables": [element.value for element in _elements(block, "dataframe")],
                    "warnings": [element.value for element in _elements(block, "warning")],
                    "text": [element.value for element in _elements(block, "markdown")][1:],
                }
            )
    return found


def grid_cards(app: AppTest) -> list[dict]:
    """The compact cards: every picture, no table (the details card is the one with a table)."""
    return [card for card in cards(app) if not card["tables"]]


def details_card(app: AppTest) -> dict | None:
    """The one full card: all ten probabilities, the top-3 table and Grad-CAM of the chosen picture."""
    full = [card for card in cards(app) if card["tables"]]
    assert len(full) <= 1
    return full[0] if full else None


def top3_lines(card: dict) -> list[str]:
    return card["text"][0].split("  \n")


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


def test_the_page_preselects_the_most_accurate_model_quick_enough_for_one_image(shipped, tmp_path, monkeypatch):
    from cnn.artifacts import update_sidecar

    save_untrained(tmp_path, "base", 0.6)
    save_untrained(tmp_path, "fast", 0.5)
    update_sidecar(tmp_path / "base.keras", metrics={"val_accuracy": 0.6, "latency_p50_ms": 25.0})
    update_sidecar(tmp_path / "fast.keras", metrics={"val_accuracy": 0.5, "latency_p50_ms": 4.0})
    monkeypatch.setenv("CNN_MODELS_DIR", str(tmp_path))
    app = run_page()
    assert_no_exception(app)
    picker = app.selectbox(key="predict_model")
    assert picker.options == [
        "base (validation 60.0%, 25.0 ms per image)",
        "fast (validation 50.0%, 4.0 ms per image)",
    ]  # the most accurate still first
    assert picker.value == "fast" and "within 10 ms" in picker.label


def test_several_uploads_one_bad_keeps_the_others(shipped):
    app = run_page()
    app.file_uploader(key="predict_uploads").set_value(
        [
            ("wide.png", encode(picture(64, 40, seed=1), "PNG"), "image/png"),
            ("broken.png", b"this is not an image at all", "image/png"),
            ("photo.jpg", encode(picture(50, 50, seed=2), "JPEG"), "image/jpeg"),
            ("anim.gif", encode(picture(20, 30, seed=3), "GIF"), "image/gif"),
        ]
    ).run()
    assert_no_exception(app)
    by_label = {card["label"]: card for card in grid_cards(app)}
    assert list(by_label) == ["Upload: wide.png", "Upload: broken.png", "Upload: photo.jpg", "Upload: anim.gif"]
    assert by_label["Upload: broken.png"]["errors"] == [MESSAGE_UNSUPPORTED]
    assert by_label["Upload: broken.png"]["text"] == []
    for label in ("Upload: wide.png", "Upload: photo.jpg", "Upload: anim.gif"):
        card = by_label[label]
        assert card["errors"] == []
        lines = top3_lines(card)
        assert [line.split(".")[0] for line in lines] == ["1", "2", "3"]
        assert all(line.split("**")[1] in CLASS_NAMES for line in lines)
        # An untrained model spreads its probability: the low-confidence note must show.
        assert any("may be guessing" in warning for warning in card["warnings"])
    # Details on demand, only for the pictures that got an answer: the first one until another is chosen.
    assert app.selectbox(key="predict_details").options == ["Upload: wide.png", "Upload: photo.jpg", "Upload: anim.gif"]
    details = details_card(app)
    assert details["label"] == "Upload: wide.png"
    (table,) = details["tables"]
    assert list(table.columns) == ["Rank", "Class", "Probability"] and list(table["Rank"]) == [1, 2, 3]
    assert any("only knows these 10 classes" in warning for warning in details["warnings"])
    assert any("Grad-CAM" in caption.value and "approximate" in caption.value for caption in app.caption)
    app.selectbox(key="predict_details").set_value("Upload: anim.gif").run()
    assert details_card(app)["label"] == "Upload: anim.gif"


def test_samples_and_center_crop_with_the_nested_fast_model(shipped):
    app = run_page()
    app.selectbox(key="predict_model").set_value("fast")
    app.selectbox(key="predict_policy").set_value("center_crop")
    app.multiselect(key="predict_samples").set_value([0, 7]).run()
    assert_no_exception(app)
    found = grid_cards(app)
    assert [card["label"].split(" (")[0] for card in found] == ["CIFAR-10 test image 0", "CIFAR-10 test image 7"]
    assert all(len(top3_lines(card)) == 3 and not card["errors"] for card in found)
    assert len(details_card(app)["tables"]) == 1
    assert any("unflipped image" in caption.value for caption in app.caption)  # Grad-CAM on the trunk, said so
    assert any("Cut the largest square" in caption.value for caption in app.caption)


def test_ten_pictures_make_a_compact_grid_with_right_or_wrong_marks(shipped):
    from cnn.data import load_sample

    labels = load_sample().labels
    app = run_page()
    app.multiselect(key="predict_samples").set_value(list(range(10))).run()
    assert_no_exception(app)
    found = grid_cards(app)
    assert len(found) == 10
    for index, card in enumerate(found):
        true_class = CLASS_NAMES[int(labels[index])]
        top_class = top3_lines(card)[0].split("**")[1]
        mark = "✓ Right" if top_class == true_class else "✗ Wrong"
        article = "an" if true_class in ("airplane", "automobile") else "a"
        assert f"{mark}: it is {article} {true_class}." in card["text"]  # a sign and words, not colour alone
    # Four cards to a row (three rows for ten), and one chart: the chosen picture's ten bars.
    rows = [row for row in _rows_of_cards(app.main) if row]
    assert [len(row) for row in rows] == [4, 4, 2]
    assert len(app.get("plotly_chart")) == 1
    assert sum("Grad-CAM for" in caption.value for caption in app.caption) == 1  # computed once, on demand


def _rows_of_cards(node):
    """For each st.columns row under `node`, the labels of the cards in its columns."""
    for child in getattr(node, "children", {}).values():
        columns = [column for column in getattr(child, "children", {}).values() if column.type == "column"]
        if columns:
            yield [card["label"] for column in columns for card in cards_in(column)]
        yield from _rows_of_cards(child)


def cards_in(node) -> list[dict]:
    class Holder:
        main = node

    return cards(Holder)


def test_the_same_picture_added_twice_is_shown_once(shipped):
    same = encode(picture(40, 40, seed=5), "PNG")
    app = run_page()
    app.file_uploader(key="predict_uploads").set_value(
        [
            ("cat.png", same, "image/png"),
            ("other.png", encode(picture(40, 40, seed=6), "PNG"), "image/png"),
            ("cat (1).png", same, "image/png"),
        ]
    ).run()
    assert_no_exception(app)
    assert [card["label"] for card in grid_cards(app)] == ["Upload: cat.png", "Upload: other.png"]
    assert any("cat (1).png (the same picture as cat.png)" in caption.value for caption in app.caption)


def test_clear_removes_every_picture(shipped):
    app = run_page()
    app.file_uploader(key="predict_uploads").set_value(("ok.png", encode(picture(32, 32), "PNG"), "image/png"))
    app.multiselect(key="predict_samples").set_value([3])
    app.text_input(key="predict_url").set_value("http://127.0.0.1/cat.png")
    app.run()
    assert len(grid_cards(app)) == 3
    app.button(key="predict_clear").click().run()
    assert_no_exception(app)
    assert grid_cards(app) == []
    assert any("Add a picture" in info.value for info in app.info)
    assert app.text_input(key="predict_url").value == "" and app.multiselect(key="predict_samples").value == []
    assert app.file_uploader(key="predict_uploads_1").value in (None, [])  # a fresh, empty uploader


def test_camera_photo_is_predicted(shipped):
    app = run_page()
    app.toggle(key="predict_camera_on").set_value(True).run()
    app.camera_input(key="predict_camera").set_value(
        ("photo.jpg", encode(picture(64, 48, seed=4), "JPEG"), "image/jpeg")
    ).run()
    assert_no_exception(app)
    (card,) = grid_cards(app)
    assert card["label"] == "Camera photo" and len(top3_lines(card)) == 3


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/cat.png",
        "http://localhost/cat.png",
        "http://[::1]/cat.png",
        "http://169.254.169.254/latest/meta-data/",
    ],
)
def test_local_urls_are_refused_with_a_plain_message_and_uploads_still_work(shipped, url, monkeypatch):
    connections = []
    real_connect = socket.socket.connect
    monkeypatch.setattr(
        socket.socket, "connect", lambda sock, address: connections.append(address) or real_connect(sock, address)
    )
    app = run_page()
    app.text_input(key="predict_url").set_value(url)
    app.file_uploader(key="predict_uploads").set_value(("ok.png", encode(picture(32, 32), "PNG"), "image/png"))
    app.run()
    assert_no_exception(app)
    assert connections == []  # refused before any socket was opened
    by_label = {card["label"]: card for card in grid_cards(app)}
    (error,) = by_label[f"Link: {url}"]["errors"]
    assert "not allowed" in error and "Traceback" not in error
    assert len(top3_lines(by_label["Upload: ok.png"])) == 3


def test_the_page_never_reaches_a_local_server_even_on_its_port(shipped, monkeypatch):
    # With the server's port made a web port, only the address rule is left
    # to refuse it: the page must say the address is local and never connect.
    with ScriptedServer() as server:
        allow_only_the_port_of(server, monkeypatch)
        app = run_page()
        app.text_input(key="predict_url").set_value(server.url("/png")).run()
        assert server.connections == [] and server.seen == []
    assert_no_exception(app)
    (card,) = grid_cards(app)
    (error,) = card["errors"]
    assert "not allowed: it points to a private, local" in error and not card["text"]


def test_fetch_image_and_explain_through_a_real_local_server():
    from cnn.explain import explain_prediction
    from cnn.inference import Predictor
    from cnn.zoo import ZOO
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


def tiny_png(seed: int) -> bytes:
    return encode(picture(8, 8, seed=seed), "PNG")


def test_an_upload_answers_at_most_the_limit_and_says_how_many_were_ignored(shipped):
    from ui.prediction_views import MAX_UPLOADS

    app = run_page()
    app.file_uploader(key="predict_uploads").set_value(
        [(f"photo{index:02d}.png", tiny_png(index), "image/png") for index in range(MAX_UPLOADS + 3)]
    ).run()
    assert_no_exception(app)
    labels = [card["label"] for card in grid_cards(app)]
    assert labels == [f"Upload: photo{index:02d}.png" for index in range(MAX_UPLOADS)]
    (warning,) = [warning.value for warning in app.warning if "ignored" in warning.value]
    assert f"the first {MAX_UPLOADS} are answered" in warning and "the other 3 were ignored" in warning


def test_reruns_do_not_decode_uploads_again(shipped, monkeypatch):
    from ui import image_widgets, prediction_views

    decoded = []
    real_decode = image_widgets.decode_image
    monkeypatch.setattr(image_widgets, "decode_image", lambda data: decoded.append(len(data)) or real_decode(data))
    app = run_page()
    uploader = app.file_uploader(key="predict_uploads")
    large = encode(np.full((1030, 1100, 3), 90, np.uint8), "PNG")  # decoded at half size
    uploader.set_value([("a.png", large, "image/png"), ("bad.png", b"not an image", "image/png")]).run()
    assert len(decoded) == 2
    assert any(caption.value == "The original, 1100x1030 pixels." for caption in app.caption)
    app.selectbox(key="predict_policy").set_value("center_crop").run()  # a rerun: new policy, same files
    app.selectbox(key="predict_model").set_value("fast").run()
    assert_no_exception(app)
    assert len(decoded) == 2
    by_label = {card["label"]: card for card in grid_cards(app)}
    answered = by_label["Upload: a.png"]  # from what was decoded
    assert answered["text"] and not answered["errors"]
    assert by_label["Upload: bad.png"]["errors"] == [MESSAGE_UNSUPPORTED]  # the error is remembered too
    app.file_uploader(key="predict_uploads").set_value([("c.png", tiny_png(3), "image/png")]).run()
    assert len(decoded) == 3  # only the new file is decoded
    assert len(app.session_state[prediction_views.DECODED_KEY]) == 1  # files no longer on the page are forgotten


def test_a_busy_server_is_not_remembered_as_the_uploads_answer(shipped, monkeypatch):
    from cnn.images import MESSAGE_BUSY, DecodeBusyError
    from ui import image_widgets

    calls = []
    real_decode = image_widgets.decode_image

    def busy_once(data):
        calls.append(len(data))
        if len(calls) == 1:
            raise DecodeBusyError(MESSAGE_BUSY)
        return real_decode(data)

    monkeypatch.setattr(image_widgets, "decode_image", busy_once)
    app = run_page()
    app.file_uploader(key="predict_uploads").set_value(("a.png", tiny_png(5), "image/png")).run()
    assert grid_cards(app)[0]["errors"] == [MESSAGE_BUSY]
    app.run()
    assert_no_exception(app)
    (card,) = grid_cards(app)
    assert card["errors"] == [] and card["text"] and len(details_card(app)["tables"]) >= 1 and len(calls) == 2
