"""cnn.runs: the run folder's locks hold across processes, and its state is read from what the worker wrote."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnn import jobs, runs
from cnn.errors import TrainingError
from cnn.runs import RunFiles, RunRequest
from tests.helpers_cli import cnn_command, train_argv

ROOT = Path(__file__).resolve().parent.parent
HOLD_LOCKS = (
    "import sys, time; from cnn import runs; runs.acquire_locks(sys.argv[1], sys.argv[2]); "
    "print('held', flush=True); time.sleep(600)"
)


def test_a_run_folder_and_an_output_have_one_holder_at_a_time(tmp_path):
    out = tmp_path / "models" / "m.keras"
    with runs.acquire_locks(tmp_path / "run", out):
        with pytest.raises(
            TrainingError,
            match=r"^The run folder run/ is in use by another training \(process \d+\): "
            r"wait until it ends, or stop it first\.$",
        ):
            runs.acquire_locks(tmp_path / "run", tmp_path / "models" / "other.keras")
        with pytest.raises(TrainingError, match="m.keras is being written by another training run"):
            runs.acquire_locks(tmp_path / "other_run", out)
        # The same file by another spelling of its path is the same lock.
        with pytest.raises(TrainingError, match="m.keras is being written"):
            runs.acquire_locks(tmp_path / "third_run", tmp_path / "models" / ".." / "models" / "m.keras")
        assert runs.lock_held(RunFiles(tmp_path / "run").lock)
        assert not runs.lock_held(RunFiles(tmp_path / "other_run").lock), "a refused start holds nothing"
    runs.acquire_locks(tmp_path / "run", out).release()


def test_the_locks_go_with_a_killed_process(tmp_path):
    out = tmp_path / "models" / "m.keras"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCKS, str(tmp_path / "run"), str(out)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(TrainingError, match=f"in use by another training \\(process {holder.pid}\\)"):
            runs.acquire_locks(tmp_path / "run", out)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait()
    assert not runs.lock_held(RunFiles(tmp_path / "run").lock)
    runs.acquire_locks(tmp_path / "run", out).release()  # no stale lock to clean up


def test_a_worker_accepts_only_the_locks_of_its_own_run(tmp_path, monkeypatch):
    out = tmp_path / "m.keras"
    locks = runs.acquire_locks(tmp_path / "run", out)
    try:
        monkeypatch.setenv(runs.LOCK_FDS_ENV, ",".join(map(str, locks.descriptors)))
        with pytest.raises(TrainingError, match="not the lock of"):
            runs.inherited_locks(tmp_path / "another_run", out)
        monkeypatch.setenv(runs.LOCK_FDS_ENV, ",".join(map(str, locks.descriptors)))
        adopted = runs.inherited_locks(tmp_path / "run", out)
        assert adopted.descriptors == locks.descriptors and runs.LOCK_FDS_ENV not in os.environ
        unlocked = os.open(tmp_path / "plain", os.O_RDWR | os.O_CREAT)
        monkeypatch.setenv(runs.LOCK_FDS_ENV, f"{unlocked},{locks.descriptors[1]}")
        with pytest.raises(TrainingError, match="not the lock of"):
            runs.inherited_locks(tmp_path / "run", out)
        os.close(unlocked)
    finally:
        locks.release()
    assert runs.inherited_locks(tmp_path / "run", out) is None  # a shell command: it takes its own


def write_run(folder: Path, status: dict, *, history=(), checkpoint=False) -> RunFiles:
    """A run folder as a worker leaves it."""
    files = RunFiles(folder)
    folder.mkdir(parents=True, exist_ok=True)
    RunRequest(config={"model": "base", "epochs": 2}, out_path=str(folder / "m.keras"), owner="me").write(files)
    files.status.write_text(json.dumps({"model": "base", "epochs": 2, **status}))
    files.history.write_text("".join(json.dumps(row) + "\n" for row in history))
    if checkpoint:
        files.checkpoint.write_bytes(b"checkpoint")
    return files


@pytest.mark.parametrize(
    "written, alive, checkpoint, expected, resumable",
    [
        ("finished", False, True, "finished", False),  # a finished run offers no Resume
        ("stopped", False, True, "stopped", True),
        ("failed", False, False, "failed", False),
        ("cancelled", False, False, "cancelled", False),
        ("running", False, False, "killed", True),  # killed in epoch 1: Resume starts it again
        ("running", False, True, "killed", True),
        ("saving", False, True, "killed", True),  # died before the model was saved
        ("running", True, True, "running", False),
        ("queued", True, False, "queued", False),
        ("saving", True, True, "saving", False),
    ],
)
def test_the_state_is_what_the_worker_wrote_and_whether_it_lives(
    tmp_path, written, alive, checkpoint, expected, resumable
):
    files = write_run(tmp_path / "run", {"state": written, "message": "as written"}, checkpoint=checkpoint)
    locks = runs.acquire_locks(files.folder, tmp_path / "m.keras") if alive else None
    try:
        state = runs.run_state(files.folder)
    finally:
        if locks:
            locks.release()
    assert (state.state, state.can_resume) == (expected, resumable)
    assert state.message == (runs.KILLED_MESSAGE if expected == "killed" else "as written")
    assert state.owner == "me" and state.out_path.endswith("m.keras")


def test_a_stop_request_shows_as_stopping_and_a_partial_epoch_is_not_a_finished_one(tmp_path):
    rows = [{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.9, "partial_batches": 3}]
    files = write_run(tmp_path / "run", {"state": "running"}, history=rows, checkpoint=True)
    with runs.acquire_locks(files.folder, tmp_path / "m.keras"):
        runs.request_stop(files.folder)
        assert runs.run_state(files.folder).state == "stopping"
    files.status.write_text(json.dumps({"state": "stopped", "epochs": 2, "message": "stopped"}))
    state = runs.run_state(files.folder)
    assert state.epoch == 1 and state.partial_last_epoch and state.can_resume


def test_corrupt_run_files_give_a_clear_error(tmp_path):
    files = write_run(tmp_path / "run", {"state": "stopped", "epoch": 1, "epochs": 3})
    files.history.write_text('{"epoch": 1, "loss": 2.0}\n{"epoch": 2, "lo')
    with pytest.raises(TrainingError, match="line 2 is not valid JSON: the history file is corrupt"):
        runs.run_state(files.folder)
    files.status.write_text("{half")
    with pytest.raises(TrainingError, match="status.json is corrupt"):
        runs.run_state(files.folder)
    files.status.write_text("{}")
    files.config.write_text("[]")
    with pytest.raises(TrainingError, match="config.json is corrupt: the run configuration is not a JSON object"):
        RunRequest.read(files)
    files.config.write_text('{"config": 3}')
    with pytest.raises(TrainingError, match="has no run configuration"):
        RunRequest.read(files)


def test_a_crash_is_recorded_by_the_worker_itself(tmp_path):
    files = RunFiles(tmp_path / "run")
    files.folder.mkdir()
    with pytest.raises(ZeroDivisionError):
        with runs.WorkerRecord(files):
            1 / 0
    status = json.loads(files.status.read_text())
    assert status["state"] == "failed"
    assert status["message"] == "The worker crashed: ZeroDivisionError: division by zero"
    with pytest.raises(TrainingError):
        with runs.WorkerRecord(files):
            raise TrainingError("The loss became NaN.")
    assert json.loads(files.status.read_text())["message"] == "The loss became NaN."


def cli_train(tmp_path, synthetic_cifar, run_dir: Path, out: Path) -> subprocess.Popen:
    options = ("--epochs", "2", "--batch-size", "16", "--subset", "100", "--out", str(out))
    command = cnn_command(*train_argv(synthetic_cifar, run_dir, *options))
    env = {**os.environ, "CNN_RUNS_DIR": str(tmp_path / "runs"), jobs.MAX_WORKERS_ENV: "1"}
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_two_trainings_of_the_same_run_or_output_never_both_run(tmp_path, synthetic_cifar, monkeypatch):
    """Before: two `python -m cnn train` of one model both ran and wrote a history of epochs [1, 1, 2, 2]."""
    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    monkeypatch.setenv(jobs.MAX_WORKERS_ENV, "1")
    run_dir, out = tmp_path / "runs" / "m", tmp_path / "models" / "m.keras"
    # Hold the machine's only training slot, so the first command surely waits (holding its locks) meanwhile.
    jobs.queue_dir().mkdir(parents=True)
    slot = os.open(jobs.queue_dir() / "slot-0.lock", os.O_RDWR | os.O_CREAT)
    fcntl.flock(slot, fcntl.LOCK_EX)
    first = cli_train(tmp_path, synthetic_cifar, run_dir, out)
    try:
        deadline = time.monotonic() + 300
        while runs.run_state(run_dir).state != "queued":
            assert time.monotonic() < deadline and first.poll() is None, first.communicate()
            time.sleep(0.1)
        same_run = cli_train(tmp_path, synthetic_cifar, run_dir, out)
        same_output = cli_train(tmp_path, synthetic_cifar, tmp_path / "runs" / "other", out)
        for second, message in (
            (same_run, "The run folder m/ is in use by another training"),
            (same_output, "m.keras is being written by another training run"),
        ):
            stdout, stderr = second.communicate(timeout=600)
            assert second.returncode == 2, (stdout, stderr)
            assert stderr.strip() == f"error: {message} (process {first.pid}): wait until it ends, or stop it first."
        assert first.poll() is None, "the first run was still waiting while the others were refused"
    finally:
        os.close(slot)  # the first may train now
    stdout, stderr = first.communicate(timeout=600)
    assert first.returncode == 0, stderr[-2000:]
    assert [row["epoch"] for row in runs.read_history(RunFiles(run_dir).history)] == [1, 2]
    assert runs.run_state(run_dir).state == "finished"
    assert not (tmp_path / "runs" / "other" / "status.json").exists(), "a refused run touched nothing"


def test_the_worker_command_refuses_what_it_cannot_run(tmp_path, capsys, monkeypatch):
    from cnn.__main__ import main

    monkeypatch.setenv("CNN_RUNS_DIR", str(tmp_path / "runs"))
    for argv, message in (
        (["train", "--job", str(tmp_path / "nothing")], "has no run configuration (config.json)"),
        (["train", "--job", str(tmp_path), "--epochs", "3"], "give it no other training settings (got --epochs)"),
        (["train", "--job", str(tmp_path), "--batch-size", "64"], "(got --batch-size)"),
        (["train", "--job", str(tmp_path), "--no-augment"], "(got --augment)"),
        (["train", "--job", str(tmp_path), "--flip", "random"], "(got --flip)"),
        (["train", "--job", str(tmp_path), "--seed", "0"], "(got --seed)"),
        (["train", "--job", str(tmp_path), "--no-mixed-precision"], "(got --mixed-precision)"),
        (["train", "--job", str(tmp_path), "--sample"], "(got --sample)"),
        (["train", "--job", str(tmp_path), "--resume"], "(got --resume)"),
        (["train", "--epochs", "3"], "train needs --model NAME (or --job RUN_DIR)."),
    ):
        assert main(argv) == 2
        error = capsys.readouterr().err.strip()
        assert error.startswith("error: ") and message in error and "\n" not in error
