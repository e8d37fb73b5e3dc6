"""Evaluate and deep links in headless Debian chromium: a link opened first on a fresh server gets the real
menu and the wide layout; a click on a confusion-matrix cell shows that cell's images; the classification
report shows all its rows without an inner scroll bar.

The servers use the shipped models (their stored predictions) and the bundled sample images, so no
model is run and no full data set is needed: the deep link starts a server of its own (it must be the
server's first request), the other tests share the session's `shipped_models_server`.
"""

from __future__ import annotations

import re

import pytest
from browser_support import APP_ENTRY, BROWSER_MARKS, open_path, registered_pages, running_server, wait_for_app_run
from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

PAGES = registered_pages()
CENTERED_MAX_PX = 740  # Streamlit's centered layout is at most 736 px wide; the wide one fills the window

pytestmark = BROWSER_MARKS


@pytest.fixture
def fresh_server(tmp_path):
    """A server that has served nothing yet, on the shipped models and the bundled sample images."""
    (tmp_path / "runs").mkdir()
    (tmp_path / "no-data").mkdir()
    with running_server(
        APP_ENTRY, tmp_path, env={"CNN_RUNS_DIR": str(tmp_path / "runs"), "CIFAR10_DIR": str(tmp_path / "no-data")}
    ) as app:
        yield app


def menu_texts(page) -> list[str]:
    more = page.locator("[data-testid=stSidebarNavViewButton]")
    if more.count() and "more" in more.inner_text().lower():
        more.click()
    return [text.strip() for text in page.locator("[data-testid=stSidebarNavLink]").all_inner_texts()]


def test_a_deep_link_opened_first_shows_the_real_menu_and_layout(fresh_server, page):
    page.goto(f"{fresh_server.url}/evaluate", wait_until="domcontentloaded")  # the server's first request
    wait_for_app_run(page)
    assert page.locator("[data-testid=stMain] h1").first.inner_text() == "Evaluate a model"
    assert page.locator("[data-testid=stSidebarNav]").count() == 1, "a second (legacy pages/) menu appeared"
    texts = menu_texts(page)
    assert len(texts) == len(PAGES), texts
    for registered in PAGES:  # the router's titles, not the legacy menu's file names ("learn pixels")
        assert any(registered.title in text for text in texts), f"{registered.title!r} not in the menu {texts}"
    assert "Concept" in page.locator("[data-testid=stSidebar]").inner_text()  # the router's shared sidebar
    width = page.locator("[data-testid=stMainBlockContainer]").bounding_box()["width"]
    assert width > CENTERED_MAX_PX, f"the main column is {width:.0f} px wide: the centered layout, not the wide one"


def cell_centre(page, true_index: int, predicted_index: int) -> tuple[float, float]:
    """Page coordinates of a confusion-matrix cell, from plotly's own axes (categories sit at 0, 1, ...)."""
    return page.evaluate(
        """([row, column]) => {
            const chart = document.querySelector('[data-testid=stPlotlyChart] .js-plotly-plot');
            const layout = chart._fullLayout, box = chart.getBoundingClientRect();
            return [box.left + layout.xaxis._offset + layout.xaxis.l2p(column),
                    box.top + layout.yaxis._offset + layout.yaxis.l2p(row)];
        }""",
        [true_index, predicted_index],
    )


def gallery_heading(page) -> str:
    caption = re.compile(r"image\(s\) (predicted as|correctly)")
    return page.locator("[data-testid=stMain]").get_by_text(caption).first.inner_text()


def picker_value(page, label: str) -> str:
    """The value a selectbox shows (its text, or its combobox input's value)."""
    box = page.locator("[data-testid=stSelectbox]").filter(has_text=label).first
    inputs = box.locator("input")
    shown = box.inner_text().replace(label, "").strip()
    return shown or (inputs.first.input_value() if inputs.count() else "")


def test_clicking_a_confusion_cell_shows_its_images(shipped_models_server, page, tmp_path):
    open_path(page, shipped_models_server, "evaluate")
    before = gallery_heading(page)
    assert "truck image(s) predicted as automobile" not in before
    wait_for_app_run(page)  # a click while the page still runs can land on a chart about to be redrawn
    chart = page.locator("[data-testid=stPlotlyChart]").first
    chart.scroll_into_view_if_needed()
    selected = page.get_by_text(re.compile(r"truck image\(s\) predicted as automobile")).first
    for attempt in range(1, 4):  # on a loaded machine a click may still reach a redrawing chart: click again
        page.wait_for_timeout(500)
        x, y = cell_centre(page, 9, 1)  # true truck, predicted automobile
        page.mouse.move(x, y)
        page.mouse.click(x, y)
        try:
            selected.wait_for(timeout=60_000)
            break
        except PlaywrightTimeoutError:
            if attempt == 3:
                raise
    wait_for_app_run(page)
    assert picker_value(page, "True class") == "truck" and picker_value(page, "Predicted as") == "automobile"
    captions = page.locator("[data-testid=stMain] [data-testid=stImageCaption]").all_inner_texts()
    assert captions and all("automobile" in caption for caption in captions), captions
    page.screenshot(path=str(tmp_path / "clicked_cell.png"))


def test_the_classification_report_shows_every_row(shipped_models_server, page):
    open_path(page, shipped_models_server, "evaluate")
    table = page.locator("[data-testid=stDataFrame]").first
    table.scroll_into_view_if_needed()
    scroll = page.evaluate(
        """() => {
            const scroller = document.querySelector('[data-testid=stDataFrame] .dvn-scroller');
            return [scroller.scrollHeight, scroller.clientHeight];
        }"""
    )
    assert scroll[0] <= scroll[1] + 1, f"the report scrolls inside itself: {scroll[0]} px of rows in {scroll[1]} px"
