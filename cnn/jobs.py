"""Training jobs: worker processes and the machine's training queue (at most N train at once).

Starting a run (`start_run`) locks its run folder and output file (`cnn.runs`), writes the
run's `config.json`, and starts a worker, `python -m cnn train --job RUN_DIR` (the same code
as the command line), handing it the locks. Every worker, from the dashboard or a shell,
then waits its turn in the queue before it imports TensorFlow:

    <runs>/.queue/tickets/<requested ns>-<run>.json   one ticket per waiting run, oldest request first
    <runs>/.queue/slot-K.lock                         K < max_workers(): a worker trains while it holds one
    <runs>/.queue/max_workers.json                    the teacher's setting (else CNN_MAX_WORKERS, else cores/2)

The worker at the head of the line takes the first free slot (a non-blocking flock) and
removes its ticket; the kernel frees the slot when the worker ends, however it ends.
Removing a ticket cancels that run: its worker sees the ticket gone and records
"cancelled". All of it lives in files, so several dashboard sessions, shell commands and a
restarted server share one queue. No Streamlit here.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from cnn.artifacts import PROJECT_ROOT, atomic_write_text
from cnn.errors import TrainingError, UserError
from cnn.runs import (
    RunFiles,
    RunLocks,
    RunRequest,
    RunState,
    WorkerRecord,
    acquire_locks,
    default_runs_dir,
    lock_held,
    read_history,
    read_json,
    request_stop,
    run_state,
)

MAX_WORKERS_ENV = "CNN_MAX_WORKERS"
MAX_WORKERS_LIMIT = 64  # a sanity bound on the setting
QUEUE_POLL_S = 0.5  # how often a waiting worker looks at the line
TICKET_STALE_S = 60.0  # a ticket of another machine not touched for this long is dropped
STARTING_MESSAGE = "starting: loading TensorFlow and the data"
CANCELLED_MESSAGE = "Cancelled while waiting in the queue: nothing was trained."

# Workers this process started, so finished ones are reaped (no zombies left behind by the server).
_CHILDREN: dict[int, subprocess.Popen] = {}


# ---------------------------------------------------------------- the queue


def queue_dir(runs_dir: Path | None = None) -> Path:
    return Path(runs_dir or default_runs_dir()) / ".queue"


def default_max_workers() -> int:
    """One training worker per two cores, at least one."""
    return max(1, (os.cpu_count() or 2) // 2)


def max_workers(runs_dir: Path | None = None) -> int:
    """Workers that may train at once: the teacher's setting, else `CNN_MAX_WORKERS`, else one per two cores."""
    setting = read_json(queue_dir(runs_dir) / "max_workers.json", "worker limit").get("max_workers")
    if setting is None:
        setting = os.environ.get(MAX_WORKERS_ENV) or default_max_workers()
    try:
        value = int(setting)
    except (TypeError, ValueError):
        raise UserError(f"The worker limit must be a whole number, not {setting!r} ({MAX_WORKERS_ENV}).") from None
    if not 1 <= value <= MAX_WORKERS_LIMIT:
        raise UserError(f"The worker limit must be 1-{MAX_WORKERS_LIMIT}, not {value}.")
    return value


def set_max_workers(count: int, runs_dir: Path | None = None) -> None:
    """Store the worker limit for every process that shares this runs folder (the teacher's control)."""
    if not 1 <= int(count) <= MAX_WORKERS_LIMIT:
        raise UserError(f"The worker limit must be 1-{MAX_WORKERS_LIMIT}, not {count}.")
    folder = queue_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    atomic_write_text(folder / "max_workers.json", json.dumps({"max_workers": int(count)}))


@dataclass(frozen=True)
class Ticket:
    """A waiting worker's place in line."""

    path: Path
    run_dir: Path
    host: str
    model: str | None = None

    @property
    def stale(self) -> bool:
        """Its worker is gone: it no longer holds its run's lock (or, from another machine, stopped touching it)."""
        if self.host != socket.gethostname():
            try:
                return time.time() - self.path.stat().st_mtime > TICKET_STALE_S
            except OSError:
                return True
        return not lock_held(RunFiles(self.run_dir).lock)


def waiting(runs_dir: Path | None = None) -> list[Ticket]:
    """The tickets in line, oldest request first; stale ones (their worker died) are removed."""
    folder = queue_dir(runs_dir) / "tickets"
    line = []
    for path in sorted(folder.glob("*.json")):
        try:
            content = json.loads(path.read_text())
            ticket = Ticket(path, Path(content["run_dir"]), content.get("host", ""), content.get("model"))
        except FileNotFoundError:
            continue  # taken or cancelled meanwhile
        except (ValueError, KeyError, TypeError):
            path.unlink(missing_ok=True)  # not a ticket of ours
            continue
        if ticket.stale:
            path.unlink(missing_ok=True)
            continue
        line.append(ticket)
    return line


