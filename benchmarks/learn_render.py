"""Time the Learn pages: the convolution page on a 256x256 RGB input, "How a computer sees" in a browser.

Prints, median of several runs:
  1. the convolution page's numpy work alone (cnn.ops: feature maps, formulas, one written-out window);
  2. a full AppTest rerun of pages/learn_convolution.py after a control change,
     which adds widgets, plotly figure building and serialisation;
  3. "How a computer sees" (pages/learn_pixels.py) in headless Debian chromium at 1440x900 (a
     projector): from a key press on the row slider until the last chart has redrawn. This is what
     a class waits for; the server's part alone is a small share of it.
Target: well under 1 s each. Run: `.venv/bin/python benchmarks/learn_render.py`.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # as pytest does: the tests import their helpers by module name

from benchmarks.timing import timed_runs  # noqa: E402
from cnn import ops  # noqa: E402

SIDE = 256
REPEATS = 7
ALL_PRESETS_AT_7 = [name for name in ops.KERNEL_PRESETS if 7 in ops.preset_sizes(name)]

# The page as the upload path sees it, with the upload replaced by a fixed 256x256 image.
PAGE_WITH_FIXED_UPLOAD = f"""
import runpy
import numpy as np
from ui import image_widgets

image_widgets.uploaded_image = lambda key, purpose, max_side=None: (
    np.random.default_rng(0).integers(0, 256, ({SIDE}, {SIDE}, 3), dtype=np.uint8),
    "a random {SIDE}x{SIDE} image",
)
runpy.run_path({str(ROOT / "pages" / "learn_convolution.py")!r})
"""


def median_seconds(action, repeats: int = REPEATS) -> float:
    """Median wall time of `action()` over `repeats` runs, after one warm-up run."""
    return statistics.median(timed_runs(action, repeats))


def page_computation(image: np.ndarray, kernels: list[np.ndarray], spec: ops.ConvSpec) -> None:
    """What the page asks of cnn.ops on each rerun."""
    ops.feature_maps(image, kernels, spec)
    ops.output_size_formulas(image.shape, len(kernels[0]), spec)
    ops.dot_product_lines(ops.window_breakdown(image, kernels[0], spec, 1000))


def time_computation(image: np.ndarray) -> None:
    for names, size in ((["edge"], 3), (["edge"], 7), (ALL_PRESETS_AT_7, 7)):
        kernels = [ops.kernel_preset(name, size) for name in names]
        for spec in (ops.ConvSpec(padding="same"), ops.ConvSpec(stride=2, padding=3, dilation=2)):
            seconds = median_seconds(lambda: page_computation(image, kernels, spec))
            print(
                f"  numpy  {len(kernels)} filter(s) {size}x{size}, stride {spec.stride}, padding "
                f"{spec.padding!r}, dilation {spec.dilation}: {seconds * 1000:7.1f} ms"
            )


def time_apptest_rerun() -> None:
    from streamlit.testing.v1 import AppTest

    app = AppTest.from_string(PAGE_WITH_FIXED_UPLOAD, default_timeout=60)
    app.run()
    app.radio(key="conv_source").set_value("Upload an image").run()
    assert not app.exception, app.exception
    strides = iter([1, 2] * (REPEATS + 1))
    seconds = median_seconds(lambda: app.slider(key="conv_stride").set_value(next(strides)).run())
    print(f"  AppTest rerun after a stride change, 1 filter 3x3:  {seconds * 1000:7.1f} ms")
    app.select_slider(key="conv_kernel_size").set_value(7).run()
    app.multiselect(key="conv_presets_7").set_value(ALL_PRESETS_AT_7).run()
    assert not app.exception, app.exception
    seconds = median_seconds(lambda: app.slider(key="conv_stride").set_value(next(strides)).run())
    print(f"  AppTest rerun after a stride change, {len(ALL_PRESETS_AT_7)} filters 7x7: {seconds * 1000:7.1f} ms")


BROWSER_REPEATS = 5
VIEWPORT = {"width": 1440, "height": 900}
# Notes the time of the page's last DOM change: plotly redraws a chart by rewriting its SVG, and
# Streamlit may replace a chart's element, so watching the whole document catches both.
_WATCH_CHANGES = """() => {
    window.__lastChange = performance.now();
    if (!window.__observer) {
        window.__observer = new MutationObserver(() => { window.__lastChange = performance.now(); });
        window.__observer.observe(document.body, {subtree: true, childList: true, attributes: true,
                                                  characterData: true});
    }
}"""
QUIET_MS = 800  # nothing changed in the page for this long: it has settled


def _settle(page) -> None:
    """Wait until the script has finished and nothing in the page has changed for QUIET_MS."""
    page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached")
    page.wait_for_function(f"() => performance.now() - window.__lastChange > {QUIET_MS}", polling=100)


def time_pixels_page_in_browser() -> None:
    """Median seconds from a row-slider key press to the page's last change, in headless chromium."""
    from browser_support import CHROMIUM, CHROMIUM_ARGS, StreamlitServer, open_path, wait_for_app_run

    if not CHROMIUM.exists():
        print(f"  browser: skipped ({CHROMIUM} is missing)")
        return
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder, sync_playwright() as playwright:
        server = StreamlitServer(ROOT / "streamlit_app.py", Path(folder) / "server.log")
        try:
            server.wait_healthy()
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = browser.new_context(viewport=VIEWPORT).new_page()
            page.set_default_timeout(120_000)
            open_path(page, server, "learn_pixels")
            slider = page.get_by_role("slider", name="Row (y)")
            timings = []
            for _ in range(BROWSER_REPEATS + 1):  # the first is a warm-up
                page.evaluate(_WATCH_CHANGES)
                slider.focus()
                started = page.evaluate("() => performance.now()")
                slider.press("ArrowRight")
                page.wait_for_timeout(200)  # let the rerun start
                _settle(page)
                timings.append((page.evaluate("() => window.__lastChange") - started) / 1000)
            wait_for_app_run(page)
            browser.close()
        finally:
            server.stop()
    seconds = statistics.median(timings[1:])
    print(
        f"  browser, How a computer sees, row slider +1 until the page stops changing, "
        f"{VIEWPORT['width']}x{VIEWPORT['height']}: {seconds * 1000:7.1f} ms (runs: "
        + ", ".join(f"{value * 1000:.0f}" for value in timings[1:])
        + ")"
    )


def main() -> None:
    print(
        f"Convolution page on a {SIDE}x{SIDE}x3 input; median of {REPEATS} runs; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
        f"numpy {np.__version__}; load average at start {os.getloadavg()[0]:.1f} (other processes share "
        "these cores: every figure grows with it)"
    )
    image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    time_computation(image)
    time_apptest_rerun()
    time_pixels_page_in_browser()


if __name__ == "__main__":
    main()
