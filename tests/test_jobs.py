"""cnn.jobs: worker processes and the machine's training queue (one at a time, in order, cancellable)."""

import json
import os
import signal
import time

import pytest

from cnn import jobs, runs
from cnn.artifacts import list_models
from cnn.errors import TrainingError, UserError
from cnn.runs import RunFiles, RunRequest
from cnn.training import TrainConfig

LOADED_MACHINE_S = 600  # a worker imports TensorFlow first: over a minute on a busy 2-core machine


def tiny(epochs=2, **overrides):
    """Settings that train `base` in a second or two on the synthetic data."""
    settings = dict(epochs=epochs, batch_size=16, subset=100, val_size=20, mixed_precision=False)
    settings.update(overrides)
    return TrainConfig.for_model("base", **settings)


def request(config, out, **fields):
    return RunRequest(
        config=config.to_dict(), out_path=str(out), argv=jobs.equivalent_argv(config.to_dict(), out), **fields
    )


def wait_for(condition, run_dir, timeout_s=LOADED_MACHINE_S):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = jobs.run_state_in_queue(run_dir)
        if condition(state):
            return state
        time.sleep(0.2)
    raise AssertionError(f"timed out; last state {jobs.run_state_in_queue(run_dir)}\n{jobs.log_tail(run_dir)}")


@pytest.fixture
def cifar_env(synthetic_cifar, monkeypatch, models_dir, tmp_path):
    """Workers inherit the environment: synthetic data, temporary models and runs folders, one slot."""
    monkeypatch.setenv("CIFAR10_DIR", str(synthetic_cifar))
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv(jobs.MAX_WORKERS_ENV, "1")
    return models_dir


@pytest.mark.slow
def test_a_run_finishes_saves_its_model_and_refuses_a_second_start(cifar_env):
    out = cifar_env / "mine.keras"
    run_dir = runs.run_dir_for(out)
    assert jobs.run_state_in_queue(run_dir).state == "idle"
    jobs.start_run(request(tiny(), out, owner="me"), run_dir)
    assert jobs.run_state_in_queue(run_dir).active
    with pytest.raises(TrainingError, match="mine.keras is being written by another training run"):
        jobs.start_run(request(tiny(), out), run_dir.parent / "other")
    with pytest.raises(TrainingError, match="run folder mine/ is in use"):
        jobs.start_run(request(tiny(), cifar_env / "elsewhere.keras"), run_dir)
    assert [folder.name for folder, _ in jobs.active_runs()] == ["mine"]
    state = jobs.wait_until_done(run_dir, timeout_s=LOADED_MACHINE_S)
    assert state.state == "finished", (state, jobs.log_tail(run_dir))
    assert not state.can_resume, "a finished run offers no Resume"
    assert [row["epoch"] for row in state.history] == [1, 2]
    assert {"loss", "accuracy", "val_loss", "val_accuracy"} <= set(state.history[0])
    assert state.progress == 1.0 and state.slot_since <= state.ended
    saved = {record["name"]: record for record in list_models(cifar_env)}
    assert saved["mine"]["history"] == list(state.history) and saved["mine"]["made_by"] == "me"
    assert "--epochs 2" in saved["mine"]["command"]
    runs.acquire_locks(run_dir, out).release()  # the worker's locks went with it


@pytest.mark.slow
def test_a_killed_worker_is_detected_and_resume_loses_at_most_one_epoch(cifar_env):
    out = cifar_env / "killed_run.keras"
    run_dir = runs.run_dir_for(out)
    pid = jobs.start_run(request(tiny(epochs=200, batch_size=8), out), run_dir)
    wait_for(lambda state: len(state.history) >= 2, run_dir)
    os.kill(pid, signal.SIGKILL)
    state = wait_for(lambda state: not state.active, run_dir, timeout_s=10)
    assert state.state == "killed" and state.can_resume and state.has_checkpoint
    epochs_before = len(state.history)
    checkpointed = json.loads((run_dir / "state.json").read_text())["epoch"]
    assert checkpointed >= epochs_before - 1  # at most one epoch is lost

    jobs.start_run(request(tiny(epochs=checkpointed + 1, batch_size=8), out, resume=True), run_dir)
    state = jobs.wait_until_done(run_dir, timeout_s=LOADED_MACHINE_S)
    assert state.state == "finished", jobs.log_tail(run_dir)
    assert [row["epoch"] for row in state.history] == list(range(1, checkpointed + 2))
    assert out.exists() and out.with_suffix(".json").exists()


@pytest.mark.slow
def test_stop_while_the_worker_starts_up_trains_nothing(cifar_env):
    out = cifar_env / "early_stop.keras"
    run_dir = runs.run_dir_for(out)
    jobs.start_run(request(tiny(epochs=50), out), run_dir)
    assert jobs.stop_run(run_dir) in ("stopping", "cancelled")  # still importing, or even still in line
    state = jobs.wait_until_done(run_dir, timeout_s=LOADED_MACHINE_S)
    assert state.state in ("stopped", "cancelled") and not state.history, jobs.log_tail(run_dir)
    assert not state.can_resume and not out.exists()


@pytest.mark.slow
def test_the_worker_records_its_own_failure(cifar_env):
    out = cifar_env / "too_big.keras"
    run_dir = runs.run_dir_for(out)
    jobs.start_run(request(tiny(subset=100_000), out), run_dir)
    state = jobs.wait_until_done(run_dir, timeout_s=LOADED_MACHINE_S)
    assert state.state == "failed" and "subset 100000 is larger than" in state.message
    status = json.loads(RunFiles(run_dir).status.read_text())
    assert status["state"] == "failed" and "subset 100000" in status["message"]  # written by the worker itself


