"""Training jobs for the dashboard: a worker process per run, one run per zoo model, state from files.

A job is `python -m cnn train ...` (the same code as the command line) started
in its own session, its output going to `worker.log` in the run folder. The
page never trains: it reads the run folder (see `cnn.training`) and the small
`job.json` written here, so a browser reload, a second tab or a restarted
server all see the same run. Starting takes an exclusive lock per zoo model
(`<runs>/.locks/MODEL.lock`, created with O_EXCL, holding the worker's pid);
a lock whose process is gone is stale and is taken over.

No Streamlit here: the functions are usable from Python and tested without a UI.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from cnn.artifacts import PROJECT_ROOT, atomic_write_text, default_models_dir
from cnn.errors import TrainingError, UserError
from cnn.training import RunFiles, TrainConfig, read_history, read_json, request_stop, write_status

STATES = ("idle", "running", "stopping", "stopped", "finished", "failed", "killed")
ACTIVE_STATES = ("running", "stopping")
CLASSROOM_SUFFIX = "_classroom"  # models/<zoo>_classroom.keras: scratch outputs a classroom run may replace
OUTPUT_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
LOG_NAME = "worker.log"
JOB_NAME = "job.json"
SPEC_NAME = "spec.json"  # a Build-page model's layer list, read by the worker (`train --spec`)
STARTING_MESSAGE = "starting: loading TensorFlow and the data"
NOT_STARTED_MESSAGE = "Stopped before training began: nothing new was trained or saved."
LOG_TAIL_BYTES = 16_384  # enough of the log's end to find the final line or the error
# The TrainConfig fields the command line sets; the others always come from the zoo recipe.
CLI_FIELDS = ("epochs", "batch_size", "learning_rate", "augment", "subset", "val_size", "seed", "data_dir",
              "mixed_precision")

# Workers this process started, so finished ones are reaped (a zombie still looks alive to kill(pid, 0)).
_CHILDREN: dict[int, subprocess.Popen] = {}


def default_runs_dir() -> Path:
    """`CNN_RUNS_DIR` when set, else the project's `runs/` folder."""
    return Path(os.environ.get("CNN_RUNS_DIR", PROJECT_ROOT / "runs"))


def classroom_run_dir(model: str, runs_dir: Path | None = None) -> Path:
    """The run folder of the dashboard's runs of zoo model `model`."""
    return Path(runs_dir or default_runs_dir()) / f"classroom-{model}"


def output_path(name: str, models_dir: Path | None = None) -> Path:
    """`models/NAME.keras` for a user-chosen output name (letters, digits, _ and -; at most 64)."""
    if not OUTPUT_NAME.fullmatch(name or ""):
        raise UserError(f"The model name {name!r} may use only letters, digits, _ and - (at most 64 characters).")
    return Path(models_dir or default_models_dir()) / f"{name}.keras"


def default_output_name(model: str) -> str:
    return f"{model}{CLASSROOM_SUFFIX}"


def would_overwrite(out_path: Path) -> bool:
    """True when saving to `out_path` replaces a model that is not a classroom scratch output."""
    out_path = Path(out_path)
    return out_path.exists() and not out_path.stem.endswith(CLASSROOM_SUFFIX)


# ---------------------------------------------------------------- processes and the lock


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks (Linux), to tell a reused pid from ours."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has exited
        return -1
    return int(fields[19])


def _alive(pid: int | None, start_ticks: int | None = None) -> bool:
    """Whether process `pid` still runs (and is the same process, when its start time is known)."""
    if not pid:
        return False
    child = _CHILDREN.get(pid)
    if child is not None and child.poll() is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    ticks = _start_ticks(pid)
    if ticks == -1:
        return False
    return start_ticks is None or ticks is None or ticks == start_ticks


def _lock_path(run_dir: Path, model: str) -> Path:
    return run_dir.parent / ".locks" / f"{model}.lock"


