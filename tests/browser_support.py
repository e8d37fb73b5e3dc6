"""Helpers for the browser tests: the pages the router registers, a real Streamlit server, chromium.

conftest.py imports the fixtures here, so a test session has one chromium and one server of each kind
however many browser test files run: `shipped_models_server` (read-only: the shipped models, the bundled
sample) and `training_server` (synthetic data, its own runs and models folders, for flows that train).

Modelled on Streamlit's own e2e suite (e2e_playwright/conftest.py): start
`streamlit run` headless on a free port, poll `/_stcore/health` until it says
"ok", then wait in the page for `stApp` to report `notRunning`.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from ui import menu

ROOT = Path(__file__).resolve().parents[1]
APP_ENTRY = ROOT / "streamlit_app.py"  # the router every server runs
TRAINING_SYNTHETIC_PER_BATCH = 400  # the training server's data: five batches, 2,000 training images
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SERVER_START_TIMEOUT_S = 60
PAGE_RUN_TIMEOUT_MS = 120_000  # the model pages import TensorFlow: slow on a busy 2-core machine

# The module marks of every browser test file: marked `browser`, skipped without chromium or playwright.
BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason=f"{CHROMIUM} is missing (apt-get install chromium)"),
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None, reason="the playwright Python package is not installed"
    ),
]


@dataclass(frozen=True)
class RegisteredPage:
    """One page of the router's menu (`ui.menu`), with the URL path Streamlit derives."""

    path: str
    title: str
    default: bool

    @property
    def url_path(self) -> str:
        """The default page lives at "/", the others at their file name without ".py"."""
        return "" if self.default else Path(self.path).stem


def registered_pages() -> list[RegisteredPage]:
    """Every page of the app's menu (`ui.menu`, which the router registers), in menu order."""
    return [RegisteredPage(path=page.path, title=page.title, default=page.default) for page in menu.PAGES]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class StreamlitServer:
    """`streamlit run ENTRY` on 127.0.0.1:<port, a free one by default>, its output kept in a log file."""

    def __init__(self, entry: Path, log_path: Path, env: dict | None = None, port: int | None = None):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        command = [
            str(Path(sys.executable)),
            "-m",
            "streamlit",
            "run",
            str(entry),
            "--server.headless",
            "true",
            "--server.address",
            "127.0.0.1",
            "--server.port",
            str(self.port),
            "--browser.gatherUsageStats",
            "false",
        ]
        self._log = log_path.open("wb")
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
            start_new_session=True,  # its own process group: stop() also ends its children (training workers)
        )

    def wait_healthy(self, timeout_s: float = SERVER_START_TIMEOUT_S) -> None:
        """Poll /_stcore/health until it answers "ok"; RuntimeError with the log tail otherwise."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"streamlit exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/_stcore/health", timeout=2) as response:
                    if response.read().decode().strip() == "ok":
                        return
            except OSError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"streamlit was not healthy after {timeout_s} s:\n{self.log_tail()}")

    def log_tail(self, characters: int = 4000) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-characters:]

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=15)
        self._log.close()


@contextmanager
def running_server(entry: Path, folder: Path, env: dict | None = None):
    """A healthy `StreamlitServer` logging to FOLDER/server.log, stopped on exit; pytest.fail when it won't start.

    `env` adds to (or overrides) this process's environment: the tests point CNN_RUNS_DIR,
    and where needed CNN_MODELS_DIR and CIFAR10_DIR, at their own folders, so the app never
    shows or touches the developer's runs.
    """
    app = StreamlitServer(entry, folder / "server.log", env=env)
    try:
        app.wait_healthy()
    except RuntimeError as error:
        app.stop()
        pytest.fail(str(error))
    try:
        yield app
    finally:
        app.stop()


@pytest.fixture(scope="session")
def browser():
    """Headless Debian chromium (never a Playwright-downloaded browser), one for the whole test session."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="session")
def shipped_models_server(tmp_path_factory):
    """The app on the shipped models/ and the bundled sample images, with an empty runs folder of its own:
    the pages never show (or lock) whatever the developer is training in runs/. For tests that only read."""
    missing = [page.path for page in registered_pages() if not (ROOT / page.path).is_file()]
    if missing:
        pytest.fail(f"{APP_ENTRY.name} registers pages that do not exist yet, so the app cannot start: {missing}")
    folder = tmp_path_factory.mktemp("shipped_models_server")
    (folder / "runs").mkdir()
    (folder / "no-data").mkdir()  # no CIFAR-10 here: the pages use the bundled sample, as a fresh install does
    with running_server(
        APP_ENTRY, folder, env={"CNN_RUNS_DIR": str(folder / "runs"), "CIFAR10_DIR": str(folder / "no-data")}
    ) as app:
        yield app


