"""End-to-end: the real app in headless Debian chromium. Every page the router registers opens
without an exception or error box, there is exactly one navigation menu, and it lists every page.

The server (`shipped_models_server`) runs the shipped models on the bundled sample images.
Screenshots land in each test's tmp_path (pytest prints where with -rA; or pass --basetemp).
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
from browser_support import (
    BROWSER_MARKS,
    RegisteredPage,
    StreamlitServer,
    open_path,
    registered_pages,
    screenshot_whole_page,
    wait_for_app_run,
)

PAGES = registered_pages()

pytestmark = BROWSER_MARKS


def open_page(page, server: StreamlitServer, registered: RegisteredPage) -> None:
    open_path(page, server, registered.url_path)


def assert_no_errors(page, server: StreamlitServer, where: str) -> None:
    exceptions = page.locator("[data-testid=stException]")
    error_boxes = page.locator("[data-testid=stAlertContentError]")
    assert exceptions.count() == 0, f"{where}: exception shown: {exceptions.all_inner_texts()}\n{server.log_tail()}"
    assert error_boxes.count() == 0, f"{where}: error box shown: {error_boxes.all_inner_texts()}"
    assert not page.js_errors, f"{where}: JavaScript errors: {page.js_errors}"


def test_one_navigation_menu_lists_every_page(shipped_models_server, page, tmp_path):
    open_page(page, shipped_models_server, next(registered for registered in PAGES if registered.default))
    assert page.locator("[data-testid=stSidebarNav]").count() == 1, "a second (legacy pages/) menu appeared"
    more = page.locator("[data-testid=stSidebarNavViewButton]")
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    links = page.locator("[data-testid=stSidebarNavLink]")
    texts = [text.strip() for text in links.all_inner_texts()]
    assert len(texts) == len(PAGES), texts
    for registered in PAGES:
        assert any(registered.title in text for text in texts), f"{registered.title!r} not in the menu {texts}"
    screenshot_whole_page(page, tmp_path / "menu.png")

    # Navigating through the menu (not by URL) works too and changes the address.
    target = PAGES[-1]
    links.filter(has_text=target.title).first.click()
    page.wait_for_url(f"**/{target.url_path}")
    wait_for_app_run(page)
    assert_no_errors(page, shipped_models_server, f"{target.title} via the menu")


@pytest.mark.parametrize("registered", PAGES, ids=[Path(page.path).stem for page in PAGES])
def test_page_opens_without_errors(shipped_models_server, page, registered, tmp_path):
    open_page(page, shipped_models_server, registered)
    screenshot_whole_page(page, tmp_path / f"{Path(registered.path).stem}.png")
    assert_no_errors(page, shipped_models_server, registered.title)
    assert page.locator("[data-testid=stSidebarNav]").count() == 1
    # The page under the URL is the one the menu marks as current.
    active = page.locator("[data-testid=stSidebarNavLink][aria-current=page]")
    if active.count():
        assert registered.title in active.first.inner_text()


def test_dataset_page_augmentation_preview(shipped_models_server, page, tmp_path):
    """The one browser interaction that starts TensorFlow in the server: the augmentation preview."""
    dataset = next((registered for registered in PAGES if registered.path == "pages/dataset.py"), None)
    if dataset is None:
        pytest.skip("the router does not register pages/dataset.py")
    open_page(page, shipped_models_server, dataset)
    charts = page.locator("[data-testid=stPlotlyChart]")
    charts.nth(2).wait_for()  # image grid, histogram, class balance
    assert charts.count() == 3, "the preview must wait for its toggle"
    page.get_by_text("Show the augmentation preview").click()
    page.get_by_text("Original and augmented copies").wait_for()
    wait_for_app_run(page)
    assert charts.count() == 4
    assert_no_errors(page, shipped_models_server, "augmentation preview")
    screenshot_whole_page(page, tmp_path / "dataset_augmentation.png")


UPLOAD_BUTTON = re.compile(r"^(Upload|Browse files)$")  # Streamlit 1.67 / before


def confident_sample_png(folder: Path) -> tuple[Path, str, str, float]:
    """A bundled test image that the Predict page's preselected model gets right with probability > 0.9,
    saved as a 128x128 PNG (nearest-neighbour upscale): (path, true class name, model name, probability).

    The check runs on the PNG's decoded bytes with the page's pipeline (squash to 32x32), so the
    expected answer is the one the page must show."""
    from PIL import Image

    from cnn import CLASS_NAMES
    from cnn.artifacts import list_models, load_model
    from cnn.data import load_sample
    from cnn.images import decode_image
    from cnn.inference import Predictor, quick_enough_model

    records = list_models()
    if not records:
        pytest.skip("no saved model in models/")
    name = quick_enough_model(records) or records[0]["name"]  # the Predict page's preselected model
    predictor = Predictor(load_model(name)[0])
    sample = load_sample()
    path = folder / "upload.png"
    for start in range(0, 200, 50):
        images, labels = sample.images[start : start + 50], sample.labels[start : start + 50]
        for index in np.flatnonzero(predictor.predict(images) == labels):
            Image.fromarray(images[index]).resize((128, 128), Image.NEAREST).save(path)
            probabilities = predictor.predict_proba([decode_image(path.read_bytes())], policy="squash")[0]
            if probabilities.argmax() == labels[index] and probabilities.max() > 0.9:
                return path, CLASS_NAMES[int(labels[index])], name, float(probabilities.max())
    pytest.fail(f"none of the first 200 bundled test images is a confident right answer of {name}")


def test_upload_through_file_chooser_reads_top1(shipped_models_server, page, tmp_path):
    """Uploads a file through the real file chooser and reads the top-1 label."""
    png, expected, model_name, expected_probability = confident_sample_png(tmp_path)
    predict = next((registered for registered in PAGES if registered.path == "pages/predict.py"), None)
    if predict is None:
        pytest.skip("the router does not register pages/predict.py")
    open_page(page, shipped_models_server, predict)
    model = page.get_by_role("combobox", name=re.compile(r"^Model \(preselected"))
    assert model.input_value().startswith(model_name), model.input_value()

    with page.expect_file_chooser() as chooser:
        page.locator("[data-testid=stFileUploader]").get_by_role("button", name=UPLOAD_BUTTON).click()
    assert chooser.value.is_multiple()
    chooser.value.set_files(png)
    page.get_by_text(f"Upload: {png.name}").first.wait_for()  # the grid card, the details picker and card
    page.get_by_text("Top guess:").wait_for()
    wait_for_app_run(page)
    table = page.locator("[data-testid=stDataFrame]").first
    table.wait_for()
    rows = table_rows(table)
    screenshot_whole_page(page, tmp_path / "predict_upload.png")
    assert_no_errors(page, shipped_models_server, "predict upload")
    assert rows[0] == ["Rank", "Class", "Probability"], rows
    assert len(rows) == 4, rows
    rank, top1, probability = rows[1]
    assert rank == "1" and top1 == expected, rows
    assert abs(float(probability.rstrip("%")) - 100 * expected_probability) < 0.15, (rows, expected_probability)
    assert f"Top guess: {expected} with probability" in page.locator("[data-testid=stMain]").inner_text()


def table_rows(dataframe) -> list[list[str]]:
    """The cells of an st.dataframe, header row first. The grid is drawn on a canvas; its cells are
    read from the accessible table that glide-data-grid keeps beside it for screen readers."""
    return dataframe.evaluate("""frame => [...frame.querySelectorAll('table tr')].map(
        row => [...row.querySelectorAll('th, td')].map(cell => cell.innerText.trim()))""")
