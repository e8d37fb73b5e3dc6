"""AppTest runs of every Learn page: widgets exercised, no exception, expected elements shown.
(That they never import TensorFlow: test_app.)"""

import importlib.util
import json
import time
import traceback
from pathlib import Path

import browser_support
import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from cnn.images import MESSAGE_UNSUPPORTED
from ui import image_widgets, plots, resources

ROOT = Path(__file__).resolve().parents[1]


def run_page(name: str) -> AppTest:
    """Run one Learn page as its own script (it needs nothing from the router)."""
    app = AppTest.from_file(str(ROOT / "pages" / f"{name}.py"), default_timeout=30)
    return app.run()


def charts(app: AppTest) -> list:
    return app.get("plotly_chart")


def step_slider(app: AppTest):
    """The window-position slider (its key carries the window count, so it resets on resize)."""
    return next(slider for slider in app.slider if slider.key.startswith(("conv_step_", "pool_step_")))


def assert_ok(app: AppTest) -> None:
    assert not app.exception, [exception.value for exception in app.exception]
    assert charts(app), "expected at least one plotly chart"
    assert app.caption, "every figure needs a caption"


def spec(chart) -> dict:
    """The plotly figure a chart element sends to the browser."""
    return json.loads(chart.proto.spec)


def rows_of_columns(node):
    """Every st.columns row under `node`: for each, the chart titles of each column."""
    for child in getattr(node, "children", {}).values():
        columns = [column for column in getattr(child, "children", {}).values() if column.type == "column"]
        if columns:
            yield [[spec(chart)["layout"]["title"]["text"] for chart in _charts_under(column)] for column in columns]
        yield from rows_of_columns(child)


def _charts_under(node):
    for child in getattr(node, "children", {}).values():
        if getattr(child, "type", None) == "plotly_chart":
            yield child
        yield from _charts_under(child)


def cell_texts(figure: dict) -> list | None:
    """The numbers written in a heatmap's cells (None when the cells carry none)."""
    return figure["data"][0].get("text")


def test_pixels_page_shows_the_picture_zoomed_numbers_and_three_channels():
    app = run_page("learn_pixels")
    assert_ok(app)
    figures = [spec(chart) for chart in charts(app)]
    assert len(figures) == 7  # the picture, three 7x7 zooms, the R, G, B grids
    zooms, channels = figures[1:4], figures[4:]
    # 32x32 grids: 1,024 numbers per grid overlapped at 1440x900, so none are written in; the zooms have them.
    assert all(cell_texts(figure) is None for figure in channels)
    assert all(len(cell_texts(figure)) == 7 and len(cell_texts(figure)[0]) == 7 for figure in zooms)
    image = resources.get_sample().images[0]
    assert cell_texts(zooms[0])[3][3] == str(image[16, 16, 0])  # the chosen pixel sits in the middle
    assert zooms[0]["layout"]["xaxis"]["range"] == [12.5, 19.5]  # the large grid's column numbers
    assert any("point at a cell" in caption.value for caption in app.caption)

    app.slider(key="pixels_row").set_value(0).run()  # the zoom is cut at the picture's edge
    app.slider(key="pixels_column").set_value(31).run()
    app.number_input(key="pixels_sample_index").set_value(7).run()
    assert_ok(app)
    zoom = spec(charts(app)[1])
    assert len(cell_texts(zoom)) == 4 and len(cell_texts(zoom)[0]) == 4
    assert any("in binary" in markdown.value for markdown in app.markdown)


def test_cell_numbers_only_where_cells_are_large_enough():
    small = plots.heatmap(np.arange(144).reshape(12, 12), "12x12")
    large = plots.heatmap(np.zeros((30, 30)), "30x30 feature map")
    assert small.data[0].text is not None
    assert large.data[0].text is None  # hover only: "row, column: value"
    assert "%{z" in large.data[0].hovertemplate


def test_colour_bars_write_numbers_out_never_as_exponents():
    figure = plots.heatmap(np.array([[0.0, 1000.0], [2000.0, 3000.0]]), "large values")
    tick_format = figure.data[0].colorbar.tickformat
    assert "e" not in tick_format and "g" not in tick_format  # d3's "g" writes 1000 as "1e+3"


