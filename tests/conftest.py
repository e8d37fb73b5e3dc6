"""Shared fixtures: a tiny synthetic CIFAR-10 folder, the real data when present, a models folder (and
untrained models saved in it), and the browser fixtures (one chromium and one server of each kind per
session, from browser_support.py).

Where each kind of test lives:
- tests/test_MODULE.py: cnn/MODULE.py (test_artifacts, test_data, test_models, test_training, ...) or
  ui/MODULE.py (test_resources, test_training_views); test_cli.py: the command line, cnn/__main__.py.
- tests/test_PAGE_page.py: AppTest of pages/PAGE.py (test_home_page, test_train_page, ...);
  test_learn_pages.py: the five pages/learn_*.py; test_app.py: the router, streamlit_app.py, its menu
  (ui/menu.py), and every page opened through it.
- tests/test_browser*.py: end to end in headless chromium (marked `browser`).
- tests/test_gpu_sweep.py and tests/test_run_all.py: scripts in docs/experiments/ and benchmarks/.
- Helpers, not tests: browser_support.py, helpers_cli.py, helpers_http.py, hostile_jpeg.py, data/.

Marks: `slow` (worker processes, training of several runs or in the browser, full-size models, multi-worker
tf.distribute, all of the real CIFAR-10), `browser`, `realdata` (skipped without the real CIFAR-10).
`make test-fast` runs the rest. Both make targets run the tests in one pytest-xdist process per CPU; the
browser tests all go to one of them (see pytest_collection_modifyitems).
"""

from __future__ import annotations

import functools
import os
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
from streamlit.runtime.scriptrunner import script_runner

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The browser fixtures, defined here once so that a session has one chromium and one server of each kind.
from browser_support import browser, page, shipped_models_server, training_server  # noqa: E402,F401

from cnn import CLASS_NAMES  # noqa: E402

SYNTHETIC_PER_BATCH = 40
SYNTHETIC_TEST = 50


def synthetic_images(labels: np.ndarray, seed: int) -> np.ndarray:
    """Noisy images whose mean colour depends on the class, so a model can learn them."""
    rng = np.random.default_rng(seed)
    base = np.stack([(labels * 25) % 256, (labels * 60 + 40) % 256, 255 - labels * 25], axis=1)
    images = base[:, None, None, :] + rng.integers(-30, 30, size=(len(labels), 32, 32, 3))
    return np.clip(images, 0, 255).astype(np.uint8)


def write_batch(path: Path, labels: np.ndarray, seed: int) -> None:
    """One CIFAR python-version batch: rows of 1024 R, 1024 G, 1024 B values."""
    images = synthetic_images(labels, seed)
    rows = images.transpose(0, 3, 1, 2).reshape(len(labels), 3072)
    content = {
        b"batch_label": b"synthetic",
        b"labels": labels.tolist(),
        b"data": rows,
        b"filenames": [f"img_{i}.png".encode() for i in range(len(labels))],
    }
    path.write_bytes(pickle.dumps(content, protocol=2))


def make_synthetic_cifar(folder: Path, per_batch: int = SYNTHETIC_PER_BATCH) -> Path:
    """Five training batches of `per_batch` images each and a test batch, in CIFAR's python layout."""
    folder.mkdir(parents=True, exist_ok=True)
    for batch in range(1, 6):
        labels = np.arange(per_batch) % 10
        write_batch(folder / f"data_batch_{batch}", labels, seed=batch)
    write_batch(folder / "test_batch", np.arange(SYNTHETIC_TEST) % 10, seed=99)
    meta = {b"label_names": [name.encode() for name in CLASS_NAMES], b"num_cases_per_batch": per_batch}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return folder


@pytest.fixture(scope="session")
def synthetic_cifar(tmp_path_factory) -> Path:
    """A CIFAR-10 python-layout folder with 200 training and 50 test images."""
    return make_synthetic_cifar(tmp_path_factory.mktemp("cifar") / "cifar-10-batches-py")


@pytest.fixture
def models_dir(tmp_path, monkeypatch) -> Path:
    folder = tmp_path / "models"
    folder.mkdir()
    monkeypatch.setenv("CNN_MODELS_DIR", str(folder))
    return folder


ONE_EPOCH = [{"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2}]


@pytest.fixture
def save_untrained_model(models_dir):
    """`save(stem, model, metrics, **fields) -> path`: an untrained zoo `model` saved in `models_dir` as
    STEM.keras, its sidecar that of a one-epoch run with these metrics and any further fields."""
    from cnn.artifacts import save_model
    from cnn.zoo import ZOO

    def save(stem: str, model: str, metrics: dict, **fields) -> Path:
        path = models_dir / f"{stem}.keras"
        sidecar = {"model": model, "epochs": 1, "history": ONE_EPOCH, "metrics": metrics, **fields}
        save_model(ZOO[model].build(), path, sidecar)
        return path

    return save


def real_cifar_dir() -> Path | None:
    for candidate in (
        os.environ.get("CIFAR10_DIR"),
        ROOT.parent / "shared" / "data" / "cifar-10-batches-py",
        Path.home() / ".keras" / "datasets" / "cifar-10-batches-py",
    ):
        if candidate and (Path(candidate) / "data_batch_1").exists():
            return Path(candidate)
    return None


@pytest.fixture(scope="session")
def real_cifar():
    folder = real_cifar_dir()
    if folder is None:
        pytest.skip("the real CIFAR-10 is not on this machine")
    from cnn.data import load_cifar10

    return load_cifar10(folder)


# Streamlit's own between-runs cleanup, as a fresh server has it (tests/test_server_runtime.py restores it).
# None if a Streamlit upgrade renamed it: tests/test_server_runtime.py then fails on the reset, not on an import.
STREAMLIT_RUN_CLEANUP = getattr(script_runner, "_clean_problem_modules", None)


@pytest.fixture(autouse=True, scope="session")
def app_tests_run_pages_as_the_server_does():
    """An AppTest of one page skips the router, which tells Streamlit to leave Keras alone between runs (as the
    dashboard's server does from its first run): do it here too, so AppTests measure what the server runs.
    And every AppTest scans all installed packages for Streamlit components (about 0.16 s each, over a minute
    for the suite); the installed packages do not change during a test session, so the first answer is kept."""
    from ui.server_runtime import keep_keras_state_between_runs

    try:
        from streamlit.components.v2 import manifest_scanner
    except ImportError:  # a Streamlit without component manifests scans nothing
        manifest_scanner = None
    if manifest_scanner is not None:
        real_scan = manifest_scanner.scan_component_manifests
        manifest_scanner.scan_component_manifests = functools.cache(real_scan)
    keep_keras_state_between_runs()
    yield
    if manifest_scanner is not None:
        manifest_scanner.scan_component_manifests = real_scan
    if STREAMLIT_RUN_CLEANUP is not None:
        script_runner._clean_problem_modules = STREAMLIT_RUN_CLEANUP


def pytest_collection_modifyitems(config, items):
    """Under pytest-xdist (`--dist loadgroup`), every browser test runs in one worker so that they share one
    chromium and one server of each kind, as they do in a single process."""
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(pytest.mark.xdist_group("browser"))
