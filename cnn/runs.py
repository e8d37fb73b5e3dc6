"""The one owner of a run folder: its files, its locks, its status, whether its worker lives, how it ended.

A run folder (`runs/NAME/`) holds:

    config.json      what to train (a RunRequest): written atomically by whoever starts the run
    status.json      what the worker is doing and how it ended: state, pid, progress, message
    history.jsonl    one line per finished epoch
    checkpoint.keras the model and its optimizer after the last finished epoch
    state.json       the checkpoint's epoch and the wall time so far
    STOP             anyone may create it: the worker stops after its current batch
    heartbeat        touched by the worker every HEARTBEAT_S seconds (liveness across machines)
    lock             flock'd exclusively by the process that owns the run, for the whole run
    worker.log       the worker's output, for people only: nothing ever parses it

Only the holder of the run's lock writes config.json, status.json, the history and the
checkpoint; everyone else creates STOP or reads. The holder also holds a lock keyed by
the resolved output file (`<models>/.locks/NAME.keras.lock`), so two runs never write
the same model. The locks are `fcntl.flock` locks: the kernel releases them when the
process dies, so there are no stale locks to clean up. A dashboard start takes both
locks, prepares the folder and hands them to its worker process (`inherited_locks`).

The worker records its own final state (finished, stopped, failed with its message,
cancelled); a reader that finds a non-final state and no live worker reports "killed".
No Streamlit and no TensorFlow here.
"""

from __future__ import annotations

import dataclasses
import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from cnn.artifacts import PROJECT_ROOT, atomic_write_text
from cnn.errors import TrainingError, UserError

# What status.json says. The worker writes all but "idle" (no run yet), "stopping" and "killed" (both
# derived by readers: a live worker with a STOP request, a dead worker whose state was not final).
STATES = (
    "idle",
    "queued",
    "starting",
    "running",
    "stopping",
    "saving",
    "finished",
    "stopped",
    "failed",
    "cancelled",
    "killed",
)
ACTIVE_STATES = ("queued", "starting", "running", "stopping", "saving")
FINAL_STATES = ("finished", "stopped", "failed", "cancelled")
HEARTBEAT_S = 2.0  # how often a worker touches its heartbeat file
HEARTBEAT_STALE_S = 60.0  # a worker on another machine is presumed dead after this long without one
LOCK_TRIES = 5  # attempts 20 ms apart before a lock counts as taken (see lock_held's probe)
LOCK_FDS_ENV = "CNN_RUN_LOCK_FDS"  # file descriptors of the locks a starter hands to its worker
NOT_STARTED_MESSAGE = "Stopped before training began: nothing new was trained or saved."
KILLED_MESSAGE = "The worker process ended without finishing (killed or crashed)."


def default_runs_dir() -> Path:
    """`CNN_RUNS_DIR` when set, else the project's `runs/` folder."""
    return Path(os.environ.get("CNN_RUNS_DIR", PROJECT_ROOT / "runs"))


def run_dir_for(out_path: str | os.PathLike, runs_dir: Path | None = None) -> Path:
    """The default run folder of a model file: `<runs>/STEM/` (the CLI's default and every dashboard run's)."""
    return Path(runs_dir or default_runs_dir()) / Path(out_path).stem


def _run_file(name: str) -> property:
    """A RunFiles attribute: the path of the file called `name` in the run folder."""
    return property(lambda files: files.folder / name, doc=f"The run folder's {name}.")


@dataclass(frozen=True)
class RunFiles:
    """The files of one run folder (see the module docstring for what each holds)."""

    folder: Path

    config = _run_file("config.json")
    status = _run_file("status.json")
    history = _run_file("history.jsonl")
    checkpoint = _run_file("checkpoint.keras")
    state = _run_file("state.json")
    stop_flag = _run_file("STOP")
    heartbeat = _run_file("heartbeat")
    lock = _run_file("lock")
    log = _run_file("worker.log")

    def __post_init__(self):
        object.__setattr__(self, "folder", Path(self.folder))

    def clear_training(self) -> None:
        """Delete the history, checkpoint and state of a previous run (a fresh start); the lock holder only."""
        for stale in (self.history, self.checkpoint, self.state, self.stop_flag):
            stale.unlink(missing_ok=True)


# ---------------------------------------------------------------- JSON files


