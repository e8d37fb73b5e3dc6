"""Numbers behind the Data page: class counts, random picks per class, pixel histograms, array summaries.

Pure numpy (no TensorFlow, no Streamlit), so the page stays thin and fast and
every figure it shows is computed by a tested function (its mosaics: `cnn.pictures`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn import NUM_CLASSES

CHANNEL_NAMES = ("red", "green", "blue")
PIXEL_LEVELS = 256  # uint8 pixels take the values 0..255
HISTOGRAM_CHUNK = 2_000  # images per step of the histogram (bounds its temporary memory to ~25 MB)


@dataclass(frozen=True)
class PixelHistogram:
    """Counts of each pixel value 0..255, one row per channel (or one row for all values).

    `names` labels the rows (e.g. red, green, blue); `means`/`stds` are per row,
    in raw 0-255 units.
    """

    counts: np.ndarray  # (rows, 256) int64
    names: tuple[str, ...]
    means: np.ndarray
    stds: np.ndarray

    def values(self, normalized: bool = False) -> np.ndarray:
        """The x positions of the 256 bins: 0..255, or 0..1 after dividing by 255."""
        levels = np.arange(PIXEL_LEVELS, dtype=np.float64)
        return levels / 255.0 if normalized else levels


def class_counts(labels: np.ndarray, num_classes: int = NUM_CLASSES) -> np.ndarray:
    """How many images each class has (index = label), zeros included."""
    labels = np.asarray(labels, dtype=np.int64).ravel()
    if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(f"Labels must be 0..{num_classes - 1}, found {labels.min()}..{labels.max()}.")
    return np.bincount(labels, minlength=num_classes)


def random_per_class(labels: np.ndarray, per_class: int, seed: int, num_classes: int = NUM_CLASSES) -> list[np.ndarray]:
    """For each class, up to `per_class` distinct random image indices of that class (sorted by draw).

    The same seed gives the same picks; a class with fewer images gives all it has.
    """
    if per_class < 1:
        raise ValueError(f"per_class must be at least 1, not {per_class}.")
    labels = np.asarray(labels).ravel()
    rng = np.random.default_rng(seed)
    picks = []
    for label in range(num_classes):
        members = np.flatnonzero(labels == label)
        take = min(per_class, members.size)
        picks.append(rng.choice(members, size=take, replace=False) if take else members)
    return picks


def pixel_histogram(images: np.ndarray, per_channel: bool = True) -> PixelHistogram:
    """Exact counts of every pixel value of uint8 images (N, H, W, 3).

    Args:
        images: uint8 images, channels last.
        per_channel: one row per colour channel; False pools all values into one row.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"Expected uint8 images (N, H, W, 3), not {images.dtype} {images.shape}.")
    # One bincount over (channel, value) codes, in chunks: bincount converts its input to
    # int64, and 45,000 images at once would need 1.1 GB for that.
    offsets = np.arange(3, dtype=np.int32) * PIXEL_LEVELS
    counts = np.zeros(3 * PIXEL_LEVELS, dtype=np.int64)
    for start in range(0, len(images), HISTOGRAM_CHUNK):
        codes = images[start : start + HISTOGRAM_CHUNK].reshape(-1, 3).astype(np.int32) + offsets
        counts += np.bincount(codes.ravel(), minlength=3 * PIXEL_LEVELS)
    counts = counts.reshape(3, PIXEL_LEVELS)
    names = CHANNEL_NAMES
    if not per_channel:
        counts, names = counts.sum(axis=0, keepdims=True), ("all channels",)
    levels = np.arange(PIXEL_LEVELS, dtype=np.float64)
    totals = counts.sum(axis=1)
    means = counts @ levels / totals
    stds = np.sqrt(counts @ levels**2 / totals - means**2)
    return PixelHistogram(counts=counts.astype(np.int64), names=names, means=means, stds=stds)


def array_summary(array: np.ndarray) -> dict:
    """Shape, dtype and value range of an array, as plain text-friendly values."""
    array = np.asarray(array)
    return {
        "shape": str(tuple(array.shape)),
        "dtype": str(array.dtype),
        "min": array.min().item() if array.size else None,
        "max": array.max().item() if array.size else None,
    }
