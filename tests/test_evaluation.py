"""Stored predictions: `evaluate --record` writes them, loading verifies them, the shipped ones match their sidecars."""

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from cnn.__main__ import main
from cnn.artifacts import read_sidecar, save_model, sha256_of, update_sidecar
from cnn.errors import ModelFileError
from cnn.evaluation import (
    PREDICTIONS_KEY,
    Evaluation,
    Predictions,
    load_stored_predictions,
    predictions_path,
)

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "models").glob("*.keras"))


def random_probabilities(count: int, seed: int = 0) -> np.ndarray:
    logits = np.random.default_rng(seed).normal(size=(count, 10)).astype(np.float32)
    return np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)


def test_compact_predictions_give_the_same_evaluation_as_the_probabilities():
    probabilities = random_probabilities(500)
    labels = np.arange(500) % 10
    full = Evaluation.from_probabilities(probabilities, labels, "test")
    compact = Evaluation.from_predictions(Predictions.from_probabilities(probabilities, labels), "test")
    assert compact.accuracy == full.accuracy and compact.class_metrics == full.class_metrics
    assert compact.loss == pytest.approx(float(-np.log(probabilities[np.arange(500), labels]).mean()), rel=1e-6)
    ranked = compact.answers.top(7)
    assert [row.label for row in ranked] == list(np.argsort(probabilities[7])[::-1][:3])
    assert ranked[0].probability == pytest.approx(probabilities[7].max(), abs=1e-3)


@pytest.fixture(scope="module")
def recorded_once(tmp_path_factory, synthetic_cifar):
    """An untrained model saved in its own folder, then `evaluate --record` on the synthetic data."""
    from cnn.zoo import ZOO

    models = tmp_path_factory.mktemp("recorded") / "models"
    save_model(
        ZOO["base"].build(),
        models / "tiny.keras",
        {"model": "base", "config": {"val_size": 20}, "metrics": {"val_accuracy": 0.1}},
    )
    status = main(["--models-dir", str(models), "evaluate", "tiny", "--data-dir", str(synthetic_cifar), "--record"])
    assert status == 0
    return models / "tiny.keras"


@pytest.fixture
def recorded(recorded_once, tmp_path):
    """A copy of the recorded model, its sidecar and its predictions for each test, which may change them."""
    folder = shutil.copytree(recorded_once.parent, tmp_path / "models")
    return folder / recorded_once.name


def test_record_stores_predictions_tied_to_the_model(recorded):
    record = read_sidecar(recorded)
    entry = record[PREDICTIONS_KEY]
    assert entry["file"] == "tiny.predictions.npz" and entry["model_sha256"] == record["sha256"]
    assert entry["sha256"] == sha256_of(predictions_path(recorded)) and entry["splits"] == {"test": 50, "val": 20}
    stored = load_stored_predictions(recorded, record, sha256_of(recorded))
    assert set(stored) == {"test", "val"} and len(stored["test"]) == 50
    # The recorded test figure is the one the stored predictions give.
    assert record["metrics"]["test_clean_accuracy"] == Evaluation.from_predictions(stored["test"], "test").accuracy


def test_a_changed_predictions_file_is_refused(recorded):
    target = predictions_path(recorded)
    content = bytearray(target.read_bytes())
    content[-30] ^= 1
    target.write_bytes(bytes(content))
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        load_stored_predictions(recorded, read_sidecar(recorded), sha256_of(recorded))


def test_predictions_of_another_model_file_are_refused(recorded):
    record = read_sidecar(recorded)
    with pytest.raises(ModelFileError, match="another version of the model file"):
        load_stored_predictions(recorded, record, "0" * 64)  # the .keras file changed since the recording
    update_sidecar(recorded, sha256="1" * 64)  # a sidecar rewritten for another model keeps the old entry
    with pytest.raises(ModelFileError, match="another version of the model file"):
        load_stored_predictions(recorded, read_sidecar(recorded), "1" * 64)


def test_a_missing_predictions_file_is_refused_and_none_recorded_is_none(recorded):
    predictions_path(recorded).unlink()
    with pytest.raises(ModelFileError, match="is missing"):
        load_stored_predictions(recorded, read_sidecar(recorded), sha256_of(recorded))
    assert load_stored_predictions(recorded, {"sha256": "x"}, "x") is None


def test_malformed_predictions_are_refused(recorded):
    """Even with a matching sha256 (a hand-made file), arrays of the wrong shape or class range are refused."""
    import io

    buffer = io.BytesIO()
    np.savez(
        buffer,
        **{
            "test/labels": np.array([0, 12], np.uint8),
            "test/predicted": np.array([0, 1], np.uint8),
            "test/top_classes": np.zeros((2, 3), np.uint8),
            "test/top_probabilities": np.zeros((2, 3), np.float16),
            "test/true_probability": np.zeros(2, np.float32),
        },
    )
    target = predictions_path(recorded)
    target.write_bytes(buffer.getvalue())
    record = read_sidecar(recorded)
    record[PREDICTIONS_KEY]["sha256"] = sha256_of(target)
    with pytest.raises(ModelFileError, match="class that does not exist"):
        load_stored_predictions(recorded, record, sha256_of(recorded))


def test_retraining_drops_the_stored_predictions(recorded):
    """save_model writes a fresh sidecar: the old predictions are no longer recorded, so never shown."""
    from cnn.zoo import ZOO

    save_model(ZOO["base"].build(), recorded, {"model": "base"})
    assert load_stored_predictions(recorded, read_sidecar(recorded), sha256_of(recorded)) is None


@pytest.mark.parametrize("model_path", SHIPPED, ids=[path.stem for path in SHIPPED])
def test_shipped_predictions_give_the_sidecars_figures(model_path):
    """Every shipped model has verified stored predictions, and they give exactly the figures its sidecar records."""
    record = json.loads(model_path.with_suffix(".json").read_text())
    stored = load_stored_predictions(model_path, record, sha256_of(model_path))
    assert stored is not None, f"{model_path.stem} has no stored predictions: python -m cnn evaluate NAME --record"
    metrics = record["metrics"]
    test = stored["test"]
    assert Evaluation.from_predictions(test.subset(0, 1000), "test").accuracy == metrics["test_clean_accuracy"]
    assert Evaluation.from_predictions(test, "test").accuracy == metrics["test_all_accuracy"]
    validation = Evaluation.from_predictions(stored["val"], "val")
    assert validation.accuracy == pytest.approx(metrics["val_accuracy"], abs=1e-9)


def test_the_test_split_alone_equals_the_test_split_of_the_whole_load(synthetic_cifar, tmp_path):
    from cnn.data import load_cifar10, load_test_split
    from cnn.errors import DataError

    alone, whole = load_test_split(synthetic_cifar), load_cifar10(synthetic_cifar, val_size=0).test
    assert np.array_equal(alone.images, whole.images) and np.array_equal(alone.labels, whole.labels)
    with pytest.raises(DataError):
        load_test_split(tmp_path / "nothing-here")
