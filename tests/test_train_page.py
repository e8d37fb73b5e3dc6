"""AppTest of the Train page on synthetic data: start, watch, stop, resume; the queue; Resume only when it
makes sense; shipped models read-only without the teacher key; classroom limits.

AppTest does not fire `run_every` timers, so each poll is another `at.run()`.
"""

import fcntl
import json
import os
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from cnn import classroom, jobs, runs
from cnn.artifacts import save_model
from cnn.runs import RunFiles, RunRequest
from cnn.training import TrainConfig
from cnn.zoo import ZOO

ROOT = Path(__file__).resolve().parents[1]
PAGE = str(ROOT / "pages" / "train.py")
KEY = "open sesame"


@pytest.fixture
def page_env(synthetic_cifar, models_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv(jobs.MAX_WORKERS_ENV, "1")
    monkeypatch.delenv(classroom.TEACHER_KEY_ENV, raising=False)
    return models_dir


def open_page(run: str | None = None, teacher_key: str | None = None) -> AppTest:
    app = AppTest.from_file(PAGE, default_timeout=60)
    if run:
        app.query_params["run"] = run
    if teacher_key:
        app.secrets["teacher_key"] = teacher_key
    app.run()
    assert not app.exception, [exception.value for exception in app.exception]
    return app


def set_tiny_settings(app: AppTest, epochs: int, batch_size: int) -> None:
    app.number_input(key="train_epochs_base").set_value(epochs)
    app.select_slider(key="train_batch_base").set_value(batch_size)
    app.number_input(key="train_subset_base").set_value(100)
    app.number_input(key="train_val_base").set_value(20)
    app.checkbox(key="train_bf16_base").uncheck()


def poll(app: AppTest, run_dir: Path, until, timeout_s: float = 600):  # generous: a busy machine
    """Rerun the page (what the fragment timer does in a browser) until `until(state)` holds."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        app.run()
        assert not app.exception, [exception.value for exception in app.exception]
        state = jobs.run_state_in_queue(run_dir)
        if until(state):
            return state
        time.sleep(0.3)
    raise AssertionError(f"timed out: {jobs.run_state_in_queue(run_dir)}\n{jobs.log_tail(run_dir)}")


def chart_points(app: AppTest, name: str) -> int:
    """Points on the live loss chart (training line)."""
    charts = [chart for chart in app.get("plotly_chart") if f"live_{name}_loss" in chart.proto.id]
    if not charts:
        return 0
    figure = json.loads(charts[0].proto.spec)
    return len(figure["data"][0]["x"])


def buttons(app: AppTest) -> list[str]:
    return [button.label for button in app.button]


def test_the_model_list_is_the_zoo_with_its_descriptions(page_env):
    app = open_page()
    assert app.selectbox(key="train_model").options == [f"{name}: {entry.description}" for name, entry in ZOO.items()]


@pytest.mark.slow
def test_start_watch_stop_resume(page_env):
    app = open_page()
    assert app.selectbox(key="train_model").value == "base"
    name = app.text_input(key="train_out_base").value
    assert name.startswith("base_"), "a student's run saves under a name of its own"
    assert any(f"No run of this model yet under the name {name}" in info.value for info in app.info)
    set_tiny_settings(app, epochs=30, batch_size=8)
    app.button[0].click().run()  # the form's Start button
    assert not app.exception, [exception.value for exception in app.exception]
    assert app.query_params["run"] == name, "the link names the run, so a reload shows it again"
    run_dir = runs.run_dir_for(name)
    assert jobs.run_state(run_dir).active

    poll(app, run_dir, lambda state: len(state.history) >= 1)
    first = chart_points(app, name)
    poll(app, run_dir, lambda state: len(state.history) >= first + 1)
    app.run()
    assert chart_points(app, name) > first, "the charts gain a point per epoch"
    assert any("epoch" in caption.value for caption in app.caption)

    app.button(key=f"stop_{name}").click().run()
    stopped = poll(app, run_dir, lambda state: not state.active)
    assert stopped.state == "stopped" and stopped.epoch < 30
    app.run()
    assert any("Stopped after" in info.value for info in app.info)
    epochs_when_stopped = stopped.epoch

    reloaded = open_page(run=name)  # a new session (reload) sees the same run and may resume it
    reloaded.button(key="train_resume").click().run()
    assert not reloaded.exception, [exception.value for exception in reloaded.exception]
    resumed = poll(reloaded, run_dir, lambda state: state.epoch > epochs_when_stopped)
    assert [row["epoch"] for row in resumed.history] == list(range(1, len(resumed.history) + 1))
    jobs.stop_run(run_dir)
    final = poll(reloaded, run_dir, lambda state: not state.active)
    assert final.state == "stopped" and (page_env / f"{name}.keras").exists()


def hand_made_run(name: str, models_dir: Path, status: dict, *, history=(), checkpoint=False) -> Path:
    """A run folder as a worker left it (no worker now)."""
    run_dir = runs.run_dir_for(name)
    files = RunFiles(run_dir)
    config = TrainConfig.for_model("base", epochs=3, subset=100, val_size=20).to_dict()
    RunRequest(config=config, out_path=str(models_dir / f"{name}.keras"), owner="someone").write(files)
    files.status.write_text(json.dumps({"model": "base", "epochs": 3, "config": config, **status}))
    files.history.write_text("".join(json.dumps(row) + "\n" for row in history))
    if checkpoint:
        files.checkpoint.write_bytes(b"checkpoint")
    return run_dir


def test_resume_is_offered_exactly_when_the_run_can_resume(page_env):
    row = {"epoch": 1, "loss": 2.0, "accuracy": 0.2, "val_loss": 2.1, "val_accuracy": 0.2}
    hand_made_run("killed_early", page_env, {"state": "running", "epoch": 0})  # killed in epoch 1
    hand_made_run("killed_later", page_env, {"state": "running", "epoch": 1}, history=[row], checkpoint=True)
    hand_made_run(
        "done",
        page_env,
        {"state": "finished", "epoch": 3, "message": "3/3 epochs"},
        history=[{**row, "epoch": epoch} for epoch in (1, 2, 3)],
        checkpoint=True,
    )
    hand_made_run(
        "paused", page_env, {"state": "stopped", "epoch": 1, "message": "1/3 epochs"}, history=[row], checkpoint=True
    )

    app = open_page(run="killed_early")
    assert "Resume starts it again with the same settings" in app.warning[0].value
    assert "Resume" in buttons(app)
    app = open_page(run="killed_later")
    assert "Resume continues from its last checkpoint" in app.warning[0].value
    assert "Resume" in buttons(app)
    app = open_page(run="done")
    assert any("Finished 3 epochs" in success.value for success in app.success)
    assert "Resume" not in buttons(app), "a finished run offers no Resume"
    app = open_page(run="paused")
    assert any("Stopped after 1 of 3 epochs" in info.value for info in app.info) and "Resume" in buttons(app)


@pytest.fixture
def busy_machine(page_env):
    """The machine's only training slot, taken (as by a run that trains now)."""
    jobs.queue_dir().mkdir(parents=True)
    slot = os.open(jobs.queue_dir() / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(slot, fcntl.LOCK_EX)
    yield page_env
    os.close(slot)


@pytest.mark.slow  # starts worker processes
def test_a_waiting_run_says_its_place_in_line_and_can_be_cancelled(busy_machine):
    config = TrainConfig.for_model("base", epochs=2, subset=100, val_size=20, mixed_precision=False)
    started = [
        classroom.start_run(config, busy_machine / f"{name}.keras", owner="someone", teacher=False)
        for name in ("ahead", "mine")
    ]
    for run_dir in started:
        deadline = time.monotonic() + 60
        while jobs.run_state(run_dir).state != "queued":
            assert time.monotonic() < deadline, jobs.log_tail(run_dir)
            time.sleep(0.1)

    app = open_page(run="mine")
    waiting = [info.value for info in app.info if info.value.startswith("Waiting")]
    assert waiting and waiting[0].startswith("Waiting: 2nd in line. This machine trains 1 run at once"), waiting
    assert any("ahead (base) is queued now: waiting, 1st in line" in info.value for info in app.info)
    assert any("1 training now, 2 waiting in line" in caption.value for caption in app.caption)
    assert "Stop" not in buttons(app) and not app.get("progress")

    app.button(key="cancel_mine").click().run()
    state = jobs.wait_until_done(started[1], timeout_s=300)
    assert state.state == "cancelled" and not state.history and not (busy_machine / "mine.keras").exists()
    app.run()
    assert any(jobs.CANCELLED_MESSAGE in info.value for info in app.info)
    assert jobs.queue_position(started[0]) == 1
    assert jobs.stop_run(started[0]) == "cancelled"
    jobs.wait_until_done(started[0], timeout_s=300)


@pytest.mark.slow  # starts worker processes
def test_a_run_in_use_elsewhere_is_refused(busy_machine):
    config = TrainConfig.for_model("base", epochs=2, subset=100, val_size=20, mixed_precision=False)
    run_dir = classroom.start_run(config, busy_machine / "shared.keras", owner="another", teacher=False)
    try:
        deadline = time.monotonic() + 60
        while jobs.run_state(run_dir).state != "queued":  # the worker has taken over the locks
            assert time.monotonic() < deadline, jobs.log_tail(run_dir)
            time.sleep(0.1)
        app = open_page()
        set_tiny_settings(app, epochs=1, batch_size=16)
        app.text_input(key="train_out_base").set_value("shared")
        app.button[0].click().run()
        worker = json.loads(RunFiles(run_dir).status.read_text())["pid"]  # the worker, not the server, is named
        assert f"The run folder shared/ is in use by another training (process {worker})" in app.error[0].value
    finally:
        jobs.stop_run(run_dir)
        jobs.wait_until_done(run_dir, timeout_s=300)


def test_shipped_models_are_read_only_and_limits_hold_without_the_teacher_key(page_env):
    history = [
        {
            "epoch": epoch,
            "loss": 2.0 / epoch,
            "accuracy": 0.3 + 0.1 * epoch,
            "val_loss": 2.2 / epoch + 0.1 * epoch,
            "val_accuracy": 0.3 + 0.05 * epoch,
        }
        for epoch in (1, 2, 3)
    ]
    for name in ("base", "dropout"):
        save_model(
            ZOO[name].build(),
            page_env / f"{name}.keras",
            {"model": name, "history": history, "metrics": {"val_accuracy": 0.5}},
        )
    app = open_page(teacher_key=KEY)
    assert app.multiselect(key="train_overlay").value == ["base", "dropout"]
    charts = [chart for chart in app.get("plotly_chart") if "saved_accuracy" in chart.proto.id]
    names = [trace["name"] for trace in json.loads(charts[0].proto.spec)["data"]]
    assert names == ["base: training", "base: validation", "dropout: training", "dropout: validation"]

    assert app.number_input(key="train_epochs_base").proto.max == classroom.STUDENT_LIMITS.max_epochs
    assert not [box for box in app.checkbox if box.key == "train_replace_base"]
    set_tiny_settings(app, epochs=1, batch_size=16)
    app.text_input(key="train_out_base").set_value("dropout")
    app.button[0].click().run()
    assert "dropout is a model that ships with the dashboard: only the teacher" in app.error[0].value

    app.text_input(key="teacher_key_input").set_value("open sesam").run()
    assert "That is not the teacher key." in app.sidebar.error[0].value
    app.text_input(key="teacher_key_input").set_value(KEY).run()
    assert "Teacher mode" in app.sidebar.success[0].value
    assert app.number_input(key="train_epochs_base").proto.max == classroom.TEACHER_LIMITS.max_epochs
    app.text_input(key="train_out_base").set_value("dropout")
    app.button[0].click().run()
    assert "dropout.keras exists: tick 'replace'" in app.error[0].value  # the teacher replaces on purpose only
    assert not list(runs.default_runs_dir().glob("*/status.json")), "nothing was started"


def test_without_a_teacher_key_on_the_server_there_is_no_teacher_mode(page_env):
    app = open_page()
    assert not [field for field in app.text_input if field.key == "teacher_key_input"]
    assert any("No teacher key is set on this server" in caption.value for caption in app.sidebar.caption)


def test_enter_in_a_field_does_not_start_training(page_env):
    """Issue 14: Enter in the Epochs box started training with the other edits ignored."""
    app = open_page()
    form = app.get("form")[0].proto.form
    assert form.form_id == "train_settings_base" and not form.enter_to_submit
    app.number_input(key="train_epochs_base").set_value(2).run()  # an edit alone starts nothing
    assert not list(runs.default_runs_dir().glob("*/status.json"))


@pytest.fixture
def no_cifar(page_env, tmp_path, monkeypatch):
    """No full CIFAR-10 anywhere: CIFAR10_DIR names a missing folder and Keras's cache is empty."""
    from cnn import data

    monkeypatch.setenv("CIFAR10_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setattr(data, "KERAS_CACHE", tmp_path / "no-keras-cache")
    assert data.find_data_dir() is None
    return page_env


def start_on_the_sample(app: AppTest, epochs: int, subset: int, val_size: int) -> Path:
    """Press Start with tiny settings on the sample page; the run folder."""
    assert any(
        "bundled sample of 1,000 test images" in warning.value and "not for real accuracy" in warning.value
        for warning in app.warning
    ), "the page says plainly that it trains on a sample"
    assert app.number_input(key="train_val_base").value == 200, "the sample's last 200 images validate"
    app.number_input(key="train_epochs_base").set_value(epochs)
    app.select_slider(key="train_batch_base").set_value(32)
    app.number_input(key="train_subset_base").set_value(subset)
    app.number_input(key="train_val_base").set_value(val_size)
    app.checkbox(key="train_bf16_base").uncheck()
    app.button[0].click().run()
    assert not app.exception, [exception.value for exception in app.exception]
    return runs.run_dir_for(app.query_params["run"])


def test_without_cifar10_the_page_trains_on_the_bundled_sample(no_cifar, busy_machine):
    """Issue 14: training was refused without the full data; now it uses the sample and says so."""
    app = open_page()
    run_dir = start_on_the_sample(app, epochs=2, subset=700, val_size=300)
    config = RunRequest.read(RunFiles(run_dir)).config
    assert config["use_sample"] is True and (config["subset"], config["val_size"]) == (700, 300)
    assert "--sample" in RunRequest.read(RunFiles(run_dir)).argv
    assert any("of the bundled 1,000-image sample" in text.value for text in app.markdown)
    jobs.cancel_run(run_dir)


def test_more_images_than_the_sample_holds_is_refused_plainly(no_cifar):
    app = open_page()
    app.number_input(key="train_subset_base").set_value(900)
    app.number_input(key="train_val_base").set_value(200)
    app.button[0].click().run()
    assert not app.exception
    assert any("more than the 1,000 images of the sample" in error.value for error in app.error)
    assert not list(runs.default_runs_dir().glob("*/status.json")), "nothing was started"


@pytest.mark.slow
def test_a_worker_trains_on_the_sample_when_cifar10_is_absent(no_cifar):
    app = open_page()
    run_dir = start_on_the_sample(app, epochs=1, subset=64, val_size=32)
    final = poll(app, run_dir, lambda state: not state.active)
    assert final.state == "finished", jobs.log_tail(run_dir)
    sidecar = json.loads((no_cifar / f"{run_dir.name}.json").read_text())
    assert sidecar["data"]["source"].startswith("bundled sample")
    assert (sidecar["metrics"]["val_images"], sidecar["metrics"]["train_images"]) == (32, 64)