def queue_position(run_dir: str | os.PathLike, runs_dir: Path | None = None) -> int | None:
    """The run's place in line (1 = next to train), or None when it is not waiting."""
    target = Path(run_dir).resolve()
    for number, ticket in enumerate(waiting(runs_dir), start=1):
        if ticket.run_dir.resolve() == target:
            return number
    return None


def slots_in_use(runs_dir: Path | None = None) -> int:
    """How many training slots are held now."""
    folder = queue_dir(runs_dir)
    return sum(lock_held(folder / f"slot-{index}.lock") for index in range(max_workers(runs_dir)))


def _take_free_slot(runs_dir: Path | None) -> int | None:
    """An fd holding the first free slot lock, or None when all max_workers() slots are taken."""
    folder = queue_dir(runs_dir)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(max_workers(runs_dir)):
        descriptor = os.open(folder / f"slot-{index}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return descriptor
        except BlockingIOError:
            os.close(descriptor)
    return None


def wait_for_slot(
    files: RunFiles,
    request: RunRequest,
    record: WorkerRecord,
    *,
    runs_dir: Path | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> int | None:
    """Wait in the queue until this worker may train; the slot's fd, or None when cancelled.

    The ticket was written by `prepare_run`; it is gone when the run was cancelled. Must be
    called by the holder of the run's lock (a ticket whose run lock is free is stale).
    The slot is held until the fd is closed or the process ends. `on_wait(position)` is
    called whenever the place in line changes (the CLI prints it).
    """
    ticket = _ticket_path(files, request, runs_dir)
    shown = None
    try:
        while True:
            if files.stop_flag.exists():
                ticket.unlink(missing_ok=True)  # a Stop while waiting is a cancel
            if not ticket.exists():
                return None
            ticket.touch()  # fresh for readers on other machines
            position = queue_position(files.folder, runs_dir) or 1
            if position == 1:
                slot = _take_free_slot(runs_dir)
                if slot is not None:
                    try:
                        ticket.unlink()  # whoever removes the ticket first wins: this worker, or a cancel
                    except FileNotFoundError:
                        os.close(slot)
                        return None
                    return slot
            if position != shown:  # waiting: say where in line, whenever that changes
                shown = position
                limit = max_workers(runs_dir)
                record.phase(
                    "queued",
                    f"waiting for a training slot: {ordinal(position)} in line "
                    f"({limit} {'run trains' if limit == 1 else 'runs train'} at once on this machine)",
                )
                if on_wait:
                    on_wait(position)
            time.sleep(QUEUE_POLL_S)
    except BaseException:
        ticket.unlink(missing_ok=True)
        raise


def cancel_run(run_dir: str | os.PathLike, runs_dir: Path | None = None) -> bool:
    """Take a waiting run out of the queue (its worker then records "cancelled"); False if it was not waiting."""
    target = Path(run_dir).resolve()
    removed = False
    for ticket in waiting(runs_dir):
        if ticket.run_dir.resolve() == target:
            try:
                ticket.path.unlink()
                removed = True
            except FileNotFoundError:
                pass  # it got its slot meanwhile
    return removed


def ordinal(number: int) -> str:
    """1st, 2nd, 3rd, 4th, ..., 11th, 12th, 13th, 21st."""
    suffix = "th" if 10 <= number % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(number % 10, "th")
    return f"{number}{suffix}"


# ---------------------------------------------------------------- starting and stopping


def start_run(request: RunRequest, run_dir: str | os.PathLike) -> int:
    """Lock `run_dir` and the output, record `request` as its config.json, start its worker; its pid.

    A fresh run (not `request.resume`) clears the folder's history and checkpoint first.
    The worker gets both locks (it holds them until it ends) and waits in the queue.

    Raises:
        TrainingError: the run folder or the output file is in use by another run.
    """
    run_dir = Path(run_dir)
    files = RunFiles(run_dir)
    if Path(request.out_path).suffix != ".keras":
        raise UserError(f"The output must be a .keras file, not {Path(request.out_path).name!r}.")
    with acquire_locks(run_dir, request.out_path) as locks:
        prepare_run(files, request)
        worker = _spawn_worker(files, locks)
    _CHILDREN[worker.pid] = worker
    _reap_children()
    return worker.pid


def prepare_run(files: RunFiles, request: RunRequest) -> None:
    """Ready a locked run folder for `request`: a fresh start clears the last run's history and
    checkpoint; then config.json, a new status ("starting") and its ticket in the queue are written
    (by the starter, before its worker exists, so the line keeps the order in which runs were asked for)."""
    if not request.resume:
        files.clear_training()
    files.stop_flag.unlink(missing_ok=True)
    request.write(files)
    history = read_history(files.history) if request.resume else []
    # A whole new status: nothing of the previous run's ending may show through.
    atomic_write_text(
        files.status,
        json.dumps(
            {
                "state": "starting",
                "message": STARTING_MESSAGE,
                "model": request.config.get("model"),
                "epoch": len(history),
                "epochs": request.config.get("epochs"),
                "batch": 0,
                "batches": 0,
                "config": request.config,
                "out_path": request.out_path,
                "updated": time.time(),
            }
        ),
    )
    _write_ticket(files, request)


def _ticket_path(files: RunFiles, request: RunRequest, runs_dir: Path | None = None) -> Path:
    """The run's ticket: named by the time of the request, so the line keeps the order of the presses."""
    return queue_dir(runs_dir) / "tickets" / f"{int(request.requested_at * 1e9):020d}-{files.folder.name}.json"


def _write_ticket(files: RunFiles, request: RunRequest, runs_dir: Path | None = None) -> None:
    ticket = _ticket_path(files, request, runs_dir)
    ticket.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(
        ticket,
        json.dumps(
            {"run_dir": str(files.folder.resolve()), "host": socket.gethostname(), "model": request.config.get("model")}
        ),
    )


def equivalent_argv(config: dict, out_path: str | os.PathLike) -> list[str]:
    """The `python -m cnn` arguments that train `config` into `out_path` (recorded in the sidecar)."""
    argv = [
        "train",
        "--model",
        config["model"],
        "--epochs",
        str(config["epochs"]),
        "--batch-size",
        str(config["batch_size"]),
        "--learning-rate",
        repr(float(config["learning_rate"])),
        "--augment" if config.get("augment") else "--no-augment",
        "--val-size",
        str(config["val_size"]),
        "--seed",
        str(config.get("seed", 0)),
        "--out",
        str(out_path),
        "--mixed-precision" if config.get("mixed_precision") else "--no-mixed-precision",
    ]
    if config.get("subset") is not None:
        argv += ["--subset", str(config["subset"])]
    if config.get("use_sample"):
        argv.append("--sample")
    return argv


def _spawn_worker(files: RunFiles, locks: RunLocks) -> subprocess.Popen:
    """`python -m cnn train --job RUN_DIR` in its own session, holding the run's locks, output to worker.log."""
    command = [sys.executable, "-m", "cnn", "train", "--job", str(files.folder)]
    environment = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONUNBUFFERED": "1", **locks.handover_env()}
    with files.log.open("w") as log:
        log.write(f"$ {' '.join(command[1:])}\n")
        log.flush()
        return subprocess.Popen(
            command,
            cwd=PROJECT_ROOT,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=environment,
            start_new_session=True,
            pass_fds=locks.descriptors,
        )


def _reap_children() -> None:
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            del _CHILDREN[pid]


def resume_run(run_dir: str | os.PathLike) -> int:
    """Continue the run in `run_dir` with its own settings and output (restarting it if it has no checkpoint)."""
    files = RunFiles(Path(run_dir))
    request = RunRequest.read(files)
    again = RunRequest(
        config=request.config, out_path=request.out_path, resume=True, owner=request.owner, argv=request.argv
    )
    return start_run(again, run_dir)


def stop_run(run_dir: str | os.PathLike) -> str:
    """Stop the run in `run_dir`: "cancelled" when it was waiting in the queue, else "stopping"
    (its worker stops after the current batch and keeps its history and checkpoint)."""
    if cancel_run(run_dir):
        return "cancelled"
    request_stop(run_dir)
    return "stopping"


# ---------------------------------------------------------------- reading runs


def run_state_in_queue(run_dir: str | os.PathLike) -> RunState:
    """`cnn.runs.run_state` with the run's place in the training queue filled in."""
    return run_state(run_dir, queue_position=queue_position)


def active_runs(runs_dir: Path | None = None) -> list[tuple[Path, RunState]]:
    """Every run folder under `runs_dir` whose worker is waiting or training now."""
    found = []
    for folder in sorted(Path(runs_dir or default_runs_dir()).glob("*/")):
        if folder.name.startswith("."):
            continue
        try:
            state = run_state_in_queue(folder)
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
            _reap_children()
            return state
        time.sleep(poll_s)
    raise TrainingError(f"The run in {run_dir} did not end within {timeout_s:.0f} s.")


def log_tail(run_dir: str | os.PathLike, lines: int = 20, max_bytes: int = 16_384) -> str:
    """The last `lines` lines of the worker's log, for a 'details' box (people read it; code never does)."""
    path = RunFiles(Path(run_dir)).log
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - max_bytes))
            text = handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])
