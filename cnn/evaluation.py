"""Predictions over a split, scikit-learn's classification report, confusion matrix, accuracy."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cnn import CLASS_NAMES, NUM_CLASSES
from cnn.data import Split, describe_test_part
from cnn.inference import predict_proba


@dataclass(frozen=True)
class EvalReport:
    """The results of one model on one split: plain data, usable without Streamlit."""

    split: str  # e.g. "test[0:1000] (exact images)"
    accuracy: float
    loss: float  # mean categorical cross-entropy
    report: dict  # sklearn classification_report(output_dict=True), keyed by class name
    confusion: np.ndarray  # (10, 10): row = true class, column = predicted class
    probabilities: np.ndarray  # (N, 10)
    labels: np.ndarray  # (N,) true labels

    @property
    def predictions(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    @property
    def n(self) -> int:
        return int(len(self.labels))

    def per_class_accuracy(self) -> dict[str, float]:
        """Recall of each class: the share of its images classified correctly."""
        totals = self.confusion.sum(axis=1)
        return {name: float(self.confusion[i, i] / totals[i]) if totals[i] else 0.0
                for i, name in enumerate(CLASS_NAMES)}

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
        return {"split": self.split, "n": self.n, "accuracy": self.accuracy, "loss": self.loss,
                "report": self.report, "confusion_matrix": self.confusion.tolist()}


def evaluate(model, split: Split, *, batch_size: int = 512) -> EvalReport:
    """Evaluate `model` on every image of `split`."""
    probabilities = predict_proba(model, split.images, batch_size=batch_size)
    return report_from_probabilities(probabilities, split.labels, describe_test_part(split))


def report_from_probabilities(probabilities: np.ndarray, labels, split_name: str) -> EvalReport:
    """Build an EvalReport from probabilities already computed (e.g. cached by the UI)."""
    from sklearn.metrics import classification_report, confusion_matrix

    labels = np.asarray(labels, dtype=np.int64)
    predictions = probabilities.argmax(axis=1)
    chosen = np.clip(probabilities[np.arange(len(labels)), labels], 1e-7, 1.0)
    classes = list(range(NUM_CLASSES))
    return EvalReport(
        split=split_name,
        accuracy=float((predictions == labels).mean()) if len(labels) else 0.0,
        loss=float(-np.log(chosen).mean()) if len(labels) else 0.0,
        report=classification_report(labels, predictions, labels=classes, target_names=list(CLASS_NAMES),
                                     output_dict=True, zero_division=0),
        confusion=confusion_matrix(labels, predictions, labels=classes),
        probabilities=probabilities,
        labels=labels,
    )
