"""Time the convolution Learn page on a 256x256 RGB input (the largest an upload becomes).

Prints two figures, median of several runs:
  1. the page's numpy work alone (cnn.ops: feature maps, formulas, one written-out window);
  2. a full AppTest rerun of pages/learn_convolution.py after a control change,
     which adds widgets, plotly figure building and serialisation.
Target: well under 1 s each. Run: `.venv/bin/python benchmarks/learn_render.py`.
"""

from __future__ import annotations

import platform
import statistics
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.timing import timed_runs  # noqa: E402
from cnn import ops  # noqa: E402

SIDE = 256
REPEATS = 7
ALL_PRESETS_AT_7 = [name for name in ops.KERNEL_PRESETS if 7 in ops.preset_sizes(name)]

# The page as the upload path sees it, with the upload replaced by a fixed 256x256 image.
PAGE_WITH_FIXED_UPLOAD = f"""
import runpy
import numpy as np
from ui import learn_widgets

learn_widgets.uploaded_image = lambda key: (
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
            print(f"  numpy  {len(kernels)} filter(s) {size}x{size}, stride {spec.stride}, padding "
                  f"{spec.padding!r}, dilation {spec.dilation}: {seconds * 1000:7.1f} ms")


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


def main() -> None:
    print(f"Convolution page on a {SIDE}x{SIDE}x3 input; median of {REPEATS} runs; "
          f"{platform.processor() or platform.machine()}, Python {platform.python_version()}, "
          f"numpy {np.__version__}")
    image = np.random.default_rng(0).integers(0, 256, (SIDE, SIDE, 3), dtype=np.uint8)
    time_computation(image)
    time_apptest_rerun()


if __name__ == "__main__":
    main()
