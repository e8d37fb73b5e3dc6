"""A class at once: N browser sessions on one real dashboard server, and what the server went through.

Starts `streamlit run streamlit_app.py` (headless, its own models, runs and data folders, so
nothing of the checkout is read or replaced besides a copy of models/), then drives N
simultaneous sessions of headless Debian chromium. Each session, as a student would:

  opens Home; uploads photos to Predict (session i uses the i-th saved model, round robin);
  opens Evaluate and Inspect (their default model); starts one short training on the Train
  page; then repeats Predict, Evaluate and Inspect until --duration seconds have passed.

It prints per-action latency (p50/p95/max), the errors seen (exceptions or error boxes on a
page, JavaScript errors, timeouts: the goal is 0), the server's peak RSS, the number of model
loads per model file (from the "Loading model" line ui/resources.py logs on each cache miss;
goal: 1 per model), and the most training workers seen at once (sampled from the process
table). Goals from issue 11: 0 errors, server RSS under 3 GB, 1 load per model, no more
training workers than the queue allows.

Run (a benchmark, not a test; the browsers share the machine with the server, so latencies
include their CPU too):
    nice -n 19 .venv/bin/python benchmarks/classroom_load.py --sessions 30
    ... --data-dir /work/shared/data/cifar-10-batches-py   # the real data, as in a classroom
Without --data-dir a small synthetic CIFAR-10 (1,000 training, 50 test images) is generated, so
Evaluate and training are far cheaper than with the real data: say which was used.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import os
import platform
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.browser_support import CHROMIUM, CHROMIUM_ARGS, StreamlitServer  # noqa: E402
from tests.conftest import make_synthetic_cifar  # noqa: E402

PHOTOS_PER_UPLOAD = 3
PHOTO_SIZE = (640, 480)  # a phone photo scaled down, as students upload them
SAMPLE_PERIOD_S = 0.5  # how often the process table is read
MODEL_LOAD_LINE = re.compile(r"Loading model (\S+) \(sha256")
GOALS_SERVER_RSS_MB = 3000


@dataclass(frozen=True)
class LoadConfig:
    """One benchmark run.

    Attributes:
        sessions: simultaneous browser sessions (students).
        duration_s: after the first round, sessions repeat Predict/Evaluate/Inspect until
            this many seconds have passed since the start (0: one round).
        port: the server's port (None: a free one).
        data_dir: CIFAR-10 python-layout folder for the server (None: generated synthetic set).
        action_timeout_s: longest wait for one action before it counts as an error.
        train_epochs, train_images, validation_images: the short training each session starts.
    """

    sessions: int = 30
    duration_s: float = 0.0
    port: int | None = None
    data_dir: Path | None = None
    action_timeout_s: float = 300.0
    train_epochs: int = 1
    train_images: int = 64
    validation_images: int = 10


@dataclass
class Measurements:
    """What the sessions saw: latency per action, errors, training outcomes."""

    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: list[str] = field(default_factory=list)
    training_outcomes: Counter = field(default_factory=Counter)


# --------------------------------------------------------------------------- the process table


def _children_by_parent() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # the process ended meanwhile
        children[int(fields[1])].append(int(entry.name))
    return children


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (children, their children, ...)."""
    children, found, waiting = _children_by_parent(), [], [pid]
    while waiting:
        for child in children.get(waiting.pop(), []):
            found.append(child)
            waiting.append(child)
    return found


def memory_mb(pid: int) -> tuple[float, float]:
    """(VmRSS, VmHWM) of `pid` in MB, (0, 0) once it has ended."""
    values = {"VmRSS": 0.0, "VmHWM": 0.0}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            name, _, rest = line.partition(":")
            if name in values:
                values[name] = int(rest.split()[0]) / 1024
    except OSError:
        pass
    return values["VmRSS"], values["VmHWM"]


def is_training_worker(pid: int) -> bool:
    """A `python -m cnn ...` process: how cnn/jobs.py starts a training worker."""
    try:
        arguments = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(arguments[index:index + 2] == [b"-m", b"cnn"] for index in range(len(arguments)))


class ServerSampler(threading.Thread):
    """Reads the server's memory and its training workers every SAMPLE_PERIOD_S seconds."""

    def __init__(self, server_pid: int):
        super().__init__(daemon=True)
        self.server_pid = server_pid
        self.peak_total_rss_mb = 0.0  # server + all its descendants, at one sample
        self.peak_worker_hwm_mb = 0.0
        self.most_workers = 0
        self.worker_pids: set[int] = set()
        self._stopping = threading.Event()

    def run(self) -> None:
        while not self._stopping.wait(SAMPLE_PERIOD_S):
            self.sample()

    def sample(self) -> None:
        below = descendants(self.server_pid)
        workers = [pid for pid in below if is_training_worker(pid)]
        self.worker_pids.update(workers)
        self.most_workers = max(self.most_workers, len(workers))
        total = sum(memory_mb(pid)[0] for pid in [self.server_pid, *below])
        self.peak_total_rss_mb = max(self.peak_total_rss_mb, total)
        for pid in workers:
            self.peak_worker_hwm_mb = max(self.peak_worker_hwm_mb, memory_mb(pid)[1])

    def finish(self) -> None:
        """Stop sampling, after one last sample."""
        self._stopping.set()
        if self.is_alive():
            self.join()
        self.sample()