def dot_product(app: AppTest) -> str:
    return app.code[0].value


def formula(app: AppTest) -> str:
    return app.code[1].value


def test_convolution_page_report_example_shows_formula_and_dot_product():
    app = run_page("learn_convolution")
    assert_ok(app)
    assert "floor((5 + 2·0 − 1·(3 − 1) − 1) / 1) + 1 = 3" in formula(app)
    assert dot_product(app) == "1×1 + 1×0 + 1×1 + 0×0 + 1×1 + 1×0 + 0×1 + 0×0 + 1×1 = 4"  # report fig. 8

    step_slider(app).set_value(5).run()
    assert_ok(app)
    app.multiselect(key="conv_presets_3").set_value(["identity", "Sobel x", "box blur"]).run()
    assert_ok(app)
    assert [tab.label for tab in app.tabs] == ["identity", "Sobel x", "box blur"]
    app.selectbox(key="conv_step_filter").set_value("Sobel x").run()
    assert dot_product(app).startswith("1×(-1) + 1×0 + 1×1")


def test_convolution_page_shows_kernel_window_and_output_cell_side_by_side():
    app = run_page("learn_convolution")
    titles = [spec(chart)["layout"]["title"]["text"] for chart in charts(app)[:3]]
    assert titles == ["Kernel (weights)", "Input: window 1", "Feature map: 4 at (0, 0)"]
    # One row of three columns, one panel each: side by side, not stacked.
    assert [["Kernel (weights)"], ["Input: window 1"], ["Feature map: 4 at (0, 0)"]] in list(rows_of_columns(app.main))
    step_slider(app).set_value(9).run()
    assert [spec(chart)["layout"]["title"]["text"] for chart in charts(app)[1:3]] == [
        "Input: window 9",
        "Feature map: 4 at (2, 2)",
    ]


def test_convolution_page_play_moves_the_slider_and_stops_at_the_last_window():
    app = run_page("learn_convolution")
    app.slider(key="conv_stride").set_value(2).run()  # 2x2 = 4 windows: a short animation
    assert app.button(key="conv_play").label == "▶ Play"
    app.button(key="conv_play").click().run()
    assert not app.exception
    assert step_slider(app).value == 2  # each tick of the playing fragment moves the slider one window
    assert app.button(key="conv_play").label == "⏸ Pause"
    app.run()
    assert step_slider(app).value == 3
    app.run()
    assert step_slider(app).value == 4  # the last window: rows 2-4, columns 2-4
    assert dot_product(app).endswith("= 4")
    assert app.button(key="conv_play").label == "▶ Play"  # stopped by itself
    app.run()
    assert step_slider(app).value == 4
    app.button(key="conv_play").click().run()  # Play at the end starts again from the first window
    assert step_slider(app).value == 1


def test_convolution_captions_use_plain_words():
    app = run_page("learn_convolution")
    app.radio(key="conv_source").set_value("A CIFAR-10 test image").run()
    app.slider(key="conv_stride").set_value(2).run()
    app.radio(key="conv_padding").set_value("same").run()
    captions = " ".join(caption.value for caption in app.caption)
    assert "((" not in captions  # was "with padding ((0, 1), (0, 1))"
    assert "zeros added: 1 row at the bottom, 1 column on the right" in captions
    app.radio(key="conv_kernel_mode").set_value("Edit my own").run()
    captions = " ".join(caption.value for caption in app.caption)
    assert "kernel kernel" not in captions  # was "the my kernel kernel"
    assert "weights of your kernel" in captions and "feature map of your kernel" in captions


