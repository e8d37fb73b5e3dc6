"""A class at once: N browser sessions on one real dashboard server, and what the server went through.

Starts `streamlit run streamlit_app.py` (headless, its own models, runs and data folders, so
nothing of the checkout is read or replaced besides a copy of models/), then drives N
sessions at once, each a browser context (its own cookies and Streamlit session) of ONE
headless Debian chromium. Each session, as a student would:

  opens Home; uploads photos to Predict (session i uses the i-th saved model, round robin);
  opens Evaluate and Inspect (their default model); starts one short training on the Train
  page (session i trains the i-th zoo model); then repeats Predict, Evaluate and Inspect
  until --duration seconds have passed since the first session started.

The trainings go through the machine's training queue (cnn/jobs.py): at most CNN_MAX_WORKERS
(--max-workers; default one per two cores) train at once, the others wait in line. After
the sessions end, the script waits for the started trainings to end (--training-wait).

It prints, besides a progress line per action on stderr: per-action latency (p50/p95/max),
the errors seen (exceptions or error boxes on a page, JavaScript errors, refused training
starts, failed trainings, and every wait that timed out, named by the action and the step
it waited for: the goal is 0), the server's peak RSS, the number of model loads per model
file (from the "Loading model" line ui/resources.py logs on each cache miss; goal: 1 per
model), the most training workers at once (workers that have loaded TensorFlow, which a
worker does only once it holds a queue slot, and whose run has not recorded its end: one
that finished and is exiting no longer trains; goal: at most the queue's limit), where the
CPU time went, the command line and the machine's load.

Run (a benchmark, not a test; the browser shares the machine with the server, so latencies
include its CPU too):
    nice -n 19 .venv/bin/python benchmarks/classroom_load.py --sessions 3 --training-wait 0
    .venv/bin/python benchmarks/classroom_load.py --sessions 30 --data-dir ../shared/data/cifar-10-batches-py \
        --action-timeout 1200 --training-wait 1800 --screenshots /tmp/classroom_shots
(the second on a quiet machine: expect 20-30 minutes on 2 cores, allow 45; the 30 trainings queue one at a time).
Without --data-dir a small synthetic CIFAR-10 (1,000 training, 50 test images) is generated, so
training is far cheaper than with the real data: the report says which was used.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shlex
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))  # as pytest does: the tests import their helpers by module name

from browser_support import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402
from conftest import make_synthetic_cifar  # noqa: E402

from benchmarks.process_memory import memory_mb  # noqa: E402

PHOTOS_PER_UPLOAD = 3
PHOTO_SIZE = (640, 480)  # a phone photo scaled down, as students upload them
SAMPLE_PERIOD_S = 0.5  # how often the process table is read
PROGRESS_PERIOD_S = 30.0  # how often a line about the server and the machine goes to stderr
MODEL_LOAD_LINE = re.compile(r"Loading model (\S+) \(sha256")
GOAL_SERVER_RSS_MB = 3000
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
# Chromium switches on top of the tests' (CHROMIUM_ARGS: headless, no GPU, no background networking)
# and Playwright's own (it already adds --disable-extensions, --mute-audio in headless mode and turns
# off timer throttling and renderer backgrounding, which the sessions need: every tab is a student
# whose page must keep talking to the server). No GPU emulation either: pages draw on the CPU path.
LOAD_CHROMIUM_ARGS = ["--disable-software-rasterizer", "--disable-smooth-scrolling"]

# What the pages show (ui/ and pages/), waited for by the sessions. Widgets are found by their keys:
# Streamlit gives an element with key=K the CSS class "st-key-K".
MAIN = "[data-testid=stMain]"
PROBLEM_BOXES = f"{MAIN} [data-testid=stAlertContentError], {MAIN} [data-testid=stException]"
NAV_LINK = "[data-testid=stSidebarNavLink]"
PREDICT_MODEL = ".st-key-predict_model"  # pages/predict.py: the model picker
UPLOAD_INPUT = "[class*=st-key-predict_uploads] input[type=file]"  # its key gains a number after Clear
ANSWERED_CARD_TEXT = "the model's 32x32"  # ui/prediction_views.py: the caption of every answered grid card
EVALUATE_LAST = ".st-key-eval_per_class"  # ui/evaluation_views via pages/evaluate.py: the per-class bars
INSPECT_LAST = ".st-key-inspect_cam_heatmap"  # ui/inspect_views.py: the Grad-CAM heatmap, the last figure
TRAIN_MODEL = ".st-key-train_model"  # pages/train.py: the zoo model picker
# ui/training_views.py `_status`: the run panel names the run ("Run NAME:") and then shows its state.
RUN_PANEL_STATE = """([name]) => {
  const main = document.querySelector('[data-testid=stMain]');
  if (!main) return null;
  if (main.querySelector('[data-testid=stAlertContentError], [data-testid=stException]')) return 'refused';
  const text = main.innerText;
  if (!text.includes('Run ' + name + ':')) return null;
  if (/Waiting: \\S+ in line/.test(text)) return 'queued';
  if (/Finished \\d+ epochs/.test(text)) return 'finished';
  if (/The run failed/.test(text)) return 'failed';
  if (main.querySelector('[data-testid=stProgress]')) return 'starting or training';
  return null;
}"""
# Counts answered cards plus error boxes: a card that fails shows an error box instead of its caption.
ANSWERS_AND_PROBLEMS = """([text, expected]) => {
  const main = document.querySelector('[data-testid=stMain]');
  if (!main) return false;
  const answered = main.innerText.split(text).length - 1;
  const problems = main.querySelectorAll('[data-testid=stAlertContentError], [data-testid=stException]').length;
  return answered + problems >= expected;
}"""
# Counts the script runs that ended in this tab (installed before any page script): a wait for "the run
# that this click caused" is then exact, where the script-state attribute alone can be read before the
# rerun begins on a loaded machine (an upload made during that rerun was lost: the uploader came back empty).
COUNT_RUNS = """
window.__scriptRunsEnded = 0;
new MutationObserver(records => {
  for (const record of records) {
    if (record.target.getAttribute('data-test-script-state') === 'notRunning' && record.oldValue !== 'notRunning')
      window.__scriptRunsEnded += 1;
  }
}).observe(document, {subtree: true, attributes: true, attributeOldValue: true,
                      attributeFilter: ['data-test-script-state']});