@pytest.fixture(scope="session")
def training_server(tmp_path_factory):
    """The app with synthetic data (2,000 training images) and empty runs and models folders of its own:
    nothing of the developer's is read or replaced. Two workers may train at once, so a run left behind
    by a failed test does not hold the next test's run in line."""
    from conftest import make_synthetic_cifar

    folder = tmp_path_factory.mktemp("training_server")
    synthetic_cifar = make_synthetic_cifar(folder / "cifar-10-batches-py", per_batch=TRAINING_SYNTHETIC_PER_BATCH)
    runs, models = folder / "runs", folder / "models"
    runs.mkdir()
    models.mkdir()
    env = {
        "CIFAR10_DIR": str(synthetic_cifar),
        "CNN_RUNS_DIR": str(runs),
        "CNN_MODELS_DIR": str(models),
        "CNN_MAX_WORKERS": "2",
    }
    with running_server(APP_ENTRY, folder, env=env) as app:
        app.runs_dir, app.models_dir = runs, models
        yield app


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


def wait_for_app_run(page, timeout_ms: int = PAGE_RUN_TIMEOUT_MS) -> None:
    """Wait until the app is connected, the script has finished and the page has drawn its title."""
    page.wait_for_selector(
        "[data-testid=stApp][data-test-connection-state=CONNECTED]", state="attached", timeout=timeout_ms
    )
    page.wait_for_timeout(300)  # let a rerun triggered by the navigation start
    page.wait_for_selector(
        "[data-testid=stApp][data-test-script-state=notRunning]", state="attached", timeout=timeout_ms
    )
    page.wait_for_selector("[data-testid=stMain] h1", timeout=timeout_ms)
    page.wait_for_selector("[data-testid=stStatusWidget]", state="detached", timeout=timeout_ms)
    page.wait_for_load_state("networkidle")  # lazily loaded element code (plotly) has arrived
    page.wait_for_timeout(500)  # plotly draws after the script ends


def open_path(page, server: StreamlitServer, url_path: str) -> None:
    """Open the app at /URL_PATH and wait for its run.

    A fresh server that first gets a request for a sub-page (say /train) runs pages/train.py as a
    legacy `pages/` page, without the router: a menu of file names, no page config, no shared
    sidebar (seen with Streamlit 1.67). Once the router has run, in any session, every sub-page URL
    goes through `st.navigation`. So the first visit to a server opens the default page first.
    """
    if url_path and not getattr(server, "router_ran", False):
        page.goto(f"{server.url}/", wait_until="domcontentloaded")
        wait_for_app_run(page)
    server.router_ran = True
    page.goto(f"{server.url}/{url_path}", wait_until="domcontentloaded")
    wait_for_app_run(page)


def screenshot_whole_page(page, path: Path, max_height: int = 9000) -> None:
    """Streamlit scrolls inside its main container, so full_page shots stop at the viewport:
    grow the viewport to the content's height first, then shoot, then restore it."""
    viewport = page.viewport_size
    height = page.evaluate(
        "() => Math.max(...[...document.querySelectorAll("
        "'[data-testid=stMain], [data-testid=stAppScrollToBottomContainer]')]"
        ".map(element => element.scrollHeight), document.body.scrollHeight)"
    )
    page.set_viewport_size({"width": viewport["width"], "height": min(int(height) + 40, max_height)})
    page.wait_for_timeout(800)  # plotly charts resize to the new layout
    page.screenshot(path=str(path), full_page=True)
    page.set_viewport_size(viewport)


# Points of the live loss chart's training line ("this run: training"), or -1 when it is not drawn yet.
LIVE_LOSS_POINTS = """() => {
    for (const plot of document.querySelectorAll('.js-plotly-plot')) {
        const title = plot.layout && plot.layout.title && plot.layout.title.text || '';
        const trace = (plot.data || []).find(trace => trace.name === 'this run: training');
        if (title.includes('Loss') && trace) return trace.x.length;
    }
    return -1;
}"""
# The circle markers plotly drew for that line (what the reader sees).
LIVE_LOSS_MARKERS = """() => {
    for (const plot of document.querySelectorAll('.js-plotly-plot')) {
        const title = plot.layout && plot.layout.title && plot.layout.title.text || '';
        const index = (plot.data || []).findIndex(trace => trace.name === 'this run: training');
        if (title.includes('Loss') && index >= 0)
            return plot.querySelectorAll('.scatterlayer .trace')[index].querySelectorAll('.points path').length;
    }
    return -1;
}"""
