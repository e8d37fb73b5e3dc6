"""The one way into a model: `to_model_input()`, `preprocess()`, `predict_proba`, top-k, a fast single-image path.

Training, evaluation, prediction and explanation all call `preprocess()`, so a
model sees exactly the same kind of input everywhere (a test proves it); an
image of any other size becomes a 32x32 model input in `to_model_input()` only.
`Predictor` and `cnn.explain` hold the model's one `model_lock()` while they
call it; `predict_proba` (whole test sets through `model.predict`) does not,
so an evaluation never stalls the Predict page for seconds.
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from cnn import CLASS_NAMES, IMAGE_SIZE, INPUT_SHAPE, NUM_CLASSES
from cnn.errors import UserError

DEFAULT_BATCH = 512
PREDICT_BUDGET_MS = 10.0  # the Predict page preselects a model answering one image within this (p50)


def preprocess(images, *, policy: str = "squash") -> np.ndarray:
    """Turn images into the float32 (N, 32, 32, 3) tensor in [0, 1] that every model takes.

    Args:
        images: a uint8 array (N, 32, 32, 3) or (32, 32, 3), or a sequence of
            PIL images / uint8 RGB arrays of any size (resized with `policy`).
        policy: how non-32x32 images are resized: "squash" or "center_crop"
            (see `cnn.images.RESIZE_POLICIES`).

    Returns:
        float32 array, pixel values divided by 255 as in the report.
    """
    batch = _as_uint8_batch(images, policy)
    return batch.astype(np.float32) / np.float32(255.0)


def _as_uint8_batch(images, policy: str) -> np.ndarray:
    if isinstance(images, np.ndarray) and images.ndim in (3, 4) and images.shape[-3:] == INPUT_SHAPE:
        batch = images[None] if images.ndim == 3 else images
        if batch.dtype != np.uint8:
            raise UserError(f"Images must be uint8 pixels 0-255, not {batch.dtype}.")
        return batch
    if isinstance(images, np.ndarray) and images.ndim == 3:
        images = [images]
    if len(images) == 0:
        return np.zeros((0, *INPUT_SHAPE), np.uint8)
    return np.stack([to_model_input(image, policy) for image in images])


def to_model_input(image, policy: str = "squash") -> np.ndarray:
    """The 32x32 RGB uint8 image a model sees, from a PIL RGB image or an RGB uint8 array of any size.

    A 32x32 uint8 array is returned as it is; anything else is resized with
    `policy` ("squash" or "center_crop", see `cnn.images.RESIZE_POLICIES`).
    `preprocess()` makes its inputs with this function, so what a page shows
    as "the image the model sees" is exactly what the model gets.
    """
    from PIL import Image

    from cnn.images import to_model_size

    if isinstance(image, np.ndarray):
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise UserError("Each image must be an RGB uint8 array (height, width, 3).")
        if image.shape == INPUT_SHAPE:
            return image
        image = Image.fromarray(image)
    return to_model_size(image, policy=policy, size=IMAGE_SIZE)


def predict_proba(model, images, *, batch_size: int = DEFAULT_BATCH, policy: str = "squash") -> np.ndarray:
    """Class probabilities (N, 10) for a batch of images, in batches of `batch_size`."""
    inputs = preprocess(images, policy=policy)
    if len(inputs) == 0:
        return np.zeros((0, NUM_CLASSES), np.float32)
    return np.asarray(model.predict(inputs, batch_size=batch_size, verbose=0), dtype=np.float32)


@dataclass(frozen=True)
class Ranked:
    """One class of a top-k answer."""

    rank: int
    label: int
    class_name: str
    probability: float


def top_k(probabilities: np.ndarray, k: int = 3, class_names: Sequence[str] = CLASS_NAMES) -> list[Ranked]:
    """The `k` most probable classes of one probability row, best first."""
    if not 1 <= k <= len(probabilities):
        raise UserError(f"top-k needs k between 1 and {len(probabilities)}, not {k}.")
    order = np.argsort(probabilities)[::-1][:k]
    return [
        Ranked(rank, int(label), class_names[label], float(probabilities[label]))
        for rank, label in enumerate(order, start=1)
    ]


# Keras models are not thread-safe, and a cached model is shared by every session of the server.
_MODEL_LOCKS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()
_MODEL_LOCKS_GUARD = threading.Lock()


def model_lock(model) -> threading.RLock:
    """The one lock of a loaded model: whoever calls `model` (predicting or explaining it) holds it.

    Re-entrant, so a function holding it may call another that takes it too.
    The lock lives as long as the model object does.
    """
    with _MODEL_LOCKS_GUARD:
        lock = _MODEL_LOCKS.get(model)
        if lock is None:
            lock = _MODEL_LOCKS[model] = threading.RLock()
        return lock


class Predictor:
    """Fast predictions for one or a few images: a compiled call, not `model.predict`.

    `model.predict` builds a data pipeline per call (~35 ms here); a
    `tf.function` with a fixed signature runs in about a millisecond.
    Thread-safe: calls hold the model's `model_lock`, the same lock that
    `cnn.explain` holds while it looks inside the model.
    """

    def __init__(self, model):
        import tensorflow as tf

        self.model = model
        self.lock = model_lock(model)
        self._call = tf.function(
            lambda batch: model(batch, training=False),
            input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32)],
            reduce_retracing=True,
        )

    def predict_proba(self, images, *, policy: str = "squash") -> np.ndarray:
        """Class probabilities (N, 10) for a few images of any size (resized with `policy`)."""
        inputs = preprocess(images, policy=policy)
        with self.lock:
            return np.asarray(self._call(inputs), dtype=np.float32)

    def predict(self, images, *, policy: str = "squash") -> np.ndarray:
        """The most probable class (N,) of each image, as in scikit-learn: the argmax of `predict_proba`."""
        return self.predict_proba(images, policy=policy).argmax(axis=1)

    def top(self, images: Iterable, k: int = 3, *, policy: str = "squash") -> list[list[Ranked]]:
        """The `k` most probable classes of each image, best first (`predict_proba` ranked by `top_k`)."""
        batch = images if isinstance(images, np.ndarray) else list(images)  # a generator has no len()
        return [top_k(row, k) for row in self.predict_proba(batch, policy=policy)]


@dataclass(frozen=True)
class Latency:
    """How long one image takes through a `Predictor`, in milliseconds."""

    p50_ms: float
    p95_ms: float
    runs: int


def single_image_latency(predictor: Predictor, runs: int = 200, warmup: int = 20) -> Latency:
    """Time `predictor.top` on one 32x32 image `runs` times (after `warmup` calls that trace and warm it).

    A 32x32 image: the figure is the model's answer time, not decoding or resizing (those depend on
    the file; `benchmarks/predict_latency.py` times the whole path from JPEG bytes).
    """
    import time

    image = np.full(INPUT_SHAPE, 128, np.uint8)
    for _ in range(warmup):
        predictor.top(image[None])
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        predictor.top(image[None])
        times.append((time.perf_counter() - start) * 1000)
    return Latency(float(np.percentile(times, 50)), float(np.percentile(times, 95)), runs)


def quick_enough_model(records: Sequence[dict], budget_ms: float = PREDICT_BUDGET_MS) -> str | None:
    """The first of `records` (saved models, best first) whose recorded one-image p50 is within `budget_ms`.

    Models without a recorded figure are passed over; None when no model has one within budget.
    """
    for record in records:
        latency = (record.get("metrics") or {}).get("latency_p50_ms")
        if latency is not None and latency <= budget_ms:
            return record["name"]
    return None