"""
RUNS_ENDED = "() => window.__scriptRunsEnded"
SHOWS_TEXT = """([box, text]) => {
  const element = document.querySelector(box);
  return Boolean(element && (element.innerText + [...element.querySelectorAll('input')].map(i => i.value).join(' '))
    .includes(text));
}"""
MORE_RUNS_ENDED = "(before) => window.__scriptRunsEnded > before"
# Seen on a loaded machine (2 of about 20 uploads): the uploader came back empty after set_input_files,
# and the page waited forever. The files are given again, at most this often, and every repeat is reported.
UPLOAD_ATTEMPTS = 3
UPLOAD_SHOWN_S = 60
UPLOADER_SHOWS = """(name) => {
  const uploader = document.querySelector('[class*=st-key-predict_uploads]');
  return Boolean(uploader && uploader.innerText.includes(name));
}"""
# Seen with 8 and 30 sessions: a tab whose page had finished its run (idle, complete, screenshot) never
# counted that run's end, and its session waited out the action timeout. A run not counted within this
# many seconds of its click is taken as ended once the app is idle; the next wait checks what it shows.
RUN_SEEN_S = 20
POLL_MS = 500  # in-page polling of the waits above (Playwright's default, every animation frame, costs CPU)
ACTIONS = ["open home", "predict upload", "open evaluate", "open inspect", "start training"]


@dataclass(frozen=True)
class LoadConfig:
    """One benchmark run (every field is a command-line option; see OPTIONS)."""

    sessions: int = 30
    duration_s: float = 0.0
    stagger_s: float = 2.0
    action_timeout_s: float = 600.0
    training_wait_s: float = 1800.0
    max_workers: int | None = None
    port: int | None = None
    data_dir: Path | None = None
    train_epochs: int = 1
    train_images: int = 64
    validation_images: int = 10
    screenshots: Path | None = None
    quiet: bool = False


@dataclass
class Measurements:
    """What the sessions saw: latency per action, errors, how the trainings began and ended."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    training_starts: Counter = field(default_factory=Counter)
    training_ends: Counter = field(default_factory=Counter)
    sessions_wall_s: float = 0.0
    uploads_repeated: int = 0  # the uploader did not list the files given: given again
    runs_unseen: int = 0  # a click's run was not counted within RUN_SEEN_S: the idle app was taken as its end


# --------------------------------------------------------------------------- the process table


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/PID/stat after the command name, or None once the process has ended."""
    try:
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat_fields(int(entry.name))) is not None:
            children[int(fields[1])].append(int(entry.name))
    return children


def descendants(pid: int, children: dict[int, list[int]] | None = None) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    children = _children_by_parent() if children is None else children
    found, waiting = [], [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


def proportional_mb(pid: int) -> float:
    """Pss of `pid` in MB (shared pages split among their users, so a sum over processes is fair), 0 once ended."""
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return 0.0


def cpu_seconds(pid: int) -> float | None:
    """User plus system CPU seconds `pid` has used, None once it has ended."""
    fields = _stat_fields(pid)
    return None if fields is None else (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def machine_busy_seconds() -> float:
    """CPU seconds all cores together have spent busy (not idle, not waiting for I/O) since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(values) - values[3] - values[4]) / CLOCK_TICKS


def is_training_worker(pid: int) -> bool:
    """A `python -m cnn ...` process: how cnn/jobs.py starts a training worker."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arguments[index : index + 2] == [b"-m", b"cnn"] for index in range(len(arguments)))


def job_folder(pid: int) -> Path | None:
    """The run folder of a dashboard worker (`python -m cnn train --job RUN_DIR`), None for another process."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except OSError:
        return None
    return Path(arguments[arguments.index("--job") + 1]) if "--job" in arguments[:-1] else None


