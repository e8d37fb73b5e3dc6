"""Time the Evaluate page's first paint for every shipped model (target: 2 s or less).

Prints, per model in models/:
  1. page data, cold: everything the page computes before Streamlit draws it, with every Streamlit
     cache empty, as on a fresh server: the stored predictions verified (sha256 of the model and of
     the predictions file) and decoded, both per-class metrics and confusion matrices, the
     per-class table, the confusion-matrix and per-class figures serialized, the test images read for
     the gallery and its 12 images enlarged;
  2. page data, warm: the same once the test images and the checked stored predictions are cached
     (shared by every session: every visit and rerun after the server's first);
  3. AppTest run of the whole page (warm), and the same harness running an empty page: the difference
     is what the page itself adds (widgets, elements, serialization).
Python modules are imported once before timing, as in a server that has drawn any page. Median of
REPEATS runs. Run:
  CIFAR10_DIR=../shared/data/cifar-10-batches-py .venv/bin/python benchmarks/evaluate_first_paint.py
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import streamlit as st  # noqa: E402
from streamlit.testing.v1 import AppTest  # noqa: E402

from benchmarks.timing import timed_runs  # noqa: E402
from cnn import artifacts, data  # noqa: E402
from cnn.pictures import enlarge  # noqa: E402
from ui import evaluation_views, resources  # noqa: E402

PAGE = str(ROOT / "pages" / "evaluate.py")
REPEATS = 3
TARGET_S = 2.0


def clear_caches() -> None:
    st.cache_data.clear()
    st.cache_resource.clear()


def page_data(name: str) -> None:
    """What pages/evaluate.py computes for a model with stored predictions, without drawing it."""
    evaluation = evaluation_views.stored_evaluation(name)
    if evaluation is None:
        raise SystemExit(f"{name} has no stored predictions: run `python -m cnn evaluate {name} --record`")
    details = evaluation.main
    evaluation_views.class_metrics_table(details)
    evaluation_views.confusion_figure(details, normalized=False).to_json()
    evaluation_views.per_class_figure(details).to_json()
    evaluation_views.confused_pairs_table(details)
    split, _ = resources.test_images()
    true_name, predicted_name, _ = details.most_confused(1)[0]
    indices = details.mistakes(
        evaluation_views.CLASS_NAMES.index(true_name), evaluation_views.CLASS_NAMES.index(predicted_name)
    )
    shown = indices[indices < len(split)][: evaluation_views.MISTAKES_SHOWN]
    [enlarge(split.images[index], evaluation_views.GALLERY_SCALE) for index in shown]
    [details.answers.top(index) for index in shown]


def page_run(name: str) -> None:
    app = AppTest.from_file(PAGE, default_timeout=300)
    app.session_state["eval_model"] = name
    app.run()
    if app.exception:
        raise SystemExit(f"{name}: the page failed: {app.exception[0].value}")
    if app.info and evaluation_views.MEASURED_HERE in app.info[0].value:
        raise SystemExit(f"{name}: the page ran the model instead of using its stored predictions")


def empty_page_run() -> None:
    AppTest.from_string("import streamlit as st", default_timeout=300).run()


def median_seconds(action, cold: bool = False) -> float:
    """Median of REPEATS timed calls (no warm-up); `cold`: each after the page's caches are emptied."""
    return statistics.median(timed_runs(action, REPEATS, before=clear_caches if cold else None, warmup=0))


def main() -> int:
    """Print the table; exit status 1 when a model misses the target (run_all.py reports it)."""
    names = [record["name"] for record in artifacts.list_models()]
    location = data.find_data_dir()
    load = os.getloadavg()[0]
    print(
        f"Evaluate first paint, {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, load average "
        f"{load:.1f}; test images: {location or 'bundled sample'}; median of {REPEATS}\n"
    )
    page_data(names[0])  # imports, once per process
    page_run(names[0])
    harness_s = median_seconds(empty_page_run)
    missed = False
    print("| model | page data, cold (s) | page data, warm (s) | AppTest page run, warm (s) | within 2 s |")
    print("|---|---|---|---|---|")
    for name in names:
        cold_s = median_seconds(lambda: page_data(name), cold=True)
        warm_s = median_seconds(lambda: page_data(name))
        run_s = median_seconds(lambda: page_run(name))
        verdict = "yes" if cold_s <= TARGET_S else ("warm only" if warm_s <= TARGET_S else "no")
        missed = missed or verdict != "yes"
        print(f"| {name} | {cold_s:.2f} | {warm_s:.2f} | {run_s:.2f} | {verdict} |", flush=True)
    print(f"\nAppTest harness alone (an empty page): {harness_s:.2f} s, included in every AppTest figure.")
    return 1 if missed else 0


if __name__ == "__main__":
    sys.exit(main())