@pytest.mark.slow
def test_one_run_trains_at_a_time_in_order_and_a_cancelled_one_never_trains(cifar_env):
    """N=1: the 2nd and 3rd starts wait in line with their positions; cancelling the 3rd keeps it from training;
    the slots' times (recorded by the workers in their status files) never overlap."""
    names = ("first", "second", "third")
    outs = {name: cifar_env / f"{name}.keras" for name in names}
    folders = {name: runs.run_dir_for(outs[name]) for name in names}
    for name in names:  # at once: the line keeps the order of the requests, whichever worker starts first
        jobs.start_run(request(tiny(epochs=3, batch_size=8), outs[name]), folders[name])
    wait_for(lambda state: state.state in ("starting", "running"), folders["first"])
    # The position is read from the tickets; the worker's own message follows within a poll.
    wait_for(lambda state: state.queue_position == 1 and "1st in line" in state.message, folders["second"])
    wait_for(lambda state: state.queue_position == 2 and "2nd in line" in state.message, folders["third"])
    assert [ticket.run_dir.name for ticket in jobs.waiting()] == ["second", "third"]

    assert jobs.cancel_run(folders["third"])
    cancelled = wait_for(lambda state: not state.active, folders["third"], timeout_s=120)
    assert cancelled.state == "cancelled" and cancelled.message == jobs.CANCELLED_MESSAGE

    training_at_once = 0
    while any(jobs.run_state(folders[name]).active for name in ("first", "second")):
        states = [jobs.run_state(folders[name]) for name in ("first", "second")]
        training_at_once = max(training_at_once, sum(state.state in ("starting", "running") for state in states))
        time.sleep(0.1)
    first, second = (jobs.run_state(folders[name]) for name in ("first", "second"))
    assert first.state == second.state == "finished", jobs.log_tail(folders["second"])
    assert training_at_once == 1
    assert first.slot_since < first.ended <= second.slot_since < second.ended, "the two runs overlapped"
    third = jobs.run_state(folders["third"])
    assert third.slot_since is None and not third.history and not outs["third"].exists()


def test_the_line_is_ordered_by_request_time_and_drops_dead_workers(tmp_path, monkeypatch):
    """Tickets of live runs (their run lock held) keep their order; a ticket whose worker is gone is removed."""
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    tickets = jobs.queue_dir() / "tickets"
    tickets.mkdir(parents=True)
    held = []
    for number, name in enumerate(("a", "b", "dead")):
        run_dir = tmp_path / "runs" / name
        if name != "dead":
            held.append(runs.acquire_locks(run_dir, tmp_path / "models" / f"{name}.keras"))
        ticket = {"run_dir": str(run_dir), "host": os.uname()[1]}
        (tickets / f"{number:020d}-{name}.json").write_text(json.dumps(ticket))
    try:
        assert [ticket.run_dir.name for ticket in jobs.waiting()] == ["a", "b"]
        assert len(list(tickets.glob("*.json"))) == 2  # the dead worker's ticket is gone
        assert jobs.queue_position(tmp_path / "runs" / "b") == 2
        assert jobs.cancel_run(tmp_path / "runs" / "a") and not jobs.cancel_run(tmp_path / "runs" / "a")
        assert jobs.queue_position(tmp_path / "runs" / "b") == 1
    finally:
        for locks in held:
            locks.release()
    assert jobs.waiting() == []  # their workers are gone now


def test_worker_limit_comes_from_the_teacher_then_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.delenv(jobs.MAX_WORKERS_ENV, raising=False)
    assert jobs.max_workers() == max(1, (os.cpu_count() or 2) // 2)
    monkeypatch.setenv(jobs.MAX_WORKERS_ENV, "3")
    assert jobs.max_workers() == 3
    jobs.set_max_workers(2)
    assert jobs.max_workers() == 2
    monkeypatch.setenv(jobs.MAX_WORKERS_ENV, "many")
    (jobs.queue_dir() / "max_workers.json").unlink()
    with pytest.raises(UserError, match="whole number"):
        jobs.max_workers()
    with pytest.raises(UserError, match="1-64"):
        jobs.set_max_workers(0)
    assert [jobs.ordinal(n) for n in (1, 2, 3, 4, 11, 12, 13, 21, 22, 101)] == [
        "1st",
        "2nd",
        "3rd",
        "4th",
        "11th",
        "12th",
        "13th",
        "21st",
        "22nd",
        "101st",
    ]


def test_the_sidecar_command_is_the_cli(tmp_path):
    config = tiny(augment=True)
    argv = jobs.equivalent_argv(config.to_dict(), tmp_path / "m.keras")
    from cnn.__main__ import build_parser

    args = build_parser().parse_args(argv)
    assert (args.model, args.epochs, args.batch_size, args.subset, args.val_size) == ("base", 2, 16, 100, 20)
    assert args.augment is True and args.mixed_precision is False and args.out == str(tmp_path / "m.keras")


def test_a_run_on_the_sample_records_the_sample_flag_and_the_cli_reads_it(tmp_path):
    from cnn.__main__ import build_parser, train_request_from_flags

    argv = jobs.equivalent_argv(tiny(use_sample=True).to_dict(), tmp_path / "m.keras")
    assert "--sample" in argv, "the sidecar's command trains on the sample too"

    def request_of(arguments):
        args = build_parser().parse_args(arguments)
        args.argv = arguments  # as main() does
        return train_request_from_flags(args)[0]

    assert "--sample" in argv
    request = request_of(argv)
    assert request.config["use_sample"] is True and request.config["val_size"] == 20
    plain = request_of(["train", "--model", "base", "--sample", "--out", str(tmp_path / "s.keras")])
    assert plain.config["use_sample"] is True and plain.config["val_size"] == 200, "the sample's last 200 validate"
