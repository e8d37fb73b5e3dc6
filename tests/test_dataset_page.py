"""The CIFAR-10 dataset page (AppTest) and the download it offers when no dataset is found."""

from __future__ import annotations

import functools
import hashlib
import json
import tarfile
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn import data
from cnn.errors import DataError
from ui import resources

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "dataset.py")


@pytest.fixture
def no_dataset(tmp_path, monkeypatch):
    """Nowhere to find CIFAR-10: no CIFAR10_DIR, an empty Keras cache."""
    monkeypatch.delenv("CIFAR10_DIR", raising=False)
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "keras" / "datasets" / "cifar-10-batches-py")
    resources.get_dataset.clear()
    yield
    resources.get_dataset.clear()


SYNTHETIC_VAL = 20  # the synthetic set has 200 training images: far fewer than the real 5,000 for validation


@pytest.fixture
def small_validation(monkeypatch):
    """Let `load_cifar10()` (as the cached `get_dataset` calls it) accept the small synthetic set."""
    monkeypatch.setattr(data, "load_cifar10", functools.partial(data.load_cifar10, val_size=SYNTHETIC_VAL))


@pytest.fixture
def full_dataset(synthetic_cifar, small_validation, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    resources.get_dataset.clear()
    yield synthetic_cifar
    resources.get_dataset.clear()


def run_page(timeout_s: float = 60) -> AppTest:
    return AppTest.from_file(PAGE, default_timeout=timeout_s).run()


def charts(app: AppTest) -> list[dict]:
    """The page's plotly figures as JSON: grid, histogram, class balance (, augmentation preview)."""
    return [json.loads(element.proto.spec) for element in app.get("plotly_chart")]


def assert_ok(app: AppTest) -> None:
    assert not app.exception, [exception.value for exception in app.exception]
    assert not app.error, [error.value for error in app.error]
    assert len(app.caption) >= len(app.get("plotly_chart")), "every figure needs a caption"


def test_without_data_the_page_uses_the_sample_and_offers_the_download(no_dataset):
    app = run_page()
    assert_ok(app)
    assert "bundled sample" in app.info[0].value
    assert app.button(key="dataset_download").label.startswith("Download CIFAR-10")
    assert not app.radio.values or "dataset_part" not in [radio.key for radio in app.radio]
    grid, histogram, balance = charts(app)
    assert len(grid["layout"]["yaxis"]["ticktext"]) == 10  # one row per class
    assert [trace["name"].split(" ")[0] for trace in histogram["data"]] == ["red", "green", "blue"]
    assert {trace["line"]["dash"] for trace in histogram["data"]} == {"solid", "dash", "dot"}
    assert sum(balance["data"][0]["y"]) == 1000
    assert "(1000, 32, 32, 3)" in app.dataframe[0].value["shape"].tolist()


def test_redraw_histogram_choices_and_one_hot(no_dataset):
    app = run_page()
    first_grid = charts(app)[0]["data"][0]["source"]
    app.button(key="dataset_redraw").click().run()
    assert_ok(app)
    assert charts(app)[0]["data"][0]["source"] != first_grid, "re-draw must show other images"

    app.radio(key="dataset_hist_channels").set_value("all values together").run()
    app.radio(key="dataset_hist_scale").set_value("normalized (÷255, 0-1)").run()
    assert_ok(app)
    histogram = charts(app)[1]
    assert len(histogram["data"]) == 1 and histogram["data"][0]["name"].startswith("all channels")
    assert histogram["layout"]["xaxis"]["range"] == [0, 1]
    assert "÷ 255" in histogram["layout"]["xaxis"]["title"]["text"]

    one_hot = app.dataframe[2].value
    assert (one_hot.loc[:, "airplane":"truck"].sum(axis=1) == 1).all()
    assert all(one_hot.loc[row, one_hot.loc[row, "class"]] == 1 for row in one_hot.index)
    assert app.code[1].value.startswith("[0.")  # the normalized pixels


def test_augmentation_preview_shows_originals_and_copies(no_dataset):
    app = run_page(timeout_s=180)  # the first TensorFlow import is slow on a busy machine
    assert len(app.get("plotly_chart")) == 3, "the preview (TensorFlow) must wait for the toggle"
    app.toggle(key="dataset_augment").set_value(True).run()
    assert_ok(app)
    preview = charts(app)[3]
    assert preview["layout"]["xaxis"]["ticktext"] == ["original", *(f"copy {n}" for n in range(1, 7))]
    app.slider(key="dataset_augment_copies").set_value(3).run()
    before = charts(app)[3]["data"][0]["source"]
    app.button(key="dataset_augment_redraw").click().run()
    assert_ok(app)
    assert len(charts(app)[3]["layout"]["xaxis"]["ticktext"]) == 4
    assert charts(app)[3]["data"][0]["source"] != before


def test_full_dataset_parts(full_dataset):
    app = run_page()
    assert_ok(app)
    assert not app.info and not [button for button in app.button if button.key == "dataset_download"]
    assert app.radio(key="dataset_part").value == "train"
    assert sum(charts(app)[2]["data"][0]["y"]) == 200 - SYNTHETIC_VAL
    app.radio(key="dataset_part").set_value("test").run()
    assert_ok(app)
    assert sum(charts(app)[2]["data"][0]["y"]) == 50
    assert len(app.dataframe[0].value) == 6  # images and labels of train, val, test


def test_download_failure_is_a_plain_message(no_dataset, monkeypatch):
    calls = []

    def offline(progress=None):
        progress(0, 100)
        progress(50, 100)
        calls.append("called")
        raise DataError("The CIFAR-10 download failed: no network.")

    monkeypatch.setattr(data, "download_cifar10", offline)
    app = run_page()
    app.button(key="dataset_download").click().run()
    assert calls and not app.exception
    assert "no network" in app.error[0].value


def test_download_success_switches_to_the_full_dataset(no_dataset, synthetic_cifar, small_validation, monkeypatch):
    def fake_download(progress=None):
        progress(100, 100)
        monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
        return synthetic_cifar

    monkeypatch.setattr(data, "download_cifar10", fake_download)
    app = run_page()
    app.button(key="dataset_download").click().run()
    assert_ok(app)
    assert app.radio(key="dataset_part").value == "train"


def make_archive(folder: Path, archive: Path) -> str:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname="cifar-10-batches-py")
    return hashlib.sha256(archive.read_bytes()).hexdigest()


