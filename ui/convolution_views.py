"""The Convolution page's step-through: kernel, current window and output cell side by side, with Play.

Play is a Streamlit fragment that reruns itself every PLAY_DELAY_S seconds
while playing (`st.fragment(run_every=...)`, as in Streamlit's "start and stop
a streaming fragment" tutorial): each tick moves the window slider one step,
so the slider, the pictures and the written-out dot product stay in step, and
the rest of the page is not redrawn. No TensorFlow here.
"""

from __future__ import annotations

import numpy as np
import streamlit as st

from cnn import ops
from ui import plots
from ui.learn_widgets import kernel_phrase

PLAY_DELAY_S = 0.8  # seconds per window while playing: time to read the new dot product
PLAYING = "conv_playing"  # session-state flag: the step-through advances by itself
PANEL_HEIGHT = 340  # pixels: the three panels fit side by side above the fold at 1440x900
ZOOM_MARGIN = 3  # cells shown around the window when the input is too large to see the window in it


def step_key(window_count: int) -> str:
    """The window slider's key; it carries the window count, so the slider restarts when the count changes."""
    return f"conv_step_{window_count}"


def is_playing() -> bool:
    return bool(st.session_state.get(PLAYING, False))


def _toggle_play(window_count: int) -> None:
    """Play or pause; Play at the last window starts again from the first."""
    playing = not is_playing()
    st.session_state[PLAYING] = playing
    key = step_key(window_count)
    if playing and st.session_state.get(key, 1) >= window_count:
        st.session_state[key] = 0  # the first tick moves it to window 1


def play_button(window_count: int) -> None:
    """▶ Play / ⏸ Pause. Outside the fragment on purpose: its click reruns the whole page, which
    redefines the fragment with or without its timer."""
    label = "⏸ Pause" if is_playing() else "▶ Play"
    st.button(
        label,
        key="conv_play",
        on_click=_toggle_play,
        args=(window_count,),
        help=f"Move the window one step every {PLAY_DELAY_S:g} s, to the last window.",
    )


def _advance_while_playing(window_count: int) -> None:
    """One tick of Play: the next window; at the last one Play stops (a full rerun drops the timer)."""
    key = step_key(window_count)
    if not is_playing() or key not in st.session_state:
        return
    st.session_state[key] = min(st.session_state[key] + 1, window_count)
    if st.session_state[key] >= window_count:
        st.session_state[PLAYING] = False


def step_through(
    image: np.ndarray,
    description: str,
    kernel_name: str,
    kernel: np.ndarray,
    spec: ops.ConvSpec,
    feature_map: np.ndarray,
) -> None:
    """The window slider and the three panels, as a fragment that ticks while Play is on."""
    run_every = PLAY_DELAY_S if is_playing() else None
    st.fragment(_step_through, run_every=run_every)(image, description, kernel_name, kernel, spec, feature_map)


def _input_with_window(padded: np.ndarray, title: str, breakdown: ops.WindowBreakdown, spec: ops.ConvSpec):
    """The padded input with the window outlined (and its taps crossed when dilated)."""
    return plots.input_figure(
        padded,
        title,
        highlight=plots.box_around(breakdown.rows, breakdown.cols),
        marks=plots.window_marks(breakdown.rows, breakdown.cols) if spec.dilation > 1 else None,
        height=PANEL_HEIGHT,
        colorbar_below=True,
    )


def _step_through(image, description, kernel_name, kernel, spec, feature_map) -> None:
    window_count = feature_map.size
    was_playing = is_playing()
    _advance_while_playing(window_count)
    # No `value`: the slider's value lives in session state, which Play moves.
    step = st.slider("Window position (reading order)", 1, window_count, key=step_key(window_count))
    breakdown = ops.window_breakdown(image, kernel, spec, step - 1)
    total = ops.format_number(breakdown.total)
    st.markdown(
        f"**Window {step} of {window_count}:** each weight of {kernel_phrase(kernel_name)} times the "
        f"pixel under it, all added up, gives **{total}**: the feature map's value at row "
        f"{breakdown.out_row}, column {breakdown.out_col}."
    )
    kernel_view, window_view, output_view = st.columns(3)
    with kernel_view:
        st.plotly_chart(
            plots.heatmap(kernel, "Kernel (weights)", colorbar_title="weight", show_scale=False, height=PANEL_HEIGHT),
            key="conv_step_kernel",
        )
        size = len(kernel)
        st.caption(
            f"The {size}x{size} weights of {kernel_phrase(kernel_name)}"
            + (", the same for the red, green and blue channels." if image.ndim == 3 else ".")
        )
    padded = ops.pad(image, breakdown.padding)
    window = plots.box_around(breakdown.rows, breakdown.cols)
    large_input = max(padded.shape[:2]) > plots.MAX_TEXT_SIDE
    with window_view:
        figure = _input_with_window(padded, f"Input{' around' if large_input else ':'} window {step}", breakdown, spec)
        if large_input:  # a 3x3 window on a 32x32 picture is a few pixels wide on a projector: zoom in on it
            plots.zoom_around(figure, window, padded.shape, ZOOM_MARGIN)
        st.plotly_chart(figure, key="conv_step_input")
        st.caption(
            f"{description[0].upper()}{description[1:]}, {ops.padding_in_words(breakdown.padding)}; the "
            "outlined square is the kernel's current window (crosses mark the taps when dilated)"
            + (
                f", with {ZOOM_MARGIN} pixels around it; the whole input is under the dot product."
                if large_input
                else "."
            )
        )
    with output_view:
        large_map = max(feature_map.shape) > plots.MAX_TEXT_SIDE
        title = f"Feature map: {total} at ({breakdown.out_row}, {breakdown.out_col})"
        if large_map:  # one cell of a 30x30 map is as small as the window: the cells around it, numbers written in
            figure = plots.neighbourhood_heatmap(
                feature_map,
                breakdown.out_row,
                breakdown.out_col,
                ZOOM_MARGIN,
                title,
                height=PANEL_HEIGHT,
                zmin=float(feature_map.min()),
                zmax=float(feature_map.max()),
                show_scale=False,
            )
        else:
            cell = plots.Box(breakdown.out_row, breakdown.out_col, breakdown.out_row, breakdown.out_col)
            figure = plots.heatmap(feature_map, title, highlight=cell, height=PANEL_HEIGHT, show_scale=False)
        st.plotly_chart(figure, key="conv_step_map")
        st.caption(
            f"The feature map of {kernel_phrase(kernel_name)}; the outlined cell at row {breakdown.out_row}, "
            f"column {breakdown.out_col} is this window's {total}"
            + (
                f", with the cells up to {ZOOM_MARGIN} away; the whole map is under All feature maps."
                if large_map
                else "."
            )
        )
    st.markdown("**The dot product, written out** (pixel × weight):")
    st.code("\n".join(ops.dot_product_lines(breakdown)), language=None, wrap_lines=True)
    if large_input:
        whole, _ = st.columns([1, 2])
        whole.plotly_chart(_input_with_window(padded, "The whole input", breakdown, spec), key="conv_step_whole")
        whole.caption(f"Where window {step} lies in the whole input.")
    if was_playing and not is_playing():
        st.rerun()  # Play reached the last window: redraw the page so the timer stops and Play shows again