def is_training(pid: int) -> bool:
    """A worker that has loaded TensorFlow (it does so only once it holds a queue slot) and whose run
    has not recorded its end yet: one that has finished and is only exiting is not counted."""
    from cnn.errors import UserError
    from cnn.runs import run_state

    folder = job_folder(pid)
    if folder is None or not has_tensorflow(pid):
        return False
    try:
        return run_state(folder).active
    except UserError:
        return False


def has_tensorflow(pid: int) -> bool:
    """Whether TensorFlow's library is mapped in `pid`: a worker imports it only once it holds a queue slot."""
    try:
        with open(f"/proc/{pid}/maps", "rb") as maps:
            return any(b"tensorflow" in line for line in maps)
    except OSError:
        return False


def machine_load() -> str:
    """Load averages, cores and available memory, in one line."""
    one, five, fifteen = os.getloadavg()
    available = "?"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            available = f"{int(line.split()[1]) / 1024**2:.1f} GB"
    return (
        f"load average {one:.2f} / {five:.2f} / {fifteen:.2f} (1/5/15 min) on {os.cpu_count()} CPUs, "
        f"{available} memory available"
    )


class ServerSampler(threading.Thread):
    """Reads the process table every SAMPLE_PERIOD_S seconds: the server's memory, its training workers
    (alive and training), the browser's memory and the CPU time of each group."""

    def __init__(self, server_pid: int, quiet: bool):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.quiet = quiet
        self.started = time.monotonic()
        self.peak_server_rss_mb = 0.0
        self.peak_total_rss_mb = 0.0  # server + all its descendants, at one sample
        self.peak_browser_pss_mb = 0.0  # chromium and Playwright's driver, Pss summed at one sample
        self.peak_worker_hwm_mb = 0.0
        self.most_alive_workers = 0  # waiting in line or training
        self.most_training_workers = 0
        self.most_tensorflow_workers = 0  # training, or finished and exiting
        self.worker_pids: set[int] = set()
        self.cpu_by_pid: dict[int, tuple[str, float]] = {}  # pid -> (group, last CPU seconds seen)
        self.machine_busy_at_start = machine_busy_seconds()
        self._last_progress = time.monotonic()
        self._stopping = threading.Event()
        self.latest = ""

    def run(self) -> None:
        while not self._stopping.wait(SAMPLE_PERIOD_S):
            self.sample()

    def sample(self) -> None:
        children = _children_by_parent()
        below = descendants(self.server_pid, children)
        server_tree = {self.server_pid, *below}
        browser = [pid for pid in descendants(os.getpid(), children) if pid not in server_tree]
        workers = [pid for pid in below if is_training_worker(pid)]
        with_tensorflow = [pid for pid in workers if has_tensorflow(pid)]
        training = [pid for pid in with_tensorflow if is_training(pid)]
        self.worker_pids.update(workers)
        self.most_alive_workers = max(self.most_alive_workers, len(workers))
        self.most_training_workers = max(self.most_training_workers, len(training))
        self.most_tensorflow_workers = max(self.most_tensorflow_workers, len(with_tensorflow))
        server_rss = memory_mb(self.server_pid)[0]
        self.peak_server_rss_mb = max(self.peak_server_rss_mb, server_rss)
        total = server_rss + sum(memory_mb(pid)[0] for pid in below)
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)
        browser_pss = sum(proportional_mb(pid) for pid in browser)
        self.peak_browser_pss_mb = max(self.peak_browser_pss_mb, browser_pss)
        for pid in workers:
            self.peak_worker_hwm_mb = max(self.peak_worker_hwm_mb, memory_mb(pid)[1])
        groups = {self.server_pid: "server"} | {pid: "server" for pid in below if pid not in workers}
        groups |= {pid: "training workers" for pid in workers} | {pid: "browser" for pid in browser}
        for pid, group in groups.items():
            if (seconds := cpu_seconds(pid)) is not None:
                self.cpu_by_pid[pid] = (group, seconds)
        self.latest = (
            f"server RSS {server_rss:,.0f} MB, workers {len(workers)} alive / {len(training)} "
            f"training, browser Pss {browser_pss:,.0f} MB, {machine_load()}"
        )
        if not self.quiet and time.monotonic() - self._last_progress >= PROGRESS_PERIOD_S:
            self._last_progress = time.monotonic()
            progress(self.started, f"[machine] {self.latest}")

    def cpu_by_group(self) -> dict[str, float]:
        """CPU seconds per group (server, training workers, browser, rest of the machine) since the start."""
        totals: dict[str, float] = defaultdict(float)
        for group, seconds in self.cpu_by_pid.values():
            totals[group] += seconds
        ours = sum(totals.values())
        # Our processes started after the sampler; the rest is everything else on the machine meanwhile.
        totals["rest of the machine"] = max(0.0, machine_busy_seconds() - self.machine_busy_at_start - ours)
        return dict(totals)

    def finish(self) -> None:
        """Stop sampling, after one last sample."""
        self._stopping.set()
        if self.is_alive():
            self.join()
        self.sample()


