"""Plotly figures for the Learn pages: value grids, images, the ReLU curve, probabilities.

Every figure uses a colour-blind-safe scale (Cividis by default), labels its
axes, writes the numbers in the cells only when the cells are large enough to
read them on a projector (otherwise a cell's number is on hover, and
`neighbourhood_heatmap` zooms into a few cells with their numbers), and marks
windows with drawn outlines and symbols, never with colour alone. Numbers are
written out in full ("1000", never "1e+3").
Marks never cover a cell's number: crosses sit in the cell's top-left corner,
outlines run along the cell's border.
No TensorFlow here: the Learn pages must open fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import plotly.graph_objects as go

from cnn import ops
from cnn.ops import format_number

COLOR_SCALE = "Cividis"
VIRIDIS_SCALE = "Viridis"  # plotly's name of the scale `cnn.pictures.viridis` colours pictures with
# Grids up to this many rows/columns get their values written in the cells. In a half-width
# column at 1440x900 (a projector) a 12-cell grid gives cells of about 35 px, room for "-255";
# at 30 or 32 cells (a CIFAR-10 image, its feature maps) the numbers overlapped and could not be read.
MAX_TEXT_SIDE = 12
# Colour-bar ticks and hover values: up to 4 significant digits, never an exponent ("1000", not "1e+3").
TICK_FORMAT = "~r"
HOVER_FORMAT = ".4~r"
# Okabe-Ito: a qualitative palette that colour-blind readers can tell apart; series take its colours in order.
OKABE_ITO = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "bluish green": "#009E73",
    "reddish purple": "#CC79A7",
    "sky blue": "#56B4E9",
    "vermillion": "#D55E00",
    "black": "#000000",
    "yellow": "#F0E442",
}
SERIES_COLORS = tuple(OKABE_ITO.values())
# Distinct from every Cividis colour, for lines and bars.
LINE_COLOR = OKABE_ITO["blue"]


@dataclass(frozen=True)
class Box:
    """A rectangle of grid cells to outline: rows top..bottom, columns left..right (inclusive)."""

    top: int
    left: int
    bottom: int
    right: int


@dataclass(frozen=True)
class Marks:
    """Cells to mark, each with a hover/label text.

    style "cross": a small cross in the cell's top-left corner; "outline": a
    solid border around the cell. Both are black edged in white, so they show
    on dark and light cells alike, and leave the cell's number readable.
    """

    rows: Sequence[int]
    cols: Sequence[int]
    labels: Sequence[str] = ()
    style: str = "cross"


def reading_hint(values) -> str:
    """A caption's last sentence for a grid too large for written numbers ("" when they are written)."""
    return "" if max(np.shape(values)[:2]) <= MAX_TEXT_SIDE else " Point at a cell to read its number."


def _cell_texts(values: np.ndarray) -> list[list[str]]:
    return [[format_number(value) for value in row] for row in values]


def _outline(figure: go.Figure, box: Box) -> None:
    """Outline `box` twice (thick black under dashed white) so it shows on any colour."""
    corners = dict(x0=box.left - 0.5, x1=box.right + 0.5, y0=box.top - 0.5, y1=box.bottom + 0.5)
    figure.add_shape(type="rect", line=dict(color="black", width=5), **corners)
    figure.add_shape(type="rect", line=dict(color="white", width=2, dash="dash"), **corners)


# Beyond this many cells, outlines would hide the picture (and slow plotly): corner crosses instead.
MAX_OUTLINED_CELLS = 64
# Where a corner cross sits, in cells from the cell's centre (up and left).
CORNER_OFFSET = 0.3


def _mark(figure: go.Figure, marks: Marks, name: str) -> None:
    """Mark each cell (corner cross or solid border) in black edged in white, its label on hover.

    The legend entry shows the same symbol (a cross, or an open square for
    outlined cells), so it reads on a white page too.
    """
    rows, cols = list(marks.rows), list(marks.cols)
    if marks.style == "outline" and len(rows) <= MAX_OUTLINED_CELLS:
        shapes = []
        for row, col in zip(rows, cols):
            # Inset a little so neighbouring outlines and the window outline stay apart.
            corners = dict(x0=col - 0.44, x1=col + 0.44, y0=row - 0.44, y1=row + 0.44)
            shapes.append(dict(type="rect", line=dict(color="black", width=4), **corners))
            shapes.append(dict(type="rect", line=dict(color="white", width=1.5), **corners))
        # One layout update: add_shape per cell copies every shape so far (quadratic time).
        figure.update_layout(shapes=list(figure.layout.shapes) + shapes)
        # The shapes do the drawing; invisible points carry the hover text, and an
        # empty trace gives the legend an open black square like the outlines.
        figure.add_trace(
            go.Scatter(
                x=cols,
                y=rows,
                mode="markers",
                marker=dict(size=20, opacity=0),
                text=list(marks.labels) or None,
                hoverinfo="text" if marks.labels else "x+y",
                showlegend=False,
            )
        )
        figure.add_trace(
            go.Scatter(
                x=[None],
                y=[None],
                mode="markers",
                name=name,
                showlegend=True,
                marker=dict(symbol="square-open", size=14, color="black", line=dict(width=3)),
            )
        )
        return
    figure.add_trace(
        go.Scatter(
            x=[col - CORNER_OFFSET for col in cols],
            y=[row - CORNER_OFFSET for row in rows],
            mode="markers",
            name=name,
            text=list(marks.labels) or None,
            hoverinfo="text" if marks.labels else "skip",
            marker=dict(symbol="x", size=9, color="white", line=dict(color="black", width=1.5)),
            showlegend=True,
        )
    )