def test_convolution_page_controls_on_a_cifar_image():
    app = run_page("learn_convolution")
    app.radio(key="conv_source").set_value("A CIFAR-10 test image").run()
    app.slider(key="conv_stride").set_value(2).run()
    app.radio(key="conv_padding").set_value("same").run()
    assert_ok(app)
    assert "floor((32 + (0 + 1) − 1·(3 − 1) − 1) / 2) + 1 = 16" in formula(app)
    assert "sum of channels" in dot_product(app)  # RGB: per-channel products, then summed
    # On a 32x32 picture the window panel zooms in on the window (3x3 and 3 pixels around it, cut at the
    # edge: window 1 sits in the top-left corner), and the whole input follows the dot product.
    figures = {spec(chart)["layout"]["title"]["text"]: spec(chart) for chart in charts(app)}
    zoomed = figures["Input around window 1"]["layout"]
    assert zoomed["xaxis"]["range"] == [-0.5, 5.5] and zoomed["yaxis"]["range"] == [5.5, -0.5]
    assert "The whole input" in figures
    output_cell = next(figure for title, figure in figures.items() if title.startswith("Feature map: "))
    assert output_cell["layout"]["xaxis"]["range"] == [-0.5, 3.5]  # cell (0, 0) and 3 cells to its right
    assert cell_texts(output_cell)[0][0] == dot_product(app).rsplit("= ", 1)[1]  # its number, written in
    app.radio(key="conv_padding").set_value("custom p").run()
    app.number_input(key="conv_padding_p").set_value(3).run()
    app.slider(key="conv_dilation").set_value(2).run()
    app.select_slider(key="conv_kernel_size").set_value(5).run()
    assert_ok(app)
    assert step_slider(app).max == 15 * 15  # floor((32 + 6 - 9) / 2) + 1 = 15 per side
    step_slider(app).set_value(40).run()
    assert_ok(app)


def test_convolution_page_invalid_combination_shows_an_error_not_a_crash():
    app = run_page("learn_convolution")
    app.select_slider(key="conv_kernel_size").set_value(7).run()  # 7x7 on the 5x5 example, no padding
    assert not app.exception
    assert "does not fit" in app.error[0].value


def test_convolution_page_editable_kernel_mode():
    app = run_page("learn_convolution")
    app.radio(key="conv_kernel_mode").set_value("Edit my own").run()
    app.selectbox(key="conv_grid_start_3").set_value("sharpen").run()
    assert_ok(app)
    assert "feature map" in " ".join(caption.value for caption in app.caption).lower()


def test_relu_page_before_after_and_curve():
    app = run_page("learn_relu")
    assert_ok(app)
    assert len(charts(app)) == 3
    app.selectbox(key="relu_kernel").set_value("Sobel y").run()
    app.radio(key="relu_source").set_value("A CIFAR-10 test image").run()
    assert_ok(app)
    assert any("values are negative" in markdown.value for markdown in app.markdown)


def test_pooling_page_size_stride_and_window():
    app = run_page("learn_pooling")
    assert_ok(app)
    # Pooling has no padding or dilation, and its formula box says so by leaving them out.
    assert app.code[0].value == "rows:    floor((4 − 2) / 2) + 1 = 2\ncolumns: floor((4 − 2) / 2) + 1 = 2"
    step_slider(app).set_value(2).run()
    assert "max(2, 4, 7, 8) = 8" in app.code[1].value
    app.slider(key="pool_size").set_value(3).run()
    app.slider(key="pool_stride").set_value(1).run()
    assert_ok(app)
    assert not any("Point at a cell" in caption.value for caption in app.caption)  # 4x4: numbers written in
    app.radio(key="pool_source").set_value(app.radio(key="pool_source").options[1]).run()
    assert_ok(app)
    assert len(charts(app)) == 3
    # A 30x30 feature map: its numbers would overlap, so they are on hover, and the captions say so.
    assert cell_texts(spec(charts(app)[0])) is None
    assert any("Point at a cell" in caption.value for caption in app.caption)


def test_dense_softmax_page_shapes_and_weight_count():
    app = run_page("learn_dense_softmax")
    assert_ok(app)
    assert [metric.value for metric in app.metric] == ["120,000", "27"]
    app.slider(key="dense_filters").set_value(8).run()
    app.number_input(key="dense_seed").set_value(3).run()
    app.number_input(key="dense_filter_size").set_value(5).run()
    assert_ok(app)
    assert app.metric[1].value == "75"
    shapes = list(app.dataframe[0].value["output shape"])
    assert shapes == ["32 x 32 x 3", "32 x 32 x 8", "32 x 32 x 8", "16 x 16 x 8", "2048", "10", "10"]


