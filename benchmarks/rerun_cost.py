"""What Streamlit's between-runs cleanup costs in the dashboard's server, per script run of any session.

One process holds what a class makes the server hold (its imports, TensorFlow, every shipped model loaded as
the cache loads it, each warmed by one prediction), then times, in milliseconds (median of --repeats), each
right after an untimed prediction (what a page run leaves behind) unless said otherwise:
- `gc.collect(2)`: what `runner.postScriptGC` does after every run (off in .streamlit/config.toml);
- `keras.backend.clear_session()`: what Streamlit's `_clean_problem_modules` does after every run while Keras is
  imported (switched off by ui/server_runtime.py, called first by streamlit_app.py);
- one Predict-page prediction (the `fast` model, one image) with TensorFlow's kernels warm, and right after an
  untimed `clear_session()` (which empties the kernel cache).
Both cleanups hold Python's lock, so every other session waits while they run.

Run: `.venv/bin/python benchmarks/rerun_cost.py [--repeats 10]`
"""

from __future__ import annotations

import argparse
import gc
import os
import platform
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.timing import timed_runs  # noqa: E402

PREDICT_MODEL = "fast"  # the model the Predict page preselects


def load_what_a_class_loads():
    """Every shipped model loaded and warmed by one prediction; the server's other imports. Returns Predictors."""
    import numpy as np
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import streamlit  # noqa: F401

    from cnn.artifacts import load_model
    from cnn.inference import Predictor
    from cnn.zoo import ZOO

    predictors = {}
    for name in ZOO:
        if (ROOT / "models" / f"{name}.keras").is_file():
            predictors[name] = Predictor(load_model(name)[0])
            predictors[name].predict_proba(np.zeros((1, 32, 32, 3), np.uint8))
    return predictors


def median_ms(action, repeats: int, before) -> float:
    """Median milliseconds of `action()`, each call right after an untimed `before()`."""
    return statistics.median(timed_runs(action, repeats, before=before)) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10, help="timed calls of each action (median printed)")
    arguments = parser.parse_args()

    import keras
    import numpy as np

    predictors = load_what_a_class_loads()
    image = np.zeros((1, 32, 32, 3), np.uint8)
    predict = predictors[PREDICT_MODEL].predict_proba

    def a_page_run():
        predict(image)  # what a run of the Predict page leaves behind: kernels warm, fresh garbage

    def reset():
        keras.backend.clear_session(free_memory=False)  # the reset without its collection (timed in its row)

    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs; python {platform.python_version()}")
    print(f"models loaded: {', '.join(predictors)}; objects tracked by the collector: {len(gc.get_objects()):,}")
    rows = [
        ("gc.collect(2) (runner.postScriptGC)", median_ms(lambda: gc.collect(2), arguments.repeats, a_page_run)),
        (
            "keras.backend.clear_session() (Streamlit)",
            median_ms(keras.backend.clear_session, arguments.repeats, a_page_run),
        ),
        (f"predict one image, {PREDICT_MODEL}, kernels warm", median_ms(a_page_run, arguments.repeats, a_page_run)),
        (f"predict one image, {PREDICT_MODEL}, after a reset", median_ms(a_page_run, arguments.repeats, reset)),
    ]
    for name, milliseconds in rows:
        print(f"{name:<58} {milliseconds:>8.1f} ms")
    per_run = rows[0][1] + rows[1][1]
    print(f"lock held per run with both cleanups: {per_run:.0f} ms, so at most {1000 / per_run:.1f} runs/s in all")


if __name__ == "__main__":
    main()