# --------------------------------------------------------------------------- the server


def prepare_folders(folder: Path, data_dir: Path | None) -> dict[str, str]:
    """Runs, models (a copy of the checkout's) and data folders for the server; its extra environment."""
    runs, models = folder / "runs", folder / "models"
    runs.mkdir()
    models.mkdir()
    for path in sorted((ROOT / "models").glob("*")):
        if path.suffix in (".keras", ".json"):
            shutil.copy2(path, models / path.name)
    if data_dir is None:
        data_dir = make_synthetic_cifar(folder / "cifar-10-batches-py", per_batch=200)
    return {"CNN_RUNS_DIR": str(runs), "CNN_MODELS_DIR": str(models), "CIFAR10_DIR": str(data_dir)}


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


# --------------------------------------------------------------------------- one student


def photos(session: int) -> list[dict]:
    """PHOTOS_PER_UPLOAD JPEG 'photos': bundled CIFAR-10 test images scaled up to a phone size."""
    from cnn.data import load_sample

    sample = load_sample()
    files = []
    for number in range(PHOTOS_PER_UPLOAD):
        index = (session * PHOTOS_PER_UPLOAD + number) % len(sample)
        buffer = io.BytesIO()
        Image.fromarray(sample.images[index]).resize(PHOTO_SIZE, Image.BICUBIC).save(buffer, "JPEG", quality=90)
        files.append({"name": f"photo_{session}_{number}.jpg", "mimeType": "image/jpeg",
                      "buffer": buffer.getvalue()})
    return files


async def settle(page) -> None:
    """Wait until the app is connected and its script has finished running."""
    await page.wait_for_selector("[data-testid=stApp][data-test-script-state=notRunning]", state="attached")
    await page.wait_for_selector("[data-testid=stStatusWidget]", state="detached")


async def open_from_menu(page, title: str, heading: str) -> None:
    """Click `title` in the sidebar menu and wait for the page's heading and its run to end."""
    await page.locator("[data-testid=stSidebarNavLink]").filter(has_text=title).first.click()
    await page.get_by_role("heading", name=heading).first.wait_for()
    await settle(page)


async def choose_option(page, box_name: str, option) -> None:
    await page.get_by_role("combobox", name=box_name, exact=True).click()
    await option(page).click()
    await settle(page)


async def open_home(page, server: StreamlitServer, session: int) -> None:
    await page.goto(f"{server.url}/", wait_until="domcontentloaded")
    await page.get_by_role("heading").first.wait_for()
    await settle(page)


async def predict_upload(page, server: StreamlitServer, session: int) -> None:
    """Predict with the session's model (round robin over the saved ones) on freshly uploaded photos."""
    await open_from_menu(page, "Predict", "Predict: what is in this picture?")
    model_box = "Model (the best one is first)"
    models = await count_options(page, model_box)
    await choose_option(page, model_box, lambda page: page.get_by_role("option").nth(session % models))
    shown = await page.get_by_text("Top guess:").count()
    await page.locator("[data-testid=stFileUploader] input[type=file]").set_input_files(photos(session))
    await wait_until(lambda: page.get_by_text("Top guess:").count(), shown + PHOTOS_PER_UPLOAD)
    await settle(page)


async def wait_until(count, expected: int) -> None:
    """Poll an async count until it reaches `expected` (the action's timeout bounds the wait)."""
    while await count() < expected:
        await asyncio.sleep(0.25)


async def count_options(page, box_name: str) -> int:
    box = page.get_by_role("combobox", name=box_name, exact=True)
    await box.click()
    await page.get_by_role("option").first.wait_for()
    count = await page.get_by_role("option").count()
    await page.keyboard.press("Escape")
    return count


async def open_evaluate(page, server: StreamlitServer, session: int) -> None:
    await open_from_menu(page, "Evaluate", "Evaluate a model")
    await page.get_by_text("Most confused pairs").first.wait_for()  # the last part the page draws
    await settle(page)


async def open_inspect(page, server: StreamlitServer, session: int) -> None:
    await open_from_menu(page, "Inspect", "Inspect: inside a trained CNN")
    await page.get_by_role("heading", name="Grad-CAM: where the model looks").first.wait_for()
    await settle(page)