def test_uploads_are_decoded_and_shrunk_to_fit_256():
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.new("RGB", (600, 300), (10, 200, 30)).save(buffer, format="PNG")
    app = run_page("learn_convolution")
    app.radio(key="conv_source").set_value(image_widgets.UPLOAD).run()
    app.file_uploader(key="conv_upload").set_value(("wide.png", buffer.getvalue(), "image/png")).run()
    assert_ok(app)
    assert any("600x300 image was shrunk to 256x128" in caption.value for caption in app.caption)
    app.file_uploader(key="conv_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    assert not app.exception
    assert [error.value for error in app.error] == [MESSAGE_UNSUPPORTED]


def test_reruns_neither_decode_nor_shrink_the_upload_again(monkeypatch):
    """Every widget change reruns the page: the upload is decoded (taking one of the server's shared decode
    slots) and shrunk once, not once per rerun; a bad upload's message is remembered too."""
    import io

    from PIL import Image

    decoded, shrunk = [], []
    real_decode, real_fit = image_widgets.decode_image, image_widgets.fit_within
    monkeypatch.setattr(image_widgets, "decode_image", lambda data: decoded.append(len(data)) or real_decode(data))
    monkeypatch.setattr(image_widgets, "fit_within", lambda *args: shrunk.append(args[1]) or real_fit(*args))
    buffer = io.BytesIO()
    Image.new("RGB", (600, 300), (10, 200, 30)).save(buffer, format="PNG")
    app = run_page("learn_convolution")
    app.radio(key="conv_source").set_value(image_widgets.UPLOAD).run()
    app.file_uploader(key="conv_upload").set_value(("wide.png", buffer.getvalue(), "image/png")).run()
    assert (len(decoded), len(shrunk)) == (1, 1)
    app.slider(key="conv_stride").set_value(2).run()
    step_slider(app).set_value(3).run()
    app.run()
    assert_ok(app)
    assert (len(decoded), len(shrunk)) == (1, 1)
    assert any("600x300 image was shrunk to 256x128" in caption.value for caption in app.caption)
    app.file_uploader(key="conv_upload").set_value(("bad.png", b"not an image", "image/png")).run()
    app.slider(key="conv_stride").set_value(1).run()
    app.run()
    assert not app.exception
    assert [error.value for error in app.error] == [MESSAGE_UNSUPPORTED] and len(decoded) == 2
    (kept,) = app.session_state["conv_decoded"].values()  # the replaced upload is forgotten
    assert len(traceback.extract_tb(kept.__traceback__)) <= 2, "each rerun's raise lengthened the kept error"
    app.radio(key="conv_source").set_value(image_widgets.SAMPLE).run()  # the uploader goes, with its file
    assert app.session_state["conv_decoded"] == {}
    app.radio(key="conv_source").set_value(image_widgets.UPLOAD).run()
    assert app.file_uploader(key="conv_upload").value is None and len(decoded) == 2


@pytest.mark.browser
@pytest.mark.skipif(not browser_support.CHROMIUM.exists(), reason="chromium is missing")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="playwright is not installed")
def test_play_moves_the_window_slider_in_a_browser(shipped_models_server, page):
    """Play's timer (a fragment with run_every) really moves the slider; AppTest has no timer."""
    browser_support.open_path(page, shipped_models_server, "learn_convolution")
    slider = page.get_by_role("slider", name="Window position (reading order)")
    assert slider.get_attribute("aria-valuetext") == "1"
    page.get_by_role("button", name="▶ Play").click()
    seen = set()
    deadline = time.monotonic() + 90  # 9 windows, 0.8 s each, on a busy machine
    while time.monotonic() < deadline and "9" not in seen:
        seen.add(page.get_by_role("slider", name="Window position (reading order)").get_attribute("aria-valuetext"))
        page.wait_for_timeout(200)
    assert "9" in seen and len(seen) >= 4, seen  # it passed through the windows, not jumped
    page.get_by_role("button", name="▶ Play").wait_for()  # stopped by itself at the last window
    assert page.get_by_text("Window 9 of 9:").is_visible()
