"""Time the Evaluate page's first paint for every shipped model (target: 2 s or less).

Prints, per model in models/, three figures:
  1. data path: the stored predictions verified (sha256 of model and predictions file), decoded and
     turned into the two classification reports and confusion matrices, with cold caches;
  2. page, cold: a full AppTest run of pages/evaluate.py with that model chosen and every Streamlit
     cache empty, as on a fresh server: includes reading the test images for the gallery;
  3. page, warm: the same in a new session once the test images are cached (they are shared by
     every session and page, so this is every visit after the server's first).
Python modules (scikit-learn, plotly) are imported once before timing, as in a server that has drawn
any page. Median of REPEATS runs each. Run:
  CIFAR10_DIR=../shared/data/cifar-10-batches-py .venv/bin/python benchmarks/evaluate_first_paint.py
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from cnn import artifacts, data  # noqa: E402
from ui import evaluation_views  # noqa: E402

PAGE = str(ROOT / "pages" / "evaluate.py")
REPEATS = 3
TARGET_S = 2.0


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def data_path(name: str) -> None:
    evaluation = evaluation_views.stored_evaluation(name)
    if evaluation is None:
        raise SystemExit(f"{name} has no stored predictions: run `python -m cnn evaluate {name} --record`")


def page_run(name: str) -> None:
    app = AppTest.from_file(PAGE, default_timeout=300)
    app.session_state["eval_model"] = name
    app.run()
    if app.exception:
        raise SystemExit(f"{name}: the page failed: {app.exception[0].value}")
    if app.info and evaluation_views.MEASURED_HERE in app.info[0].value:
        raise SystemExit(f"{name}: the page ran the model instead of using its stored predictions")


def median_seconds(action, cold: bool) -> float:
    timings = []
    for _ in range(REPEATS):
        if cold:
            clear_caches()
        started = time.perf_counter()
        action()
        timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def main() -> int:
    """Print the table; exit status 1 when a model misses the target (run_all.py reports it)."""
    names = [record["name"] for record in artifacts.list_models()]
    location = data.find_data_dir()
    print(f"Evaluate first paint, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"test images: {location or 'bundled sample'}; median of {REPEATS}\n")
    data_path(names[0])  # imports, once per process
    page_run(names[0])
    missed = False
    print("| model | data path (s) | page, cold caches (s) | page, warm (s) | within 2 s |")
    print("|---|---|---|---|---|")
    for name in names:
        path_s = median_seconds(lambda: data_path(name), cold=True)
        cold_s = median_seconds(lambda: page_run(name), cold=True)
        page_run(name)  # the test images are now cached, as after any earlier visit
        warm_s = median_seconds(lambda: page_run(name), cold=False)
        verdict = "yes" if max(cold_s, warm_s) <= TARGET_S else ("warm only" if warm_s <= TARGET_S else "no")
        print(f"| {name} | {path_s:.3f} | {cold_s:.2f} | {warm_s:.2f} | {verdict} |", flush=True)
        missed = missed or verdict != "yes"
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
