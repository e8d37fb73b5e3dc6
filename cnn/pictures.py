"""Arrays made into pictures to show: square-pixel enlargement, mosaics, a viridis heatmap over an image.

The one home of the image helpers that the pages draw with (Data, Evaluate,
Inspect, Predict, Learn). Pure numpy and Pillow: no TensorFlow, no Streamlit.
Arrays are channels-last, like everything else in `cnn`.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from cnn import IMAGE_SIZE


def fit_within(image: Image.Image, max_side: int) -> tuple[Image.Image, bool]:
    """`image` shrunk (keeping its shape) to fit max_side x max_side, and whether it shrank."""
    if max(image.size) <= max_side:
        return image, False
    smaller = image.copy()
    smaller.thumbnail((max_side, max_side))
    return smaller, True


def enlarge(images: np.ndarray, factor: int) -> np.ndarray:
    """Images drawn `factor` times larger with square pixels (no blur), so every pixel stays visible.

    Works on one image (H, W, C) or a batch (N, H, W, C): each pixel becomes a
    factor x factor block.
    """
    if factor < 1:
        raise ValueError(f"The enlargement factor must be at least 1, not {factor}.")
    images = np.asarray(images)
    return np.repeat(np.repeat(images, factor, axis=-3), factor, axis=-2)


def unit_to_uint8(images: np.ndarray) -> np.ndarray:
    """Values in [0, 1] as uint8 pixels 0-255 (rounded; values outside are clipped)."""
    return np.round(np.clip(np.asarray(images, dtype=np.float32), 0, 1) * 255).astype(np.uint8)


# ---------------------------------------------------------------- mosaics


def grid_rows(count: int, columns: int) -> list[np.ndarray]:
    """Indices 0..count-1 in rows of `columns`, left to right then top to bottom (the last row may be short)."""
    if columns < 1:
        raise ValueError(f"A mosaic needs at least one column, not {columns}.")
    return [np.arange(start, min(start + columns, count)) for start in range(0, count, columns)]


def mosaic(images: np.ndarray, rows: list[np.ndarray], gap: int = 2, fill=255) -> np.ndarray:
    """Tile images into one picture: row r holds `images[rows[r]]`, left to right.

    Args:
        images: (N, H, W) or (N, H, W, C), any dtype; the mosaic keeps it.
        rows: index arrays, one per row of the mosaic (e.g. `grid_rows(N, 8)`).
        gap: pixels of `fill` between tiles; short rows are padded with it too.
        fill: the background, e.g. 255 (white) for uint8 pictures, NaN for float maps.

    Returns:
        An array (rows * (H + gap) - gap, columns * (W + gap) - gap, ...) of `images`' dtype.
    """
    images = np.asarray(images)
    height, width = images.shape[1:3]
    columns = max((len(row) for row in rows), default=0)
    if columns == 0:
        raise ValueError("A mosaic needs at least one image.")
    canvas = np.full(
        (len(rows) * (height + gap) - gap, columns * (width + gap) - gap, *images.shape[3:]), fill, dtype=images.dtype
    )
    for row_number, row in enumerate(rows):
        for column_number, index in enumerate(row):
            top, left = row_number * (height + gap), column_number * (width + gap)
            canvas[top : top + height, left : left + width] = images[index]
    return canvas


def tile_positions(count: int, height: int, width: int, columns: int = 8, gap: int = 1) -> list[tuple[int, int]]:
    """(top, left) pixel of each tile of a `mosaic` over `grid_rows(count, columns)`, tile 0 first.

    A page writes each tile's label (e.g. its channel number) at these places.
    """
    return [
        (row * (height + gap), column * (width + gap))
        for row, column in (divmod(index, min(columns, count)) for index in range(count))
    ]


def tile_centers(count: int, size: int = IMAGE_SIZE, gap: int = 2) -> list[float]:
    """Pixel coordinates of the centres of `count` tiles along one side of a mosaic (for axis labels)."""
    return [index * (size + gap) + (size - 1) / 2 for index in range(count)]


def tile_channels(activations: np.ndarray, max_channels: int = 16, columns: int = 8, gap: int = 1) -> np.ndarray:
    """The first `max_channels` channels of an (H, W, C) array as one 2-D float mosaic, NaN between tiles.

    Tile c is `activations[:, :, c]` (channels-last), at `tile_positions`.
    """
    count = min(activations.shape[2], max_channels)
    channels_first = np.moveaxis(np.asarray(activations[:, :, :count], dtype=np.float32), 2, 0)
    return mosaic(channels_first, grid_rows(count, min(columns, count)), gap=gap, fill=np.nan)


# ---------------------------------------------------------------- a heatmap in colour, over a picture

# Anchors of matplotlib's viridis (colour-blind-safe, readable in grey).
_VIRIDIS = np.array(
    [
        [68, 1, 84],
        [72, 40, 120],
        [62, 74, 137],
        [49, 104, 142],
        [38, 130, 142],
        [31, 158, 137],
        [53, 183, 121],
        [109, 205, 89],
        [180, 222, 44],
        [253, 231, 37],
    ],
    dtype=np.float32,
)


def viridis(values: np.ndarray) -> np.ndarray:
    """Map values in [0, 1] to viridis RGB uint8 (shape + (3,))."""
    positions = np.clip(np.asarray(values, dtype=np.float32), 0, 1) * (len(_VIRIDIS) - 1)
    anchors = np.arange(len(_VIRIDIS))
    channels = [np.interp(positions, anchors, _VIRIDIS[:, channel]) for channel in range(3)]
    return np.round(np.stack(channels, axis=-1)).astype(np.uint8)


def overlay(image_uint8: np.ndarray, heatmap: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """The heatmap in viridis blended over the image (same height and width), as RGB uint8."""
    image = np.asarray(image_uint8, dtype=np.float32)
    if image.shape[:2] != heatmap.shape:
        raise ValueError(f"The image {image.shape[:2]} and the heatmap {heatmap.shape} differ in size.")
    blended = (1 - alpha) * image + alpha * viridis(heatmap).astype(np.float32)
    return np.round(blended).astype(np.uint8)