def progress(started: float, message: str) -> None:
    """One line on stderr, stamped with the seconds since `started`."""
    print(f"[{time.monotonic() - started:7.1f} s] {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- the server


def prepare_folders(folder: Path, config: LoadConfig) -> dict[str, str]:
    """Runs, models (a copy of the checkout's, with their stored predictions) and data folders for the
    server; its extra environment."""
    runs, models = folder / "runs", folder / "models"
    runs.mkdir()
    models.mkdir()
    for path in sorted((ROOT / "models").iterdir()):
        if path.is_file() and not path.name.startswith("."):
            shutil.copy2(path, models / path.name)  # .keras, .json and .predictions.npz alike
    data_dir = config.data_dir or make_synthetic_cifar(folder / "cifar-10-batches-py", per_batch=200)
    environment = {"CNN_RUNS_DIR": str(runs), "CNN_MODELS_DIR": str(models), "CIFAR10_DIR": str(data_dir)}
    if config.max_workers is not None:
        environment["CNN_MAX_WORKERS"] = str(config.max_workers)
    return environment


def queue_limit(environment: dict[str, str]) -> int:
    """The training queue's worker limit that the server will apply (as cnn.jobs computes it)."""
    from cnn import jobs

    setting = environment.get(jobs.MAX_WORKERS_ENV) or os.environ.get(jobs.MAX_WORKERS_ENV)
    return int(setting) if setting else jobs.default_max_workers()


def stop_training_workers(pids: set[int]) -> None:
    """Workers run in their own sessions, so stopping the server's group leaves them: end them by pid."""
    for pid in pids:
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass


def model_loads(log_text: str) -> Counter:
    """How many times each model file was loaded, from ui/resources.py's log lines."""
    return Counter(Path(path).stem for path in MODEL_LOAD_LINE.findall(log_text))


def await_trainings(runs_dir: Path, config: LoadConfig, measured: Measurements, started: float) -> None:
    """Wait until no started training is active (at most --training-wait seconds); record how each ended.

    A failed training, and one still active when the wait ends, is an error.
    """
    from cnn.errors import UserError
    from cnn.runs import run_state

    def states() -> dict[str, object]:
        found = {}
        for folder in sorted(runs_dir.iterdir()):
            if folder.is_dir() and not folder.name.startswith("."):
                try:
                    found[folder.name] = run_state(folder)
                except UserError as error:
                    found[folder.name] = error
        return found

    deadline = time.monotonic() + config.training_wait_s
    shown = None
    while True:
        current = states()
        active = [name for name, state in current.items() if not isinstance(state, Exception) and state.active]
        if not active or time.monotonic() >= deadline:
            break
        if len(active) != shown and not config.quiet:
            shown = len(active)
            progress(started, f"waiting for {len(active)} training(s) to end")
        time.sleep(2.0)
    for name, state in current.items():
        if isinstance(state, Exception):
            measured.training_ends["unreadable"] += 1
            measured.errors.append(f"training {name}: its run folder cannot be read: {state}")
        elif state.active:
            measured.training_ends[f"still {state.state}"] += 1
            if config.training_wait_s > 0:
                measured.errors.append(
                    f"training {name}: still {state.state} after the "
                    f"{config.training_wait_s:g} s training wait (timeout)"
                )
        else:
            measured.training_ends[state.state] += 1
            if state.state != "finished":
                measured.errors.append(f"training {name}: {state.state}: {state.message}")


# --------------------------------------------------------------------------- one student


def photos(session: int, round_number: int) -> list[dict]:
    """PHOTOS_PER_UPLOAD JPEG 'photos': bundled CIFAR-10 test images scaled up to a phone size.

    Other pictures in every round: the Predict page shows a picture given twice only once.
    """
    from cnn.data import load_sample

    sample = load_sample()
    files = []
    for number in range(PHOTOS_PER_UPLOAD):
        index = (session * 31 + round_number * PHOTOS_PER_UPLOAD + number) % len(sample)
        buffer = io.BytesIO()
        Image.fromarray(sample.images[index]).resize(PHOTO_SIZE, Image.BICUBIC).save(buffer, "JPEG", quality=90)
        files.append(
            {
                "name": f"photo_{session}_{round_number}_{number}.jpg",
                "mimeType": "image/jpeg",
                "buffer": buffer.getvalue(),
            }
        )
    return files


class Student:
    """One browser session: its page, its number, the round it is in and the step it is waiting for."""

    def __init__(
        self, page, number: int, server: StreamlitServer, config: LoadConfig, measured: Measurements, started: float
    ):
        self.page = page
        self.number = number
        self.server = server
        self.config = config
        self.measured = measured
        self.started = started
        self.round = 0
        self.step = "starting"

    async def waiting_for(self, step: str, awaitable):
        """Await `awaitable`, remembering `step` so that a timeout names what was awaited."""
        self.step = step
        return await awaitable

    async def settle(self) -> None:
        """Wait until the app is connected and its script has finished running."""
        await self.waiting_for(
            "the script run to end",
            self.page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached"),
        )
        await self.waiting_for(
            "the running indicator to go", self.page.wait_for_selector("[data-testid=stStatusWidget]", state="detached")
        )

    async def rerun(self, what: str, trigger) -> None:
        """Await `trigger` (a click that reruns the script), then the end of the run it caused."""
        before = await self.page.evaluate(RUNS_ENDED)
        await self.waiting_for(what, trigger)
        try:
            await self.page.wait_for_function(MORE_RUNS_ENDED, arg=before, polling=POLL_MS, timeout=RUN_SEEN_S * 1000)
        except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the run's end was not counted
            self.measured.runs_unseen += 1
            progress(self.started, f"session {self.number}: the run after {what} was not counted; waiting for idle")
        await self.settle()

    async def open_from_menu(self, title: str, ready: str) -> None:
        """Click `title` in the sidebar menu, then wait for the page's run to end and the element `ready`."""
        await self.rerun(f"the menu entry {title!r}", self.page.locator(NAV_LINK).filter(has_text=title).first.click())
        await self.waiting_for(f"{ready} on the {title} page", self.page.locator(ready).first.wait_for())
        await self.settle()

    async def choose_option(self, box: str, number: int) -> str:
        """Pick option `number` (modulo their count) of the selectbox with CSS selector `box`, and wait
        for the rerun it causes (none when it was chosen already); the option's text."""
        combobox = self.page.locator(f"{box} [role=combobox]").first
        # The shown value may sit in the search input (its value, not its text): read both.
        current = (await self.page.locator(box).first.inner_text()).strip()
        for search in await self.page.locator(f"{box} input").all():
            current += " " + await search.input_value()
        await self.waiting_for(f"the selectbox {box}", combobox.click())
        options = self.page.get_by_role("option")
        await self.waiting_for(f"the options of {box}", options.first.wait_for())
        option = options.nth(number % await options.count())
        text = (await option.inner_text()).strip()
        # Choosing the option already chosen causes no run to wait for.
        if await option.get_attribute("aria-selected") == "true" or text in current:
            await self.page.keyboard.press("Escape")
        else:
            await self.rerun(f"the option {text!r} of {box}", option.click())
            await self.waiting_for(
                f"{text!r} shown in {box}",
                self.page.wait_for_function(SHOWS_TEXT, arg=[box, text.split(" (")[0]], polling=POLL_MS),
            )
        return text

    async def open_home(self) -> None:
        await self.waiting_for("Home", self.page.goto(f"{self.server.url}/", wait_until="domcontentloaded"))
        await self.waiting_for("Home's title", self.page.locator(f"{MAIN} h1").first.wait_for())
        await self.settle()

    async def predict_upload(self) -> None:
        """Predict with the session's model (round robin over the saved ones) on freshly uploaded photos."""
        await self.open_from_menu("Predict", PREDICT_MODEL)
        await self.choose_option(PREDICT_MODEL, self.number)
        shown = await self.page.locator(MAIN).inner_text()
        expected = shown.count(ANSWERED_CARD_TEXT) + PHOTOS_PER_UPLOAD
        files = photos(self.number, self.round)
        for attempt in range(1, UPLOAD_ATTEMPTS + 1):
            await self.waiting_for("the upload", self.page.locator(UPLOAD_INPUT).set_input_files(files))
            try:  # the uploader lists the files at once, in the tab, before they reach the server
                await self.page.wait_for_function(
                    UPLOADER_SHOWS, arg=files[-1]["name"], polling=POLL_MS, timeout=UPLOAD_SHOWN_S * 1000
                )
                break
            except Exception:  # noqa: BLE001 - Playwright's TimeoutError: the uploader came back empty
                self.measured.uploads_repeated += 1
                progress(
                    self.started,
                    f"session {self.number} round {self.round}: the uploader did not list "
                    f"the files after {UPLOAD_SHOWN_S} s (attempt {attempt}): uploading again",
                )
        await self.waiting_for(
            f"{PHOTOS_PER_UPLOAD} answered cards",
            self.page.wait_for_function(ANSWERS_AND_PROBLEMS, arg=[ANSWERED_CARD_TEXT, expected], polling=POLL_MS),
        )
        await self.settle()

    async def open_evaluate(self) -> None:
        await self.open_from_menu("Evaluate", EVALUATE_LAST)

    async def open_inspect(self) -> None:
        await self.open_from_menu("Inspect", INSPECT_LAST)

    async def start_training(self) -> str:
        """Start one short training (the session's zoo model); the state its run panel shows first."""
        config = self.config
        await self.open_from_menu("Train", TRAIN_MODEL)
        model = (await self.choose_option(TRAIN_MODEL, self.number)).split(":")[0]
        form = self.page.locator(f".st-key-train_settings_{model}, [data-testid=stForm]").first
        await self.fill_number(f".st-key-train_epochs_{model}", config.train_epochs)
        await self.fill_number(f".st-key-train_subset_{model}", config.train_images)
        await self.waiting_for(
            "the expander 'Validation and saving'", form.locator("[data-testid=stExpander] summary").first.click()
        )
        await self.fill_number(f".st-key-train_val_{model}", config.validation_images)
        run_name = await self.waiting_for(
            "the run's name", self.page.locator(f".st-key-train_out_{model} input").input_value()
        )
        await self.waiting_for("Start training", form.get_by_role("button", name="Start training").click())
        handle = await self.waiting_for(
            f"the run panel of {run_name}",
            self.page.wait_for_function(RUN_PANEL_STATE, arg=[run_name], polling=POLL_MS),
        )
        outcome = await handle.json_value()
        if outcome == "refused":
            texts = await self.page.locator(PROBLEM_BOXES).all_inner_texts()
            raise RuntimeError("the start was refused: " + " / ".join(text.strip() for text in texts))
        return outcome

    async def fill_number(self, box: str, value: int) -> None:
        field = self.page.locator(f"{box} input").first
        await self.waiting_for(f"the field {box}", field.fill(str(value)))
        await field.press("Tab")  # Enter would submit the form

    async def page_problems(self) -> list[str]:
        """Exceptions and error boxes on the page now, first line of each."""
        found = await self.page.locator(PROBLEM_BOXES).all_inner_texts()
        return [text.strip().splitlines()[0] if text.strip() else "(empty)" for text in found]

    async def timed(self, name: str, action):
        """Run one action; record its latency, or an error when it fails, times out or shows an error box."""
        started = time.monotonic()
        self.step = "the action to begin"
        try:
            result = await asyncio.wait_for(action(), self.config.action_timeout_s)
        except Exception as error:  # noqa: BLE001 - every failure of a session is a measured error
            await self.record_error(name, error, time.monotonic() - started)
            return None
        seconds = time.monotonic() - started
        self.measured.latencies[name].append(seconds)
        problems = await self.page_problems()
        for problem in problems:
            await self.record_error(name, RuntimeError(f"error box: {problem}"), seconds)
        if not self.config.quiet:
            detail = f" ({result})" if isinstance(result, str) else ""
            server_rss = memory_mb(self.server.process.pid)[0]
            progress(
                self.started,
                f"session {self.number} round {self.round}: {name} {seconds:.1f} s{detail}; "
                f"server RSS now {server_rss:,.0f} MB",
            )
        return result

    async def record_error(self, name: str, error: Exception, seconds: float) -> None:
        if isinstance(error, (asyncio.TimeoutError, TimeoutError)) or type(error).__name__ == "TimeoutError":
            message = f"timeout after {seconds:.0f} s waiting for {self.step}"
        else:
            message = f"{type(error).__name__}: {(str(error).splitlines() or [''])[0][:300]}"
        line = f"session {self.number} round {self.round}, {name}: {message}"
        self.measured.errors.append(line)
        progress(self.started, "ERROR " + line)
        if self.config.screenshots:
            path = self.config.screenshots / f"session{self.number}_round{self.round}_{name.replace(' ', '_')}.png"
            try:
                await asyncio.wait_for(self.page.screenshot(path=str(path), full_page=True), 60)
            except Exception:  # noqa: BLE001 - a screenshot is a debugging aid, never a second error
                pass

    async def attend(self) -> None:
        """The session's whole visit: Home, then rounds of Predict, Evaluate, Inspect (and Train once)."""
        await self.timed("open home", self.open_home)
        while self.round == 0 or time.monotonic() - self.started < self.config.duration_s:
            for name, action in [
                ("predict upload", self.predict_upload),
                ("open evaluate", self.open_evaluate),
                ("open inspect", self.open_inspect),
            ]:
                await self.timed(name, action)
            if self.round == 0:
                outcome = await self.timed("start training", self.start_training)
                if outcome is not None:
                    self.measured.training_starts[outcome] += 1
            self.round += 1


async def student(
    browser, server: StreamlitServer, number: int, config: LoadConfig, measured: Measurements, started: float
) -> None:
    """One browser context (its own Streamlit session), started `number` staggers after the first."""
    await asyncio.sleep(number * config.stagger_s)
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, reduced_motion="reduce")
    await context.add_init_script(COUNT_RUNS)
    context.set_default_timeout(config.action_timeout_s * 1000)
    page = await context.new_page()
    page.on("pageerror", lambda error: measured.errors.append(f"session {number}, JavaScript: {error}"))
    try:
        await Student(page, number, server, config, measured, started).attend()
    finally:
        await context.close()