def _read_lock(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _take_lock(path: Path, model: str) -> None:
    """Create the lock file exclusively; a stale one (its process is gone) is replaced once."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            descriptor = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _read_lock(path)
            being_written = not holder and time.time() - _mtime(path) < 5  # another starter, mid-write
            if being_written or _alive(holder.get("pid"), holder.get("start_ticks")):
                raise TrainingError(
                    f"{model} is already training (process {holder.get('pid', '?')}, run folder "
                    f"{holder.get('run_dir', '?')}): stop it first or wait until it ends."
                ) from None
            path.unlink(missing_ok=True)  # stale: its worker is gone
            continue
        with os.fdopen(descriptor, "w") as handle:
            json.dump({"pid": os.getpid(), "start_ticks": _start_ticks(os.getpid())}, handle)
        return
    raise TrainingError(f"Could not take the training lock {path}: another start is in progress.")


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


# ---------------------------------------------------------------- starting and stopping


def worker_command(config: TrainConfig, out_path: Path, run_dir: Path, *, resume: bool = False) -> list[str]:
    """The `python -m cnn train` command line that trains `config` (refuses settings the CLI cannot pass)."""
    recipe = TrainConfig.for_model(config.model, spec=config.spec)
    fixed = [field.name for field in dataclasses.fields(TrainConfig) if field.name not in CLI_FIELDS + ("model",)
             and getattr(config, field.name) != getattr(recipe, field.name)]
    if fixed:
        raise UserError(f"A dashboard run keeps the zoo recipe's {', '.join(fixed)}; change them in cnn/models.py.")
    command = [sys.executable, "-m", "cnn", "train", "--model", config.model, "--epochs", str(config.epochs),
               "--batch-size", str(config.batch_size), "--learning-rate", repr(float(config.learning_rate)),
               "--augment" if config.augment else "--no-augment", "--val-size", str(config.val_size),
               "--seed", str(config.seed), "--out", str(out_path), "--run-dir", str(run_dir)]
    if config.subset is not None:
        command += ["--subset", str(config.subset)]
    if config.spec is not None:  # a Build-page model: start_run writes its spec into the run folder
        command += ["--spec", str(run_dir / SPEC_NAME)]
    if config.data_dir:
        command += ["--data-dir", str(config.data_dir)]
    if not config.mixed_precision:
        command.append("--no-mixed-precision")
    if resume:
        command.append("--resume")
    return command


def start_run(config: TrainConfig, out_path: str | os.PathLike, run_dir: str | os.PathLike, *,
              resume: bool = False, overwrite: bool = False) -> int:
    """Start a worker that trains `config` in `run_dir` and saves to `out_path`; returns its pid.

    Args:
        config: the run's settings (the zoo recipe plus the command line's settings).
        out_path: the `.keras` file to save to (its sidecar goes beside it).
        run_dir: the run folder; a fresh start clears its history and checkpoint.
        resume: continue the run folder's checkpoint and history.
        overwrite: allow replacing an existing model that is not a classroom output.

    Raises:
        TrainingError: the model is already training, or there is nothing to resume.
        UserError: the output would replace a model without `overwrite`, or bad settings.
    """
    out_path, run_dir = Path(out_path), Path(run_dir)
    files = RunFiles(run_dir)
    if out_path.suffix != ".keras":
        raise UserError(f"The output must be a .keras file, not {out_path.name!r}.")
    may_replace = overwrite or not would_overwrite(out_path)  # this run may write its output again on resume
    if not may_replace:
        raise UserError(f"{out_path.name} already exists and is not a classroom model: tick "
                        "'overwrite' to replace it, or choose another name.")
    if resume and not files.checkpoint.exists():
        raise TrainingError(f"There is no checkpoint in {run_dir} to resume: start a new run.")
    command = worker_command(config, out_path, run_dir, resume=resume)
    lock = _lock_path(run_dir, config.model)
    _take_lock(lock, config.model)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        files.stop_flag.unlink(missing_ok=True)
        history_rows = read_history(files.history) if resume else []
        if not resume:
            for stale in (files.history, files.checkpoint, files.state):
                stale.unlink(missing_ok=True)
        if config.spec is not None:
            atomic_write_text(run_dir / SPEC_NAME, json.dumps(config.spec))
        with (run_dir / LOG_NAME).open("w") as log:
            log.write(f"$ {' '.join(command[1:])}\n")
            log.flush()
            environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1"}
            worker = subprocess.Popen(command, cwd=PROJECT_ROOT, stdin=subprocess.DEVNULL, stdout=log,
                                      stderr=subprocess.STDOUT, env=environment, start_new_session=True)
    except BaseException:
        lock.unlink(missing_ok=True)
        raise
    _CHILDREN[worker.pid] = worker
    ticks = _start_ticks(worker.pid)
    job = {"pid": worker.pid, "start_ticks": ticks, "model": config.model, "config": config.to_dict(),
           "out_path": str(out_path), "overwrite": may_replace, "resume": resume, "started": time.time(),
           "command": command[1:]}
    atomic_write_text(run_dir / JOB_NAME, json.dumps(job))
    # The worker needs seconds to import TensorFlow: say "running" now, so no poller sees the old state.
    atomic_write_text(files.status, json.dumps({
        "state": "running", "pid": worker.pid, "model": config.model, "epoch": len(history_rows),
        "epochs": config.epochs, "batch": 0, "batches": 0, "message": STARTING_MESSAGE,
        "config": config.to_dict(), "updated": time.time()}))
    atomic_write_text(lock, json.dumps({"pid": worker.pid, "start_ticks": ticks, "run_dir": str(run_dir)}))
    return worker.pid


def resume_run(run_dir: str | os.PathLike) -> int:
    """Continue the run in `run_dir` with the settings, output and overwrite choice it was started with."""
    job = read_json(Path(run_dir) / JOB_NAME, "job record")
    if not job.get("config"):
        raise TrainingError(f"{run_dir} has no job record: start a new run instead.")
    config = TrainConfig(**job["config"])
    return start_run(config, job["out_path"], run_dir, resume=True, overwrite=bool(job.get("overwrite")))


def stop_run(run_dir: str | os.PathLike) -> None:
    """Ask the worker in `run_dir` to stop after its current batch; it keeps its history and checkpoint.

    A worker still starting up (importing TensorFlow, reading the data) would delete the STOP
    flag as stale when its training begins, so it is ended now instead: it has trained nothing.
    """
    run_dir = Path(run_dir)
    request_stop(run_dir)
    files = RunFiles(run_dir)
    status = read_json(files.status, "run status")
    if status.get("message") != STARTING_MESSAGE:
        return
    job = read_json(run_dir / JOB_NAME, "job record")
    pid = status.get("pid")
    if _alive(pid, job.get("start_ticks") if job.get("pid") == pid else None):
        try:
            os.killpg(pid, signal.SIGTERM)  # the worker leads its own session (start_new_session)
        except (ProcessLookupError, PermissionError):
            pass
        child = _CHILDREN.get(pid)
        if child is not None:
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                pass
    write_status(files, state="stopped", message=NOT_STARTED_MESSAGE)


# ---------------------------------------------------------------- reading a run


@dataclass(frozen=True)
class RunState:
    """What a run folder says about its run, with a dead worker detected ("killed")."""

    state: str  # one of STATES
    epoch: int = 0  # finished epochs
    epochs: int = 0  # epochs asked for
    batch: int = 0  # batches done in the current epoch
    batches: int = 0  # batches per epoch
    message: str = ""
    history: tuple[dict, ...] = ()
    model: str | None = None
    pid: int | None = None
    out_path: str | None = None
    config: dict | None = None
    can_resume: bool = False  # a checkpoint exists to continue from

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @property
    def progress(self) -> float:
        """Share of the whole run done, counting batches of the current epoch."""
        if not self.epochs:
            return 0.0
        partial = self.batch / self.batches if self.batches and self.state in ACTIVE_STATES else 0.0
        return min(1.0, (self.epoch + min(partial, 1.0)) / self.epochs)


def run_state(run_dir: str | os.PathLike) -> RunState:
    """The state of the run in `run_dir` (TrainingError when its history or status file is corrupt)."""
    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    status = read_json(files.status, "run status")
    if not status:
        return RunState("idle")
    job = read_json(run_dir / JOB_NAME, "job record")
    history = tuple(read_history(files.history))
    pid = status.get("pid") or job.get("pid")
    start_ticks = job.get("start_ticks") if job.get("pid") == pid else None
    alive = _alive(pid, start_ticks)
    state, message = _classify(str(status.get("state", "idle")), str(status.get("message") or ""), alive,
                               files, run_dir)
    return RunState(
        state=state, epoch=len(history) if history else int(status.get("epoch", 0)),
        epochs=int(status.get("epochs", 0)), batch=int(status.get("batch") or 0),
        batches=int(status.get("batches") or 0), message=message, history=history,
        model=status.get("model"), pid=pid, out_path=job.get("out_path"),
        config=status.get("config") or job.get("config"),
        can_resume=files.checkpoint.exists() and state not in ACTIVE_STATES,
    )


def _classify(written: str, written_message: str, alive: bool, files: RunFiles, run_dir: Path) -> tuple[str, str]:
    """The real state from what status.json says, whether the worker lives, and the log's end."""
    if alive:
        if files.stop_flag.exists():
            return "stopping", "Stopping after the current batch; the checkpoint is kept."
        if written in ("finished", "stopped"):
            return "running", "Training done: measuring validation accuracy and saving the model."
        return "running", written_message
    outcome, line = _log_outcome(run_dir / LOG_NAME)
    if outcome == "failed":
        return "failed", line
    if outcome in ("finished", "stopped"):
        return outcome, line
    if written in ("running", "stopping"):
        return "killed", ("The worker process ended without finishing (killed or crashed); "
                          "Resume continues from the last finished epoch.")
    if written_message == NOT_STARTED_MESSAGE:
        return "stopped", written_message
    if written in ("finished", "stopped"):
        return "killed", "The worker ended before saving the model; Resume saves it."
    return written if written in STATES else "failed", ""


