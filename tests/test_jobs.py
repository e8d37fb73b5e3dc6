"""cnn.jobs: the worker process, its lock and its file protocol (finish, refuse, kill, resume, corrupt files)."""

import json
import os
import signal
import time

import pytest

from cnn import jobs
from cnn.artifacts import list_models
from cnn.errors import TrainingError, UserError
from cnn.training import TrainConfig


def tiny(epochs=2, **overrides):
    """Settings that train `base` in a second or two on the synthetic data."""
    settings = dict(epochs=epochs, batch_size=16, subset=100, val_size=20, mixed_precision=False)
    settings.update(overrides)
    return TrainConfig.for_model("base", **settings)


def wait_for(condition, run_dir, timeout_s=120):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = jobs.run_state(run_dir)
        if condition(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"timed out; last state {jobs.run_state(run_dir)}\n{jobs.log_tail(run_dir)}")


@pytest.fixture
def cifar_env(synthetic_cifar, monkeypatch, models_dir, tmp_path):
    """Workers inherit the environment: synthetic data, a temporary models folder and runs folder."""
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    return models_dir


def test_a_run_finishes_saves_its_model_and_refuses_a_second_start(cifar_env):
    run_dir = jobs.classroom_run_dir("base")
    out = jobs.output_path(jobs.default_output_name("base"), cifar_env)
    assert jobs.run_state(run_dir).state == "idle"
    pid = jobs.start_run(tiny(), out, run_dir)
    assert jobs.run_state(run_dir).state == "running"
    with pytest.raises(TrainingError, match="base is already training"):
        jobs.start_run(tiny(), out, jobs.classroom_run_dir("base") / ".." / "other")
    assert [folder.name for folder, _ in jobs.active_runs()] == ["classroom-base"]
    state = jobs.wait_until_done(run_dir, timeout_s=120)
    assert state.state == "finished", (state, jobs.log_tail(run_dir))
    assert [row["epoch"] for row in state.history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(state.history[0])
    assert state.progress == 1.0 and not jobs._alive(pid)
    saved = {record["name"]: record for record in list_models(cifar_env)}
    assert saved["base_classroom"]["history"] == list(state.history)
    jobs._take_lock(jobs._lock_path(run_dir, "base"), "base")  # the finished worker's lock is stale


def test_a_killed_worker_is_detected_and_resume_loses_at_most_one_epoch(cifar_env):
    run_dir = jobs.classroom_run_dir("base")
    out = jobs.output_path("killed_run", cifar_env)
    pid = jobs.start_run(tiny(epochs=200, batch_size=8), out, run_dir)
    wait_for(lambda state: len(state.history) >= 2, run_dir)
    os.kill(pid, signal.SIGKILL)
    state = wait_for(lambda state: not state.active, run_dir, timeout_s=10)
    assert state.state == "killed" and "Resume" in state.message and state.can_resume
    epochs_before = len(state.history)
    checkpointed = json.loads((run_dir / "state.json").read_text())["epoch"]
    assert checkpointed >= epochs_before - 1  # at most one epoch is lost

    jobs.start_run(tiny(epochs=checkpointed + 1, batch_size=8), out, run_dir, resume=True)
    state = jobs.wait_until_done(run_dir)
    assert state.state == "finished", jobs.log_tail(run_dir)
    assert [row["epoch"] for row in state.history] == list(range(1, checkpointed + 2))
    assert out.exists() and out.with_suffix(".json").exists()


def test_stop_while_the_worker_starts_up_ends_it(cifar_env):
    run_dir = jobs.classroom_run_dir("base")
    pid = jobs.start_run(tiny(epochs=50), jobs.output_path("early_stop", cifar_env), run_dir)
    jobs.stop_run(run_dir)  # the worker is still importing TensorFlow: it would miss the STOP flag
    state = jobs.wait_until_done(run_dir, timeout_s=30)
    assert state.state == "stopped" and state.message == jobs.NOT_STARTED_MESSAGE and not jobs._alive(pid)
    assert not state.can_resume  # a fresh run that never trained has no checkpoint


def test_stale_lock_of_a_dead_process_is_taken_over(cifar_env, tmp_path):
    lock = jobs._lock_path(jobs.classroom_run_dir("base"), "base")
    lock.parent.mkdir(parents=True)
    lock.write_text(json.dumps({"pid": 2**22 + 12345, "run_dir": "gone"}))  # no such process
    old = time.time() - 60
    os.utime(lock, (old, old))
    jobs._take_lock(lock, "base")
    assert json.loads(lock.read_text())["pid"] == os.getpid()
    with pytest.raises(TrainingError, match="already training"):
        jobs._take_lock(lock, "base")  # held by a live process (this one)


def test_corrupt_history_gives_a_clear_error(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "status.json").write_text(json.dumps({"state": "stopped", "epoch": 1, "epochs": 3}))
    (run_dir / "history.jsonl").write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "lo')
    with pytest.raises(TrainingError, match="line 2 is not valid JSON: the history file is corrupt"):
        jobs.run_state(run_dir)
    (run_dir / "status.json").write_text("{half")
    with pytest.raises(TrainingError, match="status.json is corrupt"):
        jobs.run_state(run_dir)


def test_failure_message_comes_from_the_worker_log(cifar_env):
    run_dir = jobs.classroom_run_dir("base")
    jobs.start_run(tiny(subset=100_000), jobs.output_path("too_big", cifar_env), run_dir)
    state = jobs.wait_until_done(run_dir)
    assert state.state == "failed" and "subset 100000 is larger than" in state.message


def test_shipped_models_and_odd_names_are_protected(cifar_env, tmp_path):
    shipped = cifar_env / "base.keras"
    shipped.write_bytes(b"a shipped model")
    with pytest.raises(UserError, match="tick 'overwrite'"):
        jobs.start_run(tiny(), shipped, tmp_path / "runs" / "x")
    assert jobs.would_overwrite(shipped) and not jobs.would_overwrite(cifar_env / "base_classroom.keras")
    for bad in ("../escape", "a b", "", "x" * 65):
        with pytest.raises(UserError, match="only letters"):
            jobs.output_path(bad, cifar_env)
    with pytest.raises(TrainingError, match="no checkpoint"):
        jobs.start_run(tiny(), cifar_env / "new.keras", tmp_path / "runs" / "empty", resume=True)
    with pytest.raises(UserError, match="keeps the zoo recipe's optimizer"):
        jobs.worker_command(TrainConfig(model="base", optimizer="sgd_nesterov"), cifar_env / "m.keras", tmp_path)


def test_the_worker_command_is_the_cli(tmp_path):
    command = jobs.worker_command(tiny(augment=True), tmp_path / "m.keras", tmp_path / "run", resume=True)
    assert command[1:4] == ["-m", "cnn", "train"]
    from cnn.__main__ import build_parser

    args = build_parser().parse_args(command[3:])
    assert (args.model, args.epochs, args.batch_size, args.subset, args.val_size) == ("base", 2, 16, 100, 20)
    assert args.augment is True and args.resume and args.no_mixed_precision