async def drive_sessions(server: StreamlitServer, config: LoadConfig, started: float) -> Measurements:
    """All sessions at once in one chromium; their measurements."""
    from playwright.async_api import async_playwright

    measured = Measurements()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS + LOAD_CHROMIUM_ARGS
        )
        try:
            await asyncio.gather(
                *(student(browser, server, number, config, measured, started) for number in range(config.sessions))
            )
        finally:
            await browser.close()
    measured.sessions_wall_s = time.monotonic() - started
    return measured


# --------------------------------------------------------------------------- the report


def latency_table(latencies: dict[str, list[float]]) -> list[str]:
    lines = [f"{'action':<16} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"]
    for name in ACTIONS:
        values = latencies.get(name)
        if values:
            lines.append(
                f"{name:<16} {len(values):>4} {np.percentile(values, 50):>7.2f} "
                f"{np.percentile(values, 95):>7.2f} {max(values):>7.2f}"
            )
    return lines


@dataclass(frozen=True)
class ServerFigures:
    """What the server went through, read when the sessions and trainings are over."""

    peak_rss_mb: float  # VmHWM of the streamlit process
    loads: Counter  # model file stem -> loads
    limit: int  # the training queue's worker limit
    wall_s: float  # from the first session's start to the end of the training wait


def report(
    config: LoadConfig,
    command: str,
    load_at_start: str,
    data_note: str,
    measured: Measurements,
    sampler: ServerSampler,
    server: ServerFigures,
    started_at: datetime,
) -> str:
    cpu = sampler.cpu_by_group()
    lines = [
        f"command: {command}",
        f"started {started_at:%Y-%m-%d %H:%M} UTC, ended {datetime.now(timezone.utc):%H:%M} UTC; machine: "
        f"{platform.machine()}, "
        f"{os.cpu_count()} CPUs",
        f"machine load at the start: {load_at_start}",
        f"machine load at the end:   {machine_load()}",
        f"classroom load: {config.sessions} sessions in one chromium, started {config.stagger_s:g} s apart, "
        f"duration {config.duration_s:g} s (at least one round each); sessions' wall time "
        f"{measured.sessions_wall_s:.0f} s, with the training wait {server.wall_s:.0f} s",
        f"data: {data_note}; training per session: {config.train_epochs} epoch(s), {config.train_images} images, "
        f"{config.validation_images} validation images",
        "",
        *latency_table(measured.latencies),
        "",
        f"errors: {len(measured.errors)}",
        *(f"  {error}" for error in measured.errors[:30]),
        *([f"  ... and {len(measured.errors) - 30} more"] if len(measured.errors) > 30 else []),
        f"server peak RSS (VmHWM of the streamlit process): {server.peak_rss_mb:,.0f} MB",
        f"server + training workers, largest sampled total RSS: {sampler.peak_total_rss_mb:,.0f} MB "
        f"(largest worker VmHWM {sampler.peak_worker_hwm_mb:,.0f} MB); browser (chromium and its driver, "
        f"summed Pss): {sampler.peak_browser_pss_mb:,.0f} MB",
        f"uploads given again because the uploader did not list the files within {UPLOAD_SHOWN_S} s: "
        f"{measured.uploads_repeated}",
        f"script runs not counted within {RUN_SEEN_S} s of their click (the idle app taken as their end): "
        f"{measured.runs_unseen}",
        "model loads (from the server log): "
        + (", ".join(f"{name} {count}" for name, count in sorted(server.loads.items())) or "none"),
        "training starts (first state shown): "
        + (", ".join(f"{name} {count}" for name, count in sorted(measured.training_starts.items())) or "none"),
        "training ends: "
        + (", ".join(f"{name} {count}" for name, count in sorted(measured.training_ends.items())) or "none")
        + f" (waited up to {config.training_wait_s:g} s)",
        f"training workers: at most {sampler.most_training_workers} training at once (the queue's limit: "
        f"{server.limit}; {sampler.most_tensorflow_workers} with TensorFlow loaded, counting finished ones still "
        f"exiting), at most {sampler.most_alive_workers} alive at once (training or waiting in line), "
        f"{len(sampler.worker_pids)} in all; sampled every {SAMPLE_PERIOD_S:g} s",
        "CPU seconds used meanwhile: " + ", ".join(f"{name} {seconds:,.0f}" for name, seconds in cpu.items()),
        "goals: 0 errors {}; server RSS under 3 GB {}; 1 load per model {}; workers within the queue's limit {}".format(
            *(
                "met" if ok else "MISSED"
                for ok in (
                    not measured.errors,
                    server.peak_rss_mb < GOAL_SERVER_RSS_MB,
                    bool(server.loads) and set(server.loads.values()) == {1},
                    sampler.most_training_workers <= server.limit,
                )
            )
        ),
    ]
    return "\n".join(lines)