async def start_training(page, server: StreamlitServer, session: int, config: LoadConfig) -> str:
    """Start one short training on the Train page as it is now; returns the outcome's name.

    "started" means the page accepted the run (Start became disabled), "queued" that it says the
    run waits in the machine's queue ("2nd in line"), "refused" that it showed an error, "busy"
    that Start was already disabled.
    """
    await open_from_menu(page, "Train", "Train a CNN")
    zoo = await count_options(page, "Model")
    await choose_option(page, "Model", lambda page: page.get_by_role("option").nth(session % zoo))
    start = page.get_by_role("button", name="Start training")
    if not await start.is_enabled():
        return "busy"
    for label, value in [("Epochs (passes over the images)", config.train_epochs),
                         ("Training images (first N of the training set)", config.train_images)]:
        await fill_number(page, label, value)
    await page.get_by_text("Validation and saving").click()
    await fill_number(page, "Validation images (the last N training images)", config.validation_images)
    await start.click()
    error_box = page.locator("[data-testid=stMain] [data-testid=stAlertContentError]")
    await page.wait_for_function(
        "() => { const button = [...document.querySelectorAll('button')].find("
        "b => b.innerText.includes('Start training'));"
        " const main = document.querySelector('[data-testid=stMain]');"
        " return (button && button.disabled) || /in line|Waiting/.test(main ? main.innerText : '') ||"
        " document.querySelector('[data-testid=stMain] [data-testid=stAlertContentError]'); }")
    await settle(page)
    if await error_box.count():
        return "refused: " + " / ".join(await error_box.all_inner_texts())
    return "queued" if await page.get_by_text(re.compile(r"in line|queue", re.I)).count() else "started"


async def fill_number(page, label: str, value: int) -> None:
    field = page.get_by_label(label, exact=True)
    await field.fill(str(value))
    await field.press("Tab")  # Enter would submit the form


async def page_problems(page, *, with_error_boxes: bool) -> list[str]:
    """Exceptions, and unless told otherwise error boxes, on the page now."""
    found = await page.locator("[data-testid=stException]").all_inner_texts()
    if with_error_boxes:
        found += await page.locator("[data-testid=stMain] [data-testid=stAlertContentError]").all_inner_texts()
    return [text.strip().splitlines()[0] if text.strip() else "(empty)" for text in found]


async def timed(name: str, action, page, session: int, measured: Measurements, timeout_s: float):
    """Run one action; record its latency, or an error when it fails, times out or shows an error."""
    started = time.monotonic()
    try:
        result = await asyncio.wait_for(action(), timeout_s)
    except Exception as error:  # noqa: BLE001 - every failure of a session is a measured error
        kind = "timeout" if isinstance(error, (asyncio.TimeoutError, TimeoutError)) else type(error).__name__
        first_line = (str(error).splitlines() or [""])[0][:200]  # a TimeoutError has no message
        measured.errors.append(f"session {session}, {name}: {kind}: {first_line}")
        return None
    measured.latencies[name].append(time.monotonic() - started)
    # A refused training start is an outcome, counted apart; an exception is an error everywhere.
    problems = await page_problems(page, with_error_boxes=name != "start training")
    measured.errors += [f"session {session}, {name}: {problem}" for problem in problems]
    return result