def _log_outcome(path: Path) -> tuple[str, str]:
    """("finished"|"stopped"|"failed"|"", the deciding line) from the end of a worker log."""
    lines = [line.strip() for line in _tail(path).splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("finished:"):
            return "finished", line
        if line.startswith("stopped early:"):
            return "stopped", line
        if line.startswith("error:"):
            return "failed", line.removeprefix("error:").strip()
    if any(line.startswith("Traceback") for line in lines):
        return "failed", f"The worker crashed: {lines[-1]}"
    return "", ""


def log_tail(run_dir: str | os.PathLike, lines: int = 20) -> str:
    """The last `lines` lines of the worker's log (for a 'details' box)."""
    return "\n".join(_tail(Path(run_dir) / LOG_NAME).splitlines()[-lines:])


def _tail(path: Path) -> str:
    """The last LOG_TAIL_BYTES of a log file as text ("" when there is none)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - LOG_TAIL_BYTES))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""


def active_runs(runs_dir: Path | None = None) -> list[tuple[Path, RunState]]:
    """Every run folder under `runs_dir` whose worker is running now."""
    found = []
    for folder in sorted(Path(runs_dir or default_runs_dir()).glob("*/")):
        try:
            state = run_state(folder)
        except UserError:
            continue
        if state.active:
            found.append((folder, state))
    return found


def wait_until_done(run_dir: str | os.PathLike, timeout_s: float = 300, poll_s: float = 0.2) -> RunState:
    """Poll until the run is no longer active (for scripts and tests); TrainingError on timeout."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = run_state(run_dir)
        if not state.active:
            return state
        time.sleep(poll_s)
    raise TrainingError(f"The run in {run_dir} did not end within {timeout_s:.0f} s.")