def read_json(path: Path, what: str) -> dict:
    """A JSON object file ({} when missing), or a TrainingError naming the file."""
    try:
        content = json.loads(Path(path).read_text())
    except FileNotFoundError:
        return {}
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise TrainingError(f"{path} is corrupt: the {what} is not valid JSON.") from None
    if not isinstance(content, dict):
        raise TrainingError(f"{path} is corrupt: the {what} is not a JSON object.")
    return content


def read_history(path: Path) -> list[dict]:
    """The epochs recorded in a history file; a clear error when it is corrupt."""
    path = Path(path)
    if not path.exists():
        return []
    rows = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            raise TrainingError(f"{path} line {number} is not valid JSON: the history file is corrupt.") from None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise TrainingError(f"{path} line {number} has no epoch number: the history file is corrupt.")
        rows.append(row)
    return rows


def write_status(files: RunFiles, **fields) -> None:
    """Merge `fields` into status.json, atomically (pollers never see half a file); the lock holder only."""
    status = read_json(files.status, "run status")
    status.update(fields, updated=time.time())
    atomic_write_text(files.status, json.dumps(status))


def request_stop(run_dir: str | os.PathLike) -> None:
    """Ask the run in `run_dir` to stop after its current batch (it keeps its checkpoint)."""
    files = RunFiles(Path(run_dir))
    if not files.folder.is_dir():
        raise TrainingError(f"There is no run in {files.folder} to stop.")
    files.stop_flag.touch()


# ---------------------------------------------------------------- what to train: config.json


@dataclass(frozen=True)
class RunRequest:
    """What a run trains and where it saves: the content of config.json.

    `config` is a TrainConfig as a dict (kept as plain data so reading a run needs no
    training code); `owner` is an opaque id of who started it (a dashboard session),
    recorded in the sidecar so a classroom run never replaces another person's model;
    `argv` is the equivalent `python -m cnn ...` command line, recorded in the sidecar.
    """

    config: dict
    out_path: str
    resume: bool = False
    owner: str | None = None
    argv: list = dataclasses.field(default_factory=list)
    requested_at: float = dataclasses.field(default_factory=time.time)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def read(cls, files: RunFiles) -> "RunRequest":
        """The run's config.json; a TrainingError when there is none or it is not a run request."""
        content = read_json(files.config, "run configuration")
        known = {field.name for field in dataclasses.fields(cls)}
        if not content or not isinstance(content.get("config"), dict) or not content.get("out_path"):
            raise TrainingError(f"{files.folder} has no run configuration (config.json): start a new run instead.")
        return cls(**{key: value for key, value in content.items() if key in known})

    def write(self, files: RunFiles) -> None:
        """Write config.json atomically (the lock holder only)."""
        files.folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(files.config, self.to_json())


# ---------------------------------------------------------------- locks


def output_lock_path(out_path: str | os.PathLike) -> Path:
    """The lock file of a model file: keyed by its resolved path, in a `.locks` folder beside it."""
    out_path = Path(out_path)
    folder = out_path.parent.resolve()
    return folder / ".locks" / f"{out_path.name}.lock"


class RunLocks:
    """Exclusive flocks on a run folder and its output file, held until `release()` or the process ends."""

    def __init__(self, descriptors: list[int]):
        self._descriptors = descriptors

    @property
    def descriptors(self) -> tuple[int, ...]:
        return tuple(self._descriptors)

    def release(self) -> None:
        """Close the lock files (the locks go when the last process holding them closes them)."""
        for descriptor in self._descriptors:
            try:
                os.close(descriptor)
            except OSError:
                pass
        self._descriptors = []

    def handover_env(self) -> dict[str, str]:
        """The environment entry that tells a child process (given these fds) that it holds the locks."""
        return {LOCK_FDS_ENV: ",".join(str(descriptor) for descriptor in self._descriptors)}

    def __enter__(self) -> "RunLocks":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _flock(path: Path, refusal: str) -> int:
    """An fd of `path` holding an exclusive flock; TrainingError(refusal + holder) when another holds it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        _flock_retrying(descriptor)
    except BlockingIOError:
        holder = _lock_holder(descriptor)
        os.close(descriptor)
        raise TrainingError(
            refusal + (f" (process {holder})" if holder else "") + ": wait until it ends, or stop it first."
        ) from None
    except BaseException:
        os.close(descriptor)
        raise
    _say_holder(descriptor)
    return descriptor


def _say_holder(descriptor: int) -> None:
    """Write this process's pid into a held lock file, for the next one refused (the flock decides, not this)."""
    os.ftruncate(descriptor, 0)
    os.pwrite(descriptor, f"{os.getpid()}\n".encode(), 0)