def run(config: LoadConfig, command: str) -> int:
    load_at_start, started_at = machine_load(), datetime.now(timezone.utc)
    print(f"command: {command}\nmachine load at the start: {load_at_start}", file=sys.stderr, flush=True)
    if config.screenshots:
        config.screenshots.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="classroom_load_") as temporary:
        folder = Path(temporary)
        environment = prepare_folders(folder, config)
        data_note = (
            str(config.data_dir)
            if config.data_dir
            else "synthetic CIFAR-10, 1,000 training and 50 test images (not classroom figures)"
        )
        server = StreamlitServer(ROOT / "streamlit_app.py", folder / "server.log", env=environment, port=config.port)
        sampler = ServerSampler(server.process.pid, config.quiet)
        try:
            server.wait_healthy()
            sampler.start()
            started = sampler.started = time.monotonic()
            measured = asyncio.run(drive_sessions(server, config, started))
            # With --training-wait 0 this only reads how the trainings stand.
            await_trainings(Path(environment["CNN_RUNS_DIR"]), config, measured, started)
            wall_s = time.monotonic() - started
            sampler.finish()
            figures = ServerFigures(
                memory_mb(server.process.pid)[1], model_loads(server.log_tail(10**8)), queue_limit(environment), wall_s
            )
            log_text = server.log_tail(characters=3000)
        finally:
            sampler.finish()
            stop_training_workers(sampler.worker_pids)
            server.stop()
    print(report(config, command, load_at_start, data_note, measured, sampler, figures, started_at))
    if measured.errors:
        print(f"\nserver log, last lines:\n{log_text}", file=sys.stderr)
    return 0 if not measured.errors else 1