async def student(browser, server: StreamlitServer, session: int, config: LoadConfig,
                  measured: Measurements, started: float) -> None:
    """One browser session doing what a student does, until the duration is over."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(config.action_timeout_s * 1000)
    page = await context.new_page()
    page.on("pageerror", lambda error: measured.errors.append(f"session {session}, JavaScript: {error}"))
    timeout = config.action_timeout_s
    try:
        await timed("open home", lambda: open_home(page, server, session), page, session, measured, timeout)
        first_round = True
        while first_round or time.monotonic() - started < config.duration_s:
            for name, action in [("predict upload", predict_upload), ("open evaluate", open_evaluate),
                                 ("open inspect", open_inspect)]:
                await timed(name, lambda action=action: action(page, server, session), page, session,
                            measured, timeout)
            if first_round:
                outcome = await timed("start training", lambda: start_training(page, server, session, config),
                                      page, session, measured, timeout)
                if outcome is not None:
                    measured.training_outcomes[outcome.split(":")[0]] += 1
                    if outcome.startswith("refused"):
                        print(f"session {session}: training {outcome}", flush=True)
            first_round = False
    finally:
        await context.close()


async def drive_sessions(server: StreamlitServer, config: LoadConfig) -> Measurements:
    from playwright.async_api import async_playwright

    measured = Measurements()
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        started = time.monotonic()
        await asyncio.gather(*(student(browser, server, session, config, measured, started)
                               for session in range(config.sessions)))
        await browser.close()
    return measured


# --------------------------------------------------------------------------- the report


def latency_table(latencies: dict[str, list[float]]) -> list[str]:
    lines = [f"{'action':<16} {'n':>4} {'p50 s':>7} {'p95 s':>7} {'max s':>7}"]
    for name in ["open home", "predict upload", "open evaluate", "open inspect", "start training"]:
        values = latencies.get(name)
        if values:
            lines.append(f"{name:<16} {len(values):>4} {np.percentile(values, 50):>7.2f} "
                         f"{np.percentile(values, 95):>7.2f} {max(values):>7.2f}")
    return lines


def report(config: LoadConfig, data_note: str, measured: Measurements, sampler: ServerSampler,
           server_hwm_mb: float, loads: Counter, wall_s: float) -> str:
    load_average = os.getloadavg()[0]
    lines = [
        f"classroom load: {config.sessions} sessions at once, duration {config.duration_s:g} s "
        f"(at least one round each), wall time {wall_s:.0f} s",
        f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {load_average:.1f} at the end; "
        f"the server and {config.sessions} chromium tabs share these CPUs",
        f"data: {data_note}; training per session: {config.train_epochs} epoch(s), {config.train_images} images, "
        f"{config.validation_images} validation images",
        "",
        *latency_table(measured.latencies),
        "",
        f"errors: {len(measured.errors)}",
        *(f"  {error}" for error in measured.errors[:20]),
        f"server peak RSS (VmHWM of the streamlit process): {server_hwm_mb:,.0f} MB",
        f"server + training workers, largest sampled total RSS: {sampler.peak_total_rss_mb:,.0f} MB "
        f"(largest worker VmHWM {sampler.peak_worker_hwm_mb:,.0f} MB)",
        "model loads (from the server log): "
        + (", ".join(f"{name} {count}" for name, count in sorted(loads.items())) or "none"),
        "training starts: " + (", ".join(f"{name} {count}" for name, count in
                                         sorted(measured.training_outcomes.items())) or "none")
        + f"; most training workers at once: {sampler.most_workers} (sampled every {SAMPLE_PERIOD_S:g} s), "
        f"{len(sampler.worker_pids)} in all",
        "goals: 0 errors {}; server RSS under 3 GB {}; 1 load per model {}".format(
            *("met" if ok else "MISSED" for ok in (
                not measured.errors, server_hwm_mb < GOALS_SERVER_RSS_MB,
                bool(loads) and set(loads.values()) == {1}))),
    ]
    return "\n".join(lines)


def run(config: LoadConfig) -> int:
    with tempfile.TemporaryDirectory(prefix="classroom_load_") as temporary:
        folder = Path(temporary)
        environment = prepare_folders(folder, config.data_dir)
        data_note = (str(config.data_dir) if config.data_dir
                     else "synthetic CIFAR-10, 1,000 training and 50 test images (not classroom figures)")
        server = StreamlitServer(ROOT / "streamlit_app.py", folder / "server.log", env=environment,
                                 port=config.port)
        sampler = ServerSampler(server.process.pid)
        try:
            server.wait_healthy()
            sampler.start()
            started = time.monotonic()
            measured = asyncio.run(drive_sessions(server, config))
            wall_s = time.monotonic() - started
            sampler.finish()
            server_hwm_mb = memory_mb(server.process.pid)[1]
            log_text = server.log_tail(characters=10**8)
        finally:
            sampler.finish()
            stop_training_workers(sampler.worker_pids)
            server.stop()
    print(report(config, data_note, measured, sampler, server_hwm_mb, model_loads(log_text), wall_s))
    if measured.errors:
        print(f"\nserver log, last lines:\n{log_text[-3000:]}", file=sys.stderr)
    return 0 if not measured.errors else 1


def parse_arguments(argv: list[str] | None = None) -> LoadConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=LoadConfig.sessions, help="simultaneous browser sessions")
    parser.add_argument("--duration", type=float, default=LoadConfig.duration_s,
                        help="seconds to keep repeating Predict/Evaluate/Inspect after the first round (0: once)")
    parser.add_argument("--port", type=int, default=None, help="the server's port (default: a free one)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="CIFAR-10 python-layout folder (default: a generated synthetic set)")
    parser.add_argument("--action-timeout", type=float, default=LoadConfig.action_timeout_s,
                        help="seconds before one action counts as an error")
    arguments = parser.parse_args(argv)
    if arguments.sessions < 1:
        parser.error("--sessions must be at least 1")
    return LoadConfig(sessions=arguments.sessions, duration_s=arguments.duration, port=arguments.port,
                      data_dir=arguments.data_dir, action_timeout_s=arguments.action_timeout)


if __name__ == "__main__":
    sys.exit(run(parse_arguments()))