def test_download_with_progress_verifies_unpacks_and_is_found(no_dataset, synthetic_cifar, small_validation, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    digest = make_archive(synthetic_cifar, archive)
    reports = []
    folder = data._download_with_progress(
        lambda done, total: reports.append((done, total)), url=archive.as_uri(), sha256=digest
    )
    assert folder == data.KERAS_CACHE and (folder / "batches.meta").is_file()
    size = archive.stat().st_size
    assert reports[0] == (0, size) and reports[-1] == (size, size)
    assert [done for done, _ in reports] == sorted(done for done, _ in reports)
    assert len(data.load_cifar10().train) == 200 - SYNTHETIC_VAL
    assert [path.name for path in folder.parent.iterdir()] == ["cifar-10-batches-py"], "temporary files left"


def test_download_with_the_wrong_checksum_leaves_nothing(no_dataset, synthetic_cifar, tmp_path):
    archive = tmp_path / "cifar-10-python.tar.gz"
    make_archive(synthetic_cifar, archive)
    with pytest.raises(DataError, match="sha256"):
        data._download_with_progress(lambda done, total: None, url=archive.as_uri(), sha256="0" * 64)
    assert list(data.KERAS_CACHE.parent.iterdir()) == []
    with pytest.raises(DataError, match="download"):
        data._download_with_progress(lambda done, total: None, url=(tmp_path / "missing").as_uri())


@pytest.mark.slow  # reads all of the real CIFAR-10
@pytest.mark.realdata
def test_real_dataset_page(monkeypatch):
    from conftest import real_cifar_dir

    folder = real_cifar_dir()
    if folder is None:
        pytest.skip("the real CIFAR-10 is not on this machine")
    monkeypatch.setenv("CIFAR10_DIR", str(folder))
    resources.get_dataset.clear()
    try:
        app = run_page()
        assert_ok(app)
        assert sum(charts(app)[2]["data"][0]["y"]) == 45_000
        assert "(45000, 32, 32, 3)" in app.dataframe[0].value["shape"].tolist()
        app.radio(key="dataset_part").set_value("test").run()
        assert sum(charts(app)[2]["data"][0]["y"]) == 10_000 and set(charts(app)[2]["data"][0]["y"]) == {1000}
    finally:
        resources.get_dataset.clear()
