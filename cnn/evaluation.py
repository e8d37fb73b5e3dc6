"""A model evaluated on a split: its predictions, accuracy, loss, per-class metrics and confusion matrix.

A model's answers on a split are kept compactly (`Predictions`: predicted class,
top-3 classes and probabilities, the probability of the true class), so they
can ship beside the model (`models/NAME.predictions.npz`, written by
`python -m cnn evaluate NAME --record`) and every evaluation is drawn from them
without running the model. The sidecar records the file's sha256 and the
model's sha256 under one key, so predictions of another model file are
refused, never shown.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from cnn import CLASS_NAMES, NUM_CLASSES
from cnn.data import Split, describe_test_part
from cnn.errors import ModelFileError
from cnn.inference import Ranked, predict_proba

TOP_STORED = 3  # classes kept per image: the gallery shows the top-3
PREDICTIONS_KEY = "stored_predictions"  # the sidecar's one key for the predictions file
PREDICTIONS_SUFFIX = ".predictions.npz"
PREDICTION_FIELDS = ("labels", "predicted", "top_classes", "top_probabilities", "true_probability")
PROGRESS_CHUNK = 200  # images per model call when progress is reported: a bar that moves every second or so


@dataclass(frozen=True)
class Predictions:
    """One model's answers on one split, small enough to ship (15 bytes per image)."""

    labels: np.ndarray  # (N,) uint8: the true classes
    predicted: np.ndarray  # (N,) uint8: the most probable class (argmax of the float32 probabilities)
    top_classes: np.ndarray  # (N, 3) uint8: the three most probable classes, best first
    top_probabilities: np.ndarray  # (N, 3) float16: their probabilities
    true_probability: np.ndarray  # (N,) float32: the probability given to the true class (for the loss)

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, labels) -> "Predictions":
        """Keep what the reports need of (N, 10) probabilities."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        labels = np.asarray(labels).astype(np.uint8)
        order = np.argsort(-probabilities, axis=1, kind="stable")[:, :TOP_STORED]
        rows = np.arange(len(labels))
        return cls(
            labels=labels,
            predicted=probabilities.argmax(axis=1).astype(np.uint8),
            top_classes=order.astype(np.uint8),
            top_probabilities=np.take_along_axis(probabilities, order, axis=1).astype(np.float16),
            true_probability=probabilities[rows, labels].astype(np.float32),
        )

    def __len__(self) -> int:
        return int(len(self.labels))

    def subset(self, start: int, stop: int) -> "Predictions":
        """Images `start:stop` (e.g. the exact test images 0-999)."""
        return Predictions(*(getattr(self, name)[start:stop] for name in PREDICTION_FIELDS))

    def concatenate(self, after: "Predictions") -> "Predictions":
        """These images followed by those of `after` (e.g. images 0-999, then 1000-9999)."""
        return Predictions(*(np.concatenate([getattr(self, name), getattr(after, name)]) for name in PREDICTION_FIELDS))

    def top(self, index: int) -> list[Ranked]:
        """The model's three most probable classes for image `index`, best first."""
        return [
            Ranked(rank, int(label), CLASS_NAMES[label], float(probability))
            for rank, (label, probability) in enumerate(
                zip(self.top_classes[index], self.top_probabilities[index]), start=1
            )
        ]

    def check(self, name: str) -> None:
        """ModelFileError unless the arrays have the shapes, types and class ranges of predictions."""
        count = len(self.labels)
        shapes = {
            "labels": (count,),
            "predicted": (count,),
            "top_classes": (count, TOP_STORED),
            "top_probabilities": (count, TOP_STORED),
            "true_probability": (count,),
        }
        kinds = {"labels": "u", "predicted": "u", "top_classes": "u", "top_probabilities": "f", "true_probability": "f"}
        for field, shape in shapes.items():
            array = getattr(self, field)
            if array.shape != shape or array.dtype.kind != kinds[field]:
                raise ModelFileError(f"The stored predictions {name} are malformed ({field}).")
        if count and max(self.labels.max(), self.predicted.max(), self.top_classes.max()) >= NUM_CLASSES:
            raise ModelFileError(f"The stored predictions {name} name a class that does not exist.")


