"""End-to-end: the real app in headless Debian chromium. Every page the router registers opens
without an exception or error box, there is exactly one navigation menu, and it lists every page.

Screenshots land in each test's tmp_path (pytest prints where with -rA; or pass --basetemp).
CNN_BROWSER_APP may name another router file (e.g. a copy listing fewer pages) to test instead.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from browser_support import (
    CHROMIUM,
    CHROMIUM_ARGS,
    PAGE_RUN_TIMEOUT_MS,
    ROOT,
    RegisteredPage,
    StreamlitServer,
    registered_pages,
    screenshot_whole_page,
    wait_for_app_run,
)

ENTRY = Path(os.environ.get("CNN_BROWSER_APP", ROOT / "streamlit_app.py"))
PAGES = registered_pages(ENTRY)

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.skipif(importlib.util.find_spec("playwright") is None,
                       reason="the playwright Python package is not installed"),
]


@pytest.fixture(scope="session")
def server(tmp_path_factory):
    missing = [page.path for page in PAGES if not (ENTRY.parent / page.path).is_file()]
    if missing:
        pytest.fail(f"{ENTRY.name} registers pages that do not exist yet, so the app cannot start: {missing}")
    app = StreamlitServer(ENTRY, tmp_path_factory.mktemp("streamlit") / "server.log")
    try:
        app.wait_healthy()
    except RuntimeError as error:
        app.stop()
        pytest.fail(str(error))
    yield app
    app.stop()


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser):
    """A fresh tab (own session) that records uncaught JavaScript errors in `page.js_errors`."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(PAGE_RUN_TIMEOUT_MS)  # CI machines can be slow and busy
    tab = context.new_page()
    tab.js_errors = []
    tab.on("pageerror", lambda error: tab.js_errors.append(str(error)))
    yield tab
    context.close()


def open_page(page, server: StreamlitServer, registered: RegisteredPage) -> None:
    page.goto(f"{server.url}/{registered.url_path}", wait_until="domcontentloaded")
    wait_for_app_run(page)


def assert_no_errors(page, server: StreamlitServer, where: str) -> None:
    exceptions = page.locator("[data-testid=stException]")
    error_boxes = page.locator("[data-testid=stAlertContentError]")
    assert exceptions.count() == 0, f"{where}: exception shown: {exceptions.all_inner_texts()}\n{server.log_tail()}"
    assert error_boxes.count() == 0, f"{where}: error box shown: {error_boxes.all_inner_texts()}"
    assert not page.js_errors, f"{where}: JavaScript errors: {page.js_errors}"


def test_router_registers_pages():
    assert PAGES, f"no st.Page('pages/...') found in {ENTRY}"
    assert sum(page.default for page in PAGES) == 1, "exactly one page must be the default"


def test_one_navigation_menu_lists_every_page(server, page, tmp_path):
    open_page(page, server, next(registered for registered in PAGES if registered.default))
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
    assert_no_errors(page, server, f"{target.title} via the menu")


@pytest.mark.parametrize("registered", PAGES, ids=[Path(page.path).stem for page in PAGES])
def test_page_opens_without_errors(server, page, registered, tmp_path):
    open_page(page, server, registered)
    screenshot_whole_page(page, tmp_path / f"{Path(registered.path).stem}.png")
    assert_no_errors(page, server, registered.title)
    assert page.locator("[data-testid=stSidebarNav]").count() == 1
    # The page under the URL is the one the menu marks as current.
    active = page.locator("[data-testid=stSidebarNavLink][aria-current=page]")
    if active.count():
        assert registered.title in active.first.inner_text()


def test_dataset_page_augmentation_preview(server, page, tmp_path):
    """The one browser interaction that starts TensorFlow in the server: the augmentation preview."""
    dataset = next((registered for registered in PAGES if registered.path == "pages/dataset.py"), None)
    if dataset is None:
        pytest.skip("the router does not register pages/dataset.py")
    open_page(page, server, dataset)
    charts = page.locator("[data-testid=stPlotlyChart]")
    charts.nth(2).wait_for()  # image grid, histogram, class balance
    assert charts.count() == 3, "the preview must wait for its toggle"
    page.get_by_text("Show the augmentation preview").click()
    page.get_by_text("Original and augmented copies").wait_for()
    wait_for_app_run(page)
    assert charts.count() == 4
    assert_no_errors(page, server, "augmentation preview")
    screenshot_whole_page(page, tmp_path / "dataset_augmentation.png")