def _grid_layout(figure: go.Figure, title: str, rows: int, cols: int, origin: tuple[int, int] = (0, 0)) -> go.Figure:
    """Square cells, row 0 at the top, labelled axes and a size that fits the grid.

    The axis ranges are pinned to the grid's edges: markers and shapes must not
    stretch one axis, or `scaleanchor` could no longer keep the cells square.
    `origin` is the (row, column) of the top-left cell, for a piece of a larger grid.
    """
    top, left = origin
    figure.update_layout(
        title=dict(text=title, x=0, xanchor="left"),
        height=int(min(560, max(300, 110 + 22 * rows))),
        margin=dict(l=50, r=20, t=60, b=40),
        legend=dict(orientation="h", x=1, xanchor="right", y=1.0, yanchor="bottom", bgcolor="rgba(255,255,255,0.8)"),
    )
    figure.update_xaxes(
        title_text="column",
        dtick=1 if cols <= 16 else None,
        constrain="domain",
        range=[left - 0.5, left + cols - 0.5],
        autorange=False,
        showgrid=False,
        zeroline=False,
    )
    figure.update_yaxes(
        title_text="row",
        dtick=1 if rows <= 16 else None,
        range=[top + rows - 0.5, top - 0.5],
        autorange=False,
        scaleanchor="x",
        constrain="domain",
        showgrid=False,
        zeroline=False,
    )
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
    color_scale: str = COLOR_SCALE,
    colorbar_below: bool = False,
    show_scale: bool = True,
    height: int | None = None,
    origin: tuple[int, int] = (0, 0),
) -> go.Figure:
    """A grid of numbers as a heatmap, values written in the cells when the cells are large.

    Args:
        values: 2-D array (a 1-D vector is drawn as one column).
        title: figure title.
        colorbar_title: what the colour encodes.
        highlight: cells to outline, e.g. the kernel's current window.
        marks: cells to mark, e.g. the maxima chosen by pooling (see `Marks`).
        marks_name: legend entry of the marks.
        show_values: write values in cells; default when at most MAX_TEXT_SIDE
            cells across and down (larger grids: hover a cell to read it).
        zmin, zmax: fixed colour range (default: the data's range).
        color_scale: a colour-blind-safe plotly scale, e.g. VIRIDIS_SCALE to match
            an image coloured with `cnn.pictures.viridis`.
        show_scale: draw the colour bar; a small panel whose numbers are
            written in can leave it out and give the grid its room.
        colorbar_below: a horizontal colour bar under the grid, for narrow
            columns: the grid then gets the column's whole width.
        height: figure height in pixels (default: from the number of rows).
        origin: (row, column) of the top-left cell when `values` is a piece of
            a larger grid: the axes then count as in the larger grid.
    """
    grid = np.asarray(values, dtype=float)
    if grid.ndim == 1:
        grid = grid[:, np.newaxis]
    rows, cols = grid.shape
    if show_values is None:
        show_values = max(rows, cols) <= MAX_TEXT_SIDE
    text_settings = (
        dict(text=_cell_texts(grid), texttemplate="%{text}", textfont=dict(size=14 if max(rows, cols) <= 8 else 12))
        if show_values
        else {}
    )
    top, left = origin
    figure = go.Figure(
        go.Heatmap(
            z=grid,
            x=np.arange(left, left + cols),
            y=np.arange(top, top + rows),
            colorscale=color_scale,
            zmin=zmin,
            zmax=zmax,
            colorbar=_colorbar(colorbar_title, below=colorbar_below),
            showscale=show_scale,
            hovertemplate=f"row %{{y}}, column %{{x}}: %{{z:{HOVER_FORMAT}}}<extra></extra>",
            **text_settings,
        )
    )
    if highlight is not None:
        _outline(figure, highlight)
    if marks is not None:
        _mark(figure, marks, marks_name)
    _grid_layout(figure, title, rows, cols, origin)
    if height is not None:
        figure.update_layout(height=height)
    if colorbar_below and show_scale:
        _colorbar_under_grid(figure)
    return figure