@dataclass(frozen=True)
class Evaluation:
    """The results of one model on one split: plain data, usable without Streamlit."""

    split: str  # e.g. "test[0:1000] (exact images)"
    accuracy: float
    loss: float  # mean categorical cross-entropy
    class_metrics: dict  # per class name and averaged: precision, recall, f1-score, support (sklearn's dict)
    confusion: np.ndarray  # (10, 10): row = true class, column = predicted class
    answers: Predictions

    @classmethod
    def from_predictions(cls, answers: Predictions, split_name: str) -> "Evaluation":
        """The evaluation of predictions already made (stored beside the model, or cached by the UI)."""
        from sklearn.metrics import classification_report, confusion_matrix

        labels, predicted = answers.labels.astype(np.int64), answers.predicted.astype(np.int64)
        # float32 throughout, as from the model's own output: the stored figures equal those of a fresh run.
        chosen = np.clip(answers.true_probability.astype(np.float32), 1e-7, 1.0)
        classes = list(range(NUM_CLASSES))
        return cls(
            split=split_name,
            accuracy=float((predicted == labels).mean()) if len(labels) else 0.0,
            loss=float(-np.log(chosen).mean()) if len(labels) else 0.0,
            class_metrics=classification_report(
                labels, predicted, labels=classes, target_names=list(CLASS_NAMES), output_dict=True, zero_division=0
            ),
            confusion=confusion_matrix(labels, predicted, labels=classes),
            answers=answers,
        )

    @classmethod
    def from_probabilities(cls, probabilities: np.ndarray, labels, split_name: str) -> "Evaluation":
        """The evaluation of (N, 10) probabilities."""
        return cls.from_predictions(Predictions.from_probabilities(probabilities, labels), split_name)

    @property
    def labels(self) -> np.ndarray:
        return self.answers.labels

    @property
    def predictions(self) -> np.ndarray:
        return self.answers.predicted

    @property
    def n(self) -> int:
        return len(self.answers)

    def per_class_accuracy(self) -> dict[str, float]:
        """Recall of each class: the share of its images classified correctly."""
        totals = self.confusion.sum(axis=1)
        return {
            name: float(self.confusion[i, i] / totals[i]) if totals[i] else 0.0 for i, name in enumerate(CLASS_NAMES)
        }

    def most_confused(self, count: int = 5) -> list[tuple[str, str, int]]:
        """The (true, predicted, count) pairs with the most mistakes."""
        errors = self.confusion.copy()
        np.fill_diagonal(errors, 0)
        order = np.argsort(errors, axis=None)[::-1][:count]
        pairs = [np.unravel_index(index, errors.shape) for index in order]
        return [(CLASS_NAMES[t], CLASS_NAMES[p], int(errors[t, p])) for t, p in pairs if errors[t, p] > 0]

    def mistakes(self, true_label: int, predicted_label: int) -> np.ndarray:
        """Indices (into this split) of images of `true_label` predicted as `predicted_label`."""
        return np.flatnonzero((self.labels == true_label) & (self.predictions == predicted_label))

    def to_json(self) -> dict:
        return {
            "split": self.split,
            "n": self.n,
            "accuracy": self.accuracy,
            "loss": self.loss,
            "class_metrics": self.class_metrics,
            "confusion_matrix": self.confusion.tolist(),
        }


# The dashboard server measures in small batches: at 512, the six-view `fast` network's activations
# grew the server by 1,680 MB and it kept them; at 64, by 193 MB (`python benchmarks/server_memory.py
# --eval-batch 512` / `64`, 2-core Xeon).
SERVER_BATCH = 64


def evaluate(model, split: Split, *, batch_size: int = 512) -> Evaluation:
    """Evaluate `model` on every image of `split`."""
    return Evaluation.from_predictions(predict_split(model, split, batch_size=batch_size), describe_test_part(split))


def predict_split(
    model, split: Split, *, batch_size: int = 512, progress: Callable[[int, int], None] | None = None
) -> Predictions:
    """The model's `Predictions` on `split`; with `progress`, in chunks, calling progress(done, total) after each."""
    if progress is None:
        return Predictions.from_probabilities(predict_proba(model, split.images, batch_size=batch_size), split.labels)
    parts, total = [], len(split)
    for start in range(0, total, PROGRESS_CHUNK):
        stop = min(start + PROGRESS_CHUNK, total)
        parts.append(predict_proba(model, split.images[start:stop], batch_size=batch_size))
        progress(stop, total)
    probabilities = np.concatenate(parts) if parts else np.zeros((0, NUM_CLASSES), np.float32)
    return Predictions.from_probabilities(probabilities, split.labels)


# ---------------------------------------------------------------- predictions stored beside a model