@dataclass(frozen=True)
class Option:
    """One command-line option: its flag, the LoadConfig field it sets (whose default is the option's) and
    how it reads."""

    flag: str
    field: str
    type: type
    help: str
    metavar: str | None = None  # None: argparse's own, the field's name in capitals


OPTIONS = (
    Option(
        "--sessions",
        "sessions",
        int,
        "browser sessions (students) at once, each a context of one chromium (default: %(default)s)",
    ),
    Option(
        "--duration",
        "duration_s",
        float,
        "keep repeating Predict/Evaluate/Inspect until this many seconds after the first "
        "session started (default: %(default)s, one round each)",
        "SECONDS",
    ),
    Option(
        "--stagger",
        "stagger_s",
        float,
        "seconds between two sessions' starts, as students arrive (default: %(default)s)",
        "SECONDS",
    ),
    Option(
        "--action-timeout",
        "action_timeout_s",
        float,
        "longest wait for one action (open a page, upload, start a training); a longer one "
        "is an error naming the step it waited for (default: %(default)s)",
        "SECONDS",
    ),
    Option(
        "--training-wait",
        "training_wait_s",
        float,
        "after the sessions, wait this long for the started trainings to end; one still "
        "running then, or failed, is an error (0: do not wait, stop them; default: %(default)s)",
        "SECONDS",
    ),
    Option(
        "--max-workers",
        "max_workers",
        int,
        "CNN_MAX_WORKERS for the server: trainings at once (default: the environment's "
        "CNN_MAX_WORKERS, else one per two cores)",
        "N",
    ),
    Option(
        "--data-dir",
        "data_dir",
        Path,
        "CIFAR-10 python-layout folder for the server (default: a generated synthetic set)",
    ),
    Option("--port", "port", int, "the server's port (default: a free one)"),
    Option("--train-epochs", "train_epochs", int, "epochs of each session's training (default: %(default)s)"),
    Option(
        "--train-images",
        "train_images",
        int,
        "training images of each session's training (at least 16; default: %(default)s)",
    ),
    Option(
        "--validation-images",
        "validation_images",
        int,
        "validation images of each session's training (at least 10; default: %(default)s)",
    ),
    Option(
        "--screenshots",
        "screenshots",
        Path,
        "save a screenshot of the page at every error into FOLDER (default: none)",
        "FOLDER",
    ),
)