def neighbourhood_heatmap(values, row: int, col: int, radius: int, title: str, **heatmap_options) -> go.Figure:
    """The cells within `radius` of (row, col), numbers written in, the centre outlined.

    The zoom that makes a large grid's numbers readable: the axes keep the
    large grid's row and column numbers. Cut at the grid's edges.
    """
    grid = np.asarray(values)
    top, left = max(0, row - radius), max(0, col - radius)
    piece = grid[top : row + radius + 1, left : col + radius + 1]
    return heatmap(
        piece, title, highlight=Box(row, col, row, col), show_values=True, origin=(top, left), **heatmap_options
    )


def _colorbar(title: str, *, below: bool) -> dict:
    """A thin colour bar with short ticks in full ("1000", "0.5": no "1e+3", no "0.50000"), beside or under the grid."""
    common = dict(thickness=12, tickformat=TICK_FORMAT, nticks=5)
    if below:
        return dict(title=dict(text=title, side="top"), orientation="h", len=1, yanchor="top", **common)
    return dict(title=dict(text=title, side="right"), **common)


# Pixels from the grid's bottom edge to the top of a colour bar under it (below the x-axis title).
COLORBAR_GAP = 60


def _colorbar_under_grid(figure: go.Figure) -> None:
    """Make room under the grid and place the horizontal colour bar there, clear of the axis title.

    Plotly positions a colour bar in fractions of the plot area, so the
    pixel gap is converted with the plot area's height.
    """
    bottom = COLORBAR_GAP + 70
    height = figure.layout.height + bottom - figure.layout.margin.b
    figure.update_layout(height=height, margin=dict(l=40, r=10, b=bottom))
    plot_height = height - figure.layout.margin.t - bottom
    figure.update_traces(colorbar_y=-COLORBAR_GAP / plot_height, selector=dict(type="heatmap"))


def rgb_image(image, title: str, *, highlight: Box | None = None, marks: Marks | None = None) -> go.Figure:
    """An RGB uint8 image (zoomable), optionally with an outlined window and marked pixels."""
    pixels = np.asarray(image)
    figure = go.Figure(go.Image(z=pixels, hovertemplate="row %{y}, column %{x}: RGB %{z}<extra></extra>"))
    if highlight is not None:
        _outline(figure, highlight)
    if marks is not None:
        _mark(figure, marks, "kernel taps")
    return _grid_layout(figure, title, pixels.shape[0], pixels.shape[1])


def zoom_around(figure: go.Figure, box: Box, shape: Sequence[int], margin: int) -> go.Figure:
    """Show only `box` and `margin` cells around it (inside a grid of `shape`), e.g. a kernel's window
    on a large picture: the cells are drawn large. The rest stays in the figure (drag to pan)."""
    top, left = max(0, box.top - margin), max(0, box.left - margin)
    bottom, right = min(shape[0] - 1, box.bottom + margin), min(shape[1] - 1, box.right + margin)
    figure.update_xaxes(range=[left - 0.5, right + 0.5], dtick=1 if right - left < 16 else None)
    figure.update_yaxes(range=[bottom + 0.5, top - 0.5], dtick=1 if bottom - top < 16 else None)
    return figure


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
    return Marks(
        rows=rows.tolist(),
        cols=cols.tolist(),
        labels=[f"was {format_number(grid[r, c])}, now 0" for r, c in zip(rows, cols)],
    )


def maxima_marks(result: ops.PoolResult) -> Marks:
    """Outlines on the element each max-pooling window chose (2-D pooling result)."""
    return Marks(
        rows=np.ravel(result.rows).tolist(),
        cols=np.ravel(result.cols).tolist(),
        labels=[f"max {format_number(value)}" for value in np.ravel(result.values)],
        style="outline",
    )


def input_figure(
    image,
    title: str,
    *,
    highlight: Box | None = None,
    marks: Marks | None = None,
    colorbar_below: bool = False,
    height: int | None = None,
) -> go.Figure:
    """A 2-D grid as a value heatmap, an RGB image as a picture; same outline and marks.

    A grid whose numbers are written in gets no colour bar (the numbers say it).
    """
    if np.ndim(image) == 2:
        return heatmap(
            image,
            title,
            colorbar_title="pixel",
            highlight=highlight,
            marks=marks,
            marks_name="kernel taps",
            colorbar_below=colorbar_below,
            height=height,
            show_scale=max(np.shape(image)) > MAX_TEXT_SIDE,
        )
    figure = rgb_image(image, title, highlight=highlight, marks=marks)
    if height is not None:
        figure.update_layout(height=height)
    return figure


def relu_curve(x_limit: float = 5.0) -> go.Figure:
    """The ReLU function max(0, x) drawn from -x_limit to x_limit."""
    inputs = np.linspace(-x_limit, x_limit, 201)
    figure = go.Figure(
        go.Scatter(
            x=inputs, y=ops.relu(inputs), mode="lines", name="ReLU(x) = max(0, x)", line=dict(color=LINE_COLOR, width=3)
        )
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