def _flock_retrying(descriptor: int) -> None:
    """flock(LOCK_EX | LOCK_NB), tried LOCK_TRIES times: a reader's liveness probe holds it for microseconds."""
    for attempt in range(LOCK_TRIES):
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == LOCK_TRIES - 1:
                raise
            time.sleep(0.02)


def _lock_holder(descriptor: int) -> str:
    try:
        return os.pread(descriptor, 32, 0).decode().strip()
    except (OSError, UnicodeDecodeError):
        return ""


def acquire_locks(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> RunLocks:
    """Lock the run folder and the output file for this process; TrainingError when either is taken.

    Raises:
        TrainingError: another process trains in `run_dir`, or writes `out_path`, now.
    """
    run_dir, out_path = Path(run_dir), Path(out_path)
    files = RunFiles(run_dir)
    run_lock = _flock(files.lock, f"The run folder {run_dir.name}/ is in use by another training")
    try:
        out_lock = _flock(output_lock_path(out_path), f"{out_path.name} is being written by another training run")
    except BaseException:
        os.close(run_lock)
        raise
    return RunLocks([run_lock, out_lock])


def inherited_locks(run_dir: str | os.PathLike, out_path: str | os.PathLike) -> RunLocks | None:
    """The locks a starter handed to this process (see `RunLocks.handover_env`), checked; None if none.

    Each handed fd must be the lock file of this run folder / output (same inode) and hold
    its flock (taking a flock again through the same open file succeeds at once).
    """
    value = os.environ.pop(LOCK_FDS_ENV, "")
    if not value:
        return None
    try:
        descriptors = [int(part) for part in value.split(",")]
    except ValueError:
        raise TrainingError(f"{LOCK_FDS_ENV}={value!r} is not a list of file descriptors.") from None
    expected = [RunFiles(Path(run_dir)).lock, output_lock_path(out_path)]
    if len(descriptors) != len(expected):
        raise TrainingError(f"{LOCK_FDS_ENV} must name {len(expected)} locks, not {len(descriptors)}.")
    for descriptor, path in zip(descriptors, expected):
        try:
            same = os.fstat(descriptor).st_ino == path.stat().st_ino
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except (OSError, BlockingIOError):
            same = False
        if not same:
            raise TrainingError(f"The lock handed to this worker is not the lock of {path}.")
        os.set_inheritable(descriptor, False)
        _say_holder(descriptor)  # the holder is this worker now, not the process that started it
    return RunLocks(descriptors)


# ---------------------------------------------------------------- liveness


def lock_held(path: Path) -> bool:
    """Whether some process holds the flock of `path` now (a shared probe, released at once)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        fcntl.flock(descriptor, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(descriptor)  # closing also drops the probe's shared lock
    return False


def worker_alive(files: RunFiles, status: dict) -> bool:
    """Whether the run's worker still runs: it holds the run's lock (on this machine), or its heartbeat
    is fresh (a worker on another machine sharing the runs folder, where flocks may not be shared)."""
    if status.get("host") not in (None, socket.gethostname()):
        return time.time() - _mtime(files.heartbeat) < HEARTBEAT_STALE_S
    return lock_held(files.lock)


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return 0.0


class Heartbeat:
    """A daemon thread that touches the run's heartbeat file every HEARTBEAT_S seconds while in use."""

    def __init__(self, files: RunFiles):
        self._files = files
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="run-heartbeat", daemon=True)

    def _beat(self) -> None:
        while not self._stopped.is_set():
            try:
                self._files.heartbeat.touch()
            except OSError:
                pass  # a missing folder must not kill the worker; readers then rely on the pid
            self._stopped.wait(HEARTBEAT_S)

    def __enter__(self) -> "Heartbeat":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopped.set()


# ---------------------------------------------------------------- the worker's side