def parse_arguments(argv: list[str] | None = None) -> LoadConfig:
    """The run's LoadConfig from the command line: one option per field of OPTIONS, and --quiet."""
    defaults = LoadConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    for option in OPTIONS:
        parser.add_argument(
            option.flag,
            dest=option.field,
            type=option.type,
            default=getattr(defaults, option.field),
            metavar=option.metavar,
            help=option.help,
        )
    parser.add_argument(
        "--quiet",
        action="store_true",
        help=f"no progress lines on stderr (one per action, one about the machine every {PROGRESS_PERIOD_S:g} s)",
    )
    arguments = parser.parse_args(argv)
    if arguments.sessions < 1:
        parser.error("--sessions must be at least 1")
    if min(arguments.stagger_s, arguments.duration_s, arguments.training_wait_s) < 0 or arguments.action_timeout_s <= 0:
        parser.error("--stagger, --duration and --training-wait must be 0 or more, --action-timeout more than 0")
    if arguments.max_workers is not None and arguments.max_workers < 1:
        parser.error("--max-workers must be at least 1")
    return LoadConfig(**vars(arguments))


def stop_cleanly_on_signals() -> None:
    """Ctrl-C, and a kill (SIGTERM), end the run through its clean-up (server and workers stopped), even
    when started in the background, where a shell ignores SIGINT."""
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda number, frame: sys.exit(128 + number))


if __name__ == "__main__":
    stop_cleanly_on_signals()
    sys.exit(run(parse_arguments(), shlex.join(["python", *sys.argv])))
