"""ui/resources.py: a model file is resolved and hashed once per load, however often pages rerun.

The caches are keyed by `ModelFile` (resolved path, inode, size, mtime_ns);
the sha256 against the sidecar is checked inside the cached loader. Every
test counts the real sha256 computations of `cnn.artifacts`.
"""

import os
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn import artifacts
from cnn.errors import ModelFileError
from ui import resources

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 90  # importing TensorFlow and loading a model is slow on a busy machine


def save_untrained(folder: Path, seed: int = 0) -> Path:
    import keras

    from cnn.zoo import ZOO

    keras.utils.set_random_seed(seed)
    target = folder / "base.keras"
    artifacts.save_model(ZOO["base"].build(), target, {"builder": "base", "metrics": {"val_accuracy": 0.5}})
    return target


@pytest.fixture
def hashes(monkeypatch) -> list[str]:
    """The paths `cnn.artifacts` hashes from now on, one entry per sha256 computation; caches start empty."""
    seen = []
    real = artifacts.sha256_of
    monkeypatch.setattr(artifacts, "sha256_of", lambda path: seen.append(str(path)) or real(path))
    resources._load_model.clear()
    resources._predictor.clear()
    yield seen
    resources._load_model.clear()
    resources._predictor.clear()


@pytest.fixture
def base_model(models_dir) -> Path:
    return save_untrained(models_dir)


def test_pages_name_a_model_and_a_path_is_refused(base_model, hashes):
    """Paths belong to the CLI (`artifacts.resolve_model_path`); the UI's getters take the name the folder lists."""
    for path in (str(base_model), f"{base_model.parent.name}/base", "./base.keras"):
        with pytest.raises(ModelFileError, match="model name"):
            resources.get_model(path)
        with pytest.raises(ModelFileError, match="model name"):
            resources.get_predictor(path)
    assert hashes == [], "refused before any file is read"


def test_many_gets_hash_the_file_once(base_model, hashes):
    predictor = resources.get_predictor("base")
    model, sidecar = resources.get_model("base")
    for _ in range(5):
        assert resources.get_predictor("base") is predictor
        assert resources.get_model("base")[0] is model
    assert predictor.model is model and sidecar["builder"] == "base"
    assert hashes == [str(base_model)]


def test_reruns_of_the_predict_page_hash_the_model_once(base_model, hashes):
    app = AppTest.from_file(str(ROOT / "pages" / "predict.py"), default_timeout=TIMEOUT).run()
    app.multiselect(key="predict_samples").set_value([0]).run()
    for _ in range(3):
        app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    assert app.dataframe, "the page showed no prediction"
    assert hashes == [str(base_model)]


@pytest.fixture
def evaluate_page(tmp_path, monkeypatch):
    """The Evaluate page on the bundled sample (no full CIFAR-10), with nothing measured or checked yet."""
    from ui import evaluation_views

    (tmp_path / "no-data-here").mkdir()
    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "no-data-here"))
    evaluation_views._measured.clear()
    evaluation_views._stored_evaluation.clear()
    evaluation_views._measured_evaluation_of.clear()
    yield AppTest.from_file(str(ROOT / "pages" / "evaluate.py"), default_timeout=TIMEOUT)
    evaluation_views._measured.clear()
    evaluation_views._stored_evaluation.clear()
    evaluation_views._measured_evaluation_of.clear()


def rerun_evaluate(app: AppTest) -> AppTest:
    """The page, then reruns as clicks make them: a control changed, and plain reruns."""
    app.run()
    app.segmented_control(key="eval_confusion_mode").set_value("row-normalized").run()
    for _ in range(3):
        app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def test_reruns_of_the_evaluate_page_hash_a_model_with_stored_predictions_once(base_model, hashes, evaluate_page):
    from cnn.data import load_sample
    from cnn.evaluation import store_predictions
    from tests.test_evaluate_page import crafted_predictions

    store_predictions(base_model, {"test": crafted_predictions(load_sample().labels)}, "bundled sample")
    hashes.clear()  # storing hashed the file for the sidecar
    app = rerun_evaluate(evaluate_page)
    assert "stored beside the model" in app.caption[0].value
    assert hashes == [str(base_model)]  # to check the stored predictions against it, once


def test_reruns_of_the_evaluate_page_hash_a_model_measured_here_once(base_model, hashes, evaluate_page):
    from ui import evaluation_views

    app = rerun_evaluate(evaluate_page)
    assert evaluation_views.MEASURED_HERE in app.info[0].value
    assert hashes == [str(base_model)]  # to verify it when it is loaded, once


def test_a_model_replaced_between_reruns_of_the_evaluate_page_is_measured_again(base_model, hashes, evaluate_page):
    from ui import evaluation_views

    app = rerun_evaluate(evaluate_page)
    save_untrained(base_model.parent, seed=1)  # as a retraining does: a new file renamed over the old one
    hashes.clear()
    app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    assert hashes == [str(base_model)]  # the new file, verified as it loads
    assert len(evaluation_views._measured()["answers"]) == 2  # images 0-999 of each version of the file


def test_a_replaced_model_file_is_loaded_and_verified_again(base_model, hashes):
    first = resources.get_predictor("base")
    save_untrained(base_model.parent, seed=1)  # as a retraining does: a new file renamed over the old one
    hashes.clear()  # saving hashed the file for its sidecar
    second = resources.get_predictor("base")
    assert second is not first and second.model is not first.model
    assert hashes == [str(base_model)]
    assert resources.get_predictor("base") is second and len(hashes) == 1


def test_a_replaced_file_that_fails_its_sha256_is_refused_not_served_from_the_cache(base_model, hashes):
    resources.get_model("base")
    sidecar = artifacts.sidecar_path(base_model).read_text()
    save_untrained(base_model.parent, seed=1)
    artifacts.sidecar_path(base_model).write_text(sidecar)  # the old sidecar: its sha256 no longer matches
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        resources.get_model("base")


def test_a_file_changed_in_place_with_size_and_time_restored_keeps_the_verified_model(base_model, hashes):
    # The documented trade-off: path, inode, size and mtime are the cache key, the sha256 is checked at
    # load. A forger who restores the time is not noticed while the verified model stays cached; the
    # cache goes on serving the model that was verified, and the next load refuses the file.
    model, _ = resources.get_model("base")
    before = base_model.stat()
    with base_model.open("r+b") as handle:
        handle.seek(before.st_size // 2)
        byte = handle.read(1)
        handle.seek(before.st_size // 2)
        handle.write(bytes([byte[0] ^ 0xFF]))
    os.utime(base_model, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert resources.get_model("base")[0] is model
    assert hashes == [str(base_model)]
    resources._load_model.clear()  # the cache entry is evicted, or the server restarts
    with pytest.raises(ModelFileError, match="does not match the sha256"):
        resources.get_model("base")