class WorkerRecord:
    """How a worker (the holder of the run's locks) writes its status: who it is, each phase, how it ended.

    Used as a context manager around the whole run: an exception that escapes records
    "failed" with its message (a UserError's own words, else the exception's type), so
    the final state never depends on anyone reading the log.
    """

    def __init__(self, files: RunFiles):
        self.files = files

    def __enter__(self) -> "WorkerRecord":
        write_status(self.files, pid=os.getpid(), host=socket.gethostname())
        return self

    def phase(self, state: str, message: str = "", **fields) -> None:
        """Record a non-final state (queued, starting, running, saving) with what it is doing."""
        if state not in ACTIVE_STATES:
            raise ValueError(f"{state!r} is not an active state")
        write_status(self.files, state=state, message=message, **fields)

    def finish(self, state: str, message: str, **fields) -> None:
        """Record the final state (finished, stopped, failed, cancelled) and when it ended."""
        if state not in FINAL_STATES:
            raise ValueError(f"{state!r} is not a final state")
        write_status(self.files, state=state, message=message, ended=time.time(), **fields)

    def __exit__(self, kind, error, traceback) -> None:
        if error is None or kind is SystemExit:
            return
        if kind is KeyboardInterrupt:
            self.finish("stopped", "Interrupted: the checkpoint of the last finished epoch is kept.")
        elif isinstance(error, UserError):  # its message is meant for people
            self.finish("failed", str(error))
        else:
            self.finish("failed", f"The worker crashed: {type(error).__name__}: {str(error)[:300]}")


# ---------------------------------------------------------------- the reader's side


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
    owner: str | None = None
    can_resume: bool = False  # Resume would continue (or, with no checkpoint yet, restart) this run
    has_checkpoint: bool = False
    queue_position: int | None = None  # 1 = next to train, while queued
    slot_since: float | None = None  # when the worker got its training slot
    ended: float | None = None  # when the worker recorded its final state

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

    @property
    def partial_last_epoch(self) -> bool:
        """The last recorded epoch was cut short by a Stop (Resume redoes it)."""
        return bool(self.history and self.history[-1].get("partial_batches"))


def run_state(run_dir: str | os.PathLike, queue_position=None) -> RunState:
    """The state of the run in `run_dir` (TrainingError when its files are corrupt).

    Args:
        run_dir: the run folder.
        queue_position: optional `f(run_dir) -> int | None`, the run's place in the training
            queue (given by `cnn.jobs`, which owns the queue).
    """
    files = RunFiles(Path(run_dir))
    status = read_json(files.status, "run status")
    if not status:
        return RunState("idle")
    history = tuple(read_history(files.history))
    try:
        request = RunRequest.read(files)
    except TrainingError:
        request = None
    written, message = str(status.get("state", "idle")), str(status.get("message") or "")
    state, message = _classify(written, message, worker_alive(files, status), files)
    has_checkpoint = files.checkpoint.exists()
    position = queue_position(files.folder) if queue_position and state == "queued" else None
    return RunState(
        state=state,
        epoch=_finished_epochs(history, status),
        epochs=int(status.get("epochs") or 0),
        batch=int(status.get("batch") or 0),
        batches=int(status.get("batches") or 0),
        message=message,
        history=history,
        model=status.get("model") or (request.config.get("model") if request else None),
        pid=status.get("pid"),
        out_path=status.get("out_path") or (request.out_path if request else None),
        config=status.get("config") or (request.config if request else None),
        owner=request.owner if request else None,
        can_resume=request is not None and _resumable(state, has_checkpoint, history),
        has_checkpoint=has_checkpoint,
        queue_position=position,
        slot_since=status.get("slot_since"),
        ended=status.get("ended"),
    )


def _finished_epochs(history: tuple[dict, ...], status: dict) -> int:
    if history:
        return len(history) - (1 if history[-1].get("partial_batches") else 0)
    return int(status.get("epoch") or 0)


def _classify(written: str, message: str, alive: bool, files: RunFiles) -> tuple[str, str]:
    """The real state from what the worker wrote and whether it still lives."""
    if written in FINAL_STATES:
        return written, message
    if alive:
        if files.stop_flag.exists() and written in ("starting", "running"):
            return "stopping", "Stopping after the current batch; the checkpoint is kept."
        return (written if written in ACTIVE_STATES else "running"), message
    if written == "idle":
        return "idle", message
    return "killed", KILLED_MESSAGE


def _resumable(state: str, has_checkpoint: bool, history: tuple[dict, ...]) -> bool:
    """Resume is offered for a run cut short: killed (continues its checkpoint, or restarts
    with the same settings before the first one), failed with a checkpoint, or stopped."""
    if state == "killed":
        return True
    if state in ("stopped", "failed"):
        return has_checkpoint
    return False
