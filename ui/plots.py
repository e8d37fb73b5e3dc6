"""Plotly figures for the Learn pages: value grids, images, the ReLU curve, probabilities.

Every figure uses a colour-blind-safe scale (Cividis by default), labels its
axes, writes the numbers in the cells when the grid is small enough to read,
and marks windows with drawn outlines and symbols, never with colour alone.
No TensorFlow here: the Learn pages must open fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from cnn import ops

COLOR_SCALE = "Cividis"
# Grids up to this many rows/columns get their values written in the cells.
MAX_TEXT_SIDE = 32
# Okabe-Ito blue, distinct from every Cividis colour, for lines and bars.
LINE_COLOR = "#0072B2"


@dataclass(frozen=True)
class Box:
    """A rectangle of grid cells to outline: rows top..bottom, columns left..right (inclusive)."""

    top: int
    left: int
    bottom: int
    right: int


@dataclass(frozen=True)
class Marks:
    """Cells to mark with a symbol, each with a hover/label text."""

    rows: Sequence[int]
    cols: Sequence[int]
    labels: Sequence[str] = ()


def format_value(value: float) -> str:
    """Short cell text: integers without decimals, others to 3 significant digits."""
    value = float(value)
    return str(int(value)) if value.is_integer() else f"{value:.3g}"


def _cell_texts(values: np.ndarray) -> list[list[str]]:
    return [[format_value(value) for value in row] for row in values]


def _outline(figure: go.Figure, box: Box) -> None:
    """Outline `box` twice (thick black under dashed white) so it shows on any colour."""
    corners = dict(x0=box.left - 0.5, x1=box.right + 0.5, y0=box.top - 0.5, y1=box.bottom + 0.5)
    figure.add_shape(type="rect", line=dict(color="black", width=5), **corners)
    figure.add_shape(type="rect", line=dict(color="white", width=2, dash="dash"), **corners)


def _mark(figure: go.Figure, marks: Marks, name: str) -> None:
    """Draw an outlined cross on each marked cell, with its label on hover."""
    figure.add_trace(
        go.Scatter(
            x=list(marks.cols),
            y=list(marks.rows),
            mode="markers",
            name=name,
            text=list(marks.labels) or None,
            hoverinfo="text" if marks.labels else "x+y",
            marker=dict(symbol="x-thin-open", size=14, color="white", line=dict(color="white", width=3)),
            showlegend=True,
        )
    )


def _grid_layout(figure: go.Figure, title: str, rows: int, cols: int) -> go.Figure:
    """Square cells, row 0 at the top, labelled axes and a size that fits the grid."""
    figure.update_layout(
        title=title,
        height=int(min(560, max(260, 90 + 22 * rows))),
        margin=dict(l=50, r=20, t=50, b=40),
        legend=dict(orientation="h", yanchor="bottom", y=-0.25),
    )
    figure.update_xaxes(title_text="column", dtick=1 if cols <= 16 else None, constrain="domain")
    figure.update_yaxes(title_text="row", dtick=1 if rows <= 16 else None,
                        autorange="reversed", scaleanchor="x", constrain="domain")
    return figure


def heatmap(
    values,
    title: str,
    *,
    colorbar_title: str = "value",
    highlight: Box | None = None,
    marks: Marks | None = None,
    marks_name: str = "chosen",
    show_values: bool | None = None,
    zmin: float | None = None,
    zmax: float | None = None,
) -> go.Figure:
    """A grid of numbers as a heatmap, values written in the cells when small.

    Args:
        values: 2-D array (a 1-D vector is drawn as one column).
        title: figure title.
        colorbar_title: what the colour encodes.
        highlight: cells to outline, e.g. the kernel's current window.
        marks: cells to mark with a cross, e.g. the maxima chosen by pooling.
        marks_name: legend entry of the marks.
        show_values: write values in cells; default when at most 32x32.
        zmin, zmax: fixed colour range (default: the data's range).
    """
    grid = np.asarray(values, dtype=float)
    if grid.ndim == 1:
        grid = grid[:, np.newaxis]
    rows, cols = grid.shape
    if show_values is None:
        show_values = max(rows, cols) <= MAX_TEXT_SIDE
    text_settings = (
        dict(text=_cell_texts(grid), texttemplate="%{text}",
             textfont=dict(size=max(7, min(14, 300 // max(rows, cols)))))
        if show_values
        else {}
    )
    figure = go.Figure(
        go.Heatmap(
            z=grid,
            colorscale=COLOR_SCALE,
            zmin=zmin,
            zmax=zmax,
            colorbar=dict(title=colorbar_title),
            hovertemplate="row %{y}, column %{x}: %{z}<extra></extra>",
            **text_settings,
        )
    )
    if highlight is not None:
        _outline(figure, highlight)
    if marks is not None:
        _mark(figure, marks, marks_name)
    return _grid_layout(figure, title, rows, cols)


def rgb_image(image, title: str, *, highlight: Box | None = None, marks: Marks | None = None) -> go.Figure:
    """An RGB uint8 image (zoomable), optionally with an outlined window and marked pixels."""
    pixels = np.asarray(image)
    figure = go.Figure(go.Image(z=pixels, hovertemplate="row %{y}, column %{x}: RGB %{z}<extra></extra>"))
    if highlight is not None:
        _outline(figure, highlight)
    if marks is not None:
        _mark(figure, marks, "kernel taps")
    return _grid_layout(figure, title, pixels.shape[0], pixels.shape[1])


def box_around(rows: Sequence[int], cols: Sequence[int]) -> Box:
    """The smallest Box holding all these rows and columns."""
    return Box(top=min(rows), left=min(cols), bottom=max(rows), right=max(cols))


def window_marks(rows: Sequence[int], cols: Sequence[int]) -> Marks:
    """Marks on every cell a (possibly dilated) kernel reads: each row paired with each column."""
    grid_rows, grid_cols = np.meshgrid(rows, cols, indexing="ij")
    return Marks(rows=grid_rows.ravel().tolist(), cols=grid_cols.ravel().tolist())


def negative_marks(values) -> Marks:
    """Marks on every negative cell of a 2-D grid, labelled with the value ReLU removes."""
    grid = np.asarray(values, dtype=float)
    rows, cols = np.nonzero(grid < 0)
    return Marks(rows=rows.tolist(), cols=cols.tolist(),
                 labels=[f"was {format_value(grid[r, c])}, now 0" for r, c in zip(rows, cols)])


def maxima_marks(result: ops.PoolResult) -> Marks:
    """Marks on the element each max-pooling window chose (2-D pooling result)."""
    return Marks(
        rows=np.ravel(result.rows).tolist(),
        cols=np.ravel(result.cols).tolist(),
        labels=[f"max {format_value(value)}" for value in np.ravel(result.values)],
    )


def input_figure(image, title: str, *, highlight: Box | None = None, marks: Marks | None = None) -> go.Figure:
    """A 2-D grid as a value heatmap, an RGB image as a picture; same outline and marks."""
    if np.ndim(image) == 2:
        return heatmap(image, title, colorbar_title="pixel", highlight=highlight, marks=marks,
                       marks_name="kernel taps")
    return rgb_image(image, title, highlight=highlight, marks=marks)


def relu_curve(x_limit: float = 5.0) -> go.Figure:
    """The ReLU function max(0, x) drawn from -x_limit to x_limit."""
    inputs = np.linspace(-x_limit, x_limit, 201)
    figure = go.Figure(
        go.Scatter(x=inputs, y=ops.relu(inputs), mode="lines", name="ReLU(x) = max(0, x)",
                   line=dict(color=LINE_COLOR, width=3))
    )
    figure.update_layout(title="ReLU(x) = max(0, x)", height=320, margin=dict(l=50, r=20, t=50, b=40))
    figure.update_xaxes(title_text="input x", zeroline=True)
    figure.update_yaxes(title_text="output ReLU(x)", zeroline=True)
    return figure


def probability_bars(probabilities, class_names: Sequence[str], title: str) -> go.Figure:
    """Horizontal bars of class probabilities, each labelled with its percentage."""
    values = np.asarray(probabilities, dtype=float)
    figure = go.Figure(
        go.Bar(
            x=values,
            y=list(class_names),
            orientation="h",
            text=[f"{value:.1%}" for value in values],
            textposition="outside",
            marker=dict(color=LINE_COLOR),
        )
    )
    figure.update_layout(title=title, height=360, margin=dict(l=90, r=40, t=50, b=40))
    figure.update_xaxes(title_text="probability", range=[0, min(1.0, float(values.max()) * 1.25 + 0.05)])
    figure.update_yaxes(title_text="class", autorange="reversed")
    return figure