@dataclass(frozen=True)
class Estimate:
    """How long the rest of a measurement will take, from the pace so far."""

    done: int
    total: int
    elapsed_s: float

    @property
    def remaining_s(self) -> float | None:
        return self.elapsed_s / self.done * (self.total - self.done) if self.done else None


class ProgressClock:
    """progress(done, total) callbacks turned into `Estimate`s for a progress bar."""

    def __init__(self, show: Callable[[Estimate], None]):
        self._show, self._start = show, time.monotonic()

    def __call__(self, done: int, total: int) -> None:
        self._show(Estimate(done, total, self.elapsed_s))

    @property
    def elapsed_s(self) -> float:
        return time.monotonic() - self._start


def predictions_path(model_path: Path) -> Path:
    """`models/NAME.predictions.npz` beside `models/NAME.keras`."""
    model_path = Path(model_path)
    return model_path.with_name(model_path.stem + PREDICTIONS_SUFFIX)


def encode_predictions(by_split: dict[str, Predictions]) -> bytes:
    """The .npz bytes of predictions per split (arrays named SPLIT/FIELD)."""
    arrays = {
        f"{split}/{field}": getattr(answers, field)
        for split, answers in by_split.items()
        for field in PREDICTION_FIELDS
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    return buffer.getvalue()


def store_predictions(model_path: Path, by_split: dict[str, Predictions], data_source: str, **sidecar_fields) -> dict:
    """Write the predictions file beside the model, then record it in the sidecar (the commit record).

    `sidecar_fields` (e.g. the test figures drawn from these predictions) are written in the
    same sidecar update. Returns the sidecar entry: the file's name and sha256, the model's
    sha256 and the images per split.
    """
    from cnn.artifacts import atomic_write_bytes, sha256_of, update_sidecar, verify_model_file

    model_path = Path(model_path)
    record = verify_model_file(model_path)
    target = predictions_path(model_path)
    atomic_write_bytes(target, encode_predictions(by_split))
    entry = {
        "file": target.name,
        "sha256": sha256_of(target),
        "model_sha256": record["sha256"],
        "splits": {split: len(answers) for split, answers in by_split.items()},
        "data": data_source,
    }
    update_sidecar(model_path, **sidecar_fields, **{PREDICTIONS_KEY: entry})
    return entry


def load_stored_predictions(model_path: Path, record: dict, model_sha256: str) -> dict[str, Predictions] | None:
    """The verified predictions stored beside a model, per split; None when it has none.

    `record` is the model's sidecar and `model_sha256` the sha256 of the model file as it is now.
    Raises ModelFileError when the stored predictions belong to another model file, were changed
    after they were recorded, or are malformed: stale predictions are never returned.
    """
    entry = record.get(PREDICTIONS_KEY)
    if entry is None:
        return None
    model_path = Path(model_path)
    target = predictions_path(model_path)
    if not isinstance(entry, dict) or entry.get("file") != target.name:
        raise ModelFileError(f"The sidecar of {model_path.name} records its stored predictions wrongly.")
    if entry.get("model_sha256") != model_sha256 or record.get("sha256") != model_sha256:
        raise ModelFileError(
            f"The stored predictions of {model_path.name} were made by another version of the "
            "model file: they are not shown."
        )
    try:
        content = target.read_bytes()
    except OSError:
        raise ModelFileError(f"{target.name} is missing: the model's stored predictions are not shown.") from None
    import hashlib

    if hashlib.sha256(content).hexdigest() != entry.get("sha256"):
        raise ModelFileError(
            f"{target.name} does not match the sha256 in the sidecar: it was changed after it "
            "was recorded, so it is not shown."
        )
    return decode_predictions(content, target.name)


def decode_predictions(content: bytes, name: str) -> dict[str, Predictions]:
    """Predictions per split from .npz bytes (no pickles), each checked for shape and range."""
    try:
        with np.load(io.BytesIO(content), allow_pickle=False) as arrays:
            fields = {key: arrays[key] for key in arrays.files}
    except (OSError, ValueError, EOFError):
        raise ModelFileError(f"{name} is not a readable predictions file.") from None
    splits = sorted({key.split("/", 1)[0] for key in fields})
    result = {}
    for split in splits:
        try:
            answers = Predictions(*(fields[f"{split}/{field}"] for field in PREDICTION_FIELDS))
        except KeyError:
            raise ModelFileError(f"{name} lacks some predictions of the {split} split.") from None
        answers.check(name)
        result[split] = answers
    return result
