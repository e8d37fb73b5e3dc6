"""AppTest of the Train page on synthetic data: start a tiny run, watch the charts gain points, stop, resume.

AppTest does not fire `run_every` timers, so each poll is another `at.run()`.
"""

import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn import jobs
from cnn.artifacts import save_model
from cnn.errors import TrainingError

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "train.py")


@pytest.fixture
def page_env(synthetic_cifar, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    return models_dir


def open_page() -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60).run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def set_tiny_settings(app: AppTest, epochs: int, batch_size: int) -> None:
    app.number_input(key="train_epochs_base").set_value(epochs)
    app.select_slider(key="train_batch_base").set_value(batch_size)
    app.number_input(key="train_subset_base").set_value(100)
    app.number_input(key="train_val_base").set_value(20)


def poll(app: AppTest, until, timeout_s: float = 120):
    """Rerun the page (what the fragment timer does in a browser) until `until(state)` holds."""
    run_dir = jobs.classroom_run_dir("base")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.run()
        assert not app.exception, [exception.value for exception in app.exception]
        state = jobs.run_state(run_dir)
        if until(state):
            return state
        time.sleep(0.3)
    raise AssertionError(f"timed out: {jobs.run_state(run_dir)}\n{jobs.log_tail(run_dir)}")


def chart_points(app: AppTest) -> int:
    """Points on the live loss chart (training line)."""
    import json

    charts = [chart for chart in app.get("plotly_chart") if "live_classroom-base_loss" in chart.proto.id]
    if not charts:
        return 0
    figure = json.loads(charts[0].proto.spec)
    return len(figure["data"][0]["x"])


def test_start_watch_stop_resume(page_env):
    app = open_page()
    assert app.selectbox(key="train_model").value == "base"
    assert "No run of this model yet" in app.info[0].value
    set_tiny_settings(app, epochs=60, batch_size=8)
    app.button[0].click().run()  # the form's Start button
    assert not app.exception, [exception.value for exception in app.exception]
    assert jobs.run_state(jobs.classroom_run_dir("base")).active

    poll(app, lambda state: len(state.history) >= 1)
    first = chart_points(app)
    poll(app, lambda state: len(state.history) >= first + 1)
    app.run()
    assert chart_points(app) > first, "the charts gain a point per epoch"
    assert any("epoch" in caption.value for caption in app.caption)

    app.button(key="stop_classroom-base").click().run()
    stopped = poll(app, lambda state: not state.active)
    assert stopped.state == "stopped" and stopped.epoch < 60
    app.run()
    assert any("Stopped after" in info.value for info in app.info)
    epochs_when_stopped = len(stopped.history)

    app.button(key="train_resume").click().run()
    assert not app.exception, [exception.value for exception in app.exception]
    resumed = poll(app, lambda state: len(state.history) > epochs_when_stopped)
    assert [row["epoch"] for row in resumed.history] == list(range(1, len(resumed.history) + 1))
    jobs.stop_run(jobs.classroom_run_dir("base"))
    final = poll(app, lambda state: not state.active)
    assert final.state == "stopped" and (page_env / "base_classroom.keras").exists()


def test_second_start_is_refused_and_saved_curves_overlay(page_env):
    import json

    from cnn.models import ZOO

    history = [{"epoch": epoch, "loss": 2.0 / epoch, "accuracy": 0.3 + 0.1 * epoch,
                "val_loss": 2.2 / epoch + 0.1 * epoch, "val_accuracy": 0.3 + 0.05 * epoch} for epoch in (1, 2, 3)]
    for name in ("base", "dropout"):
        save_model(ZOO[name].build(), page_env / f"{name}.keras",
                   {"model": name, "history": history, "metrics": {"val_accuracy": 0.5}})
    app = open_page()
    assert app.multiselect(key="train_overlay").value == ["base", "dropout"]
    charts = [chart for chart in app.get("plotly_chart") if "saved_accuracy" in chart.proto.id]
    names = [trace["name"] for trace in json.loads(charts[0].proto.spec)["data"]]
    assert names == ["base: training", "base: validation", "dropout: training", "dropout: validation"]

    # A shipped model is not replaced without the checkbox.
    set_tiny_settings(app, epochs=1, batch_size=16)
    app.text_input(key="train_out_base").set_value("dropout")
    app.button[0].click().run()
    assert "tick 'overwrite'" in app.error[0].value

    # A run started elsewhere (another tab) shows here, and a second start is refused.
    from cnn.training import TrainConfig

    config = TrainConfig.for_model("base", epochs=50, batch_size=8, subset=100, val_size=20)
    jobs.start_run(config, page_env / "base_classroom.keras", jobs.classroom_run_dir("base"))
    try:
        app.run()
        assert app.get("progress"), "the page shows the other tab's run"
        with pytest.raises(TrainingError, match="already training"):
            jobs.start_run(config, page_env / "base_classroom.keras", jobs.classroom_run_dir("base"))
    finally:
        jobs.stop_run(jobs.classroom_run_dir("base"))
        jobs.wait_until_done(jobs.classroom_run_dir("base"))
