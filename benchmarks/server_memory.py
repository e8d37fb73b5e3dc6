"""Where the dashboard server's memory goes: RSS after each thing a class makes the server hold.

One process does, in the order a class would make the server do it, what the pages cache or
compute (ui/resources.py keeps every loaded model for all sessions, at most 8):
    the server's own imports (Streamlit, plotly, pandas, scikit-learn, cnn) -> TensorFlow ->
    for each shipped model: load it (cnn.artifacts.load_model, as the cache does), predict three
    photos with a Predictor (Predict's grid), Grad-CAM of one (Predict's details card), feature maps
    of every convolution and a Grad-CAM (Inspect), and the predictions of test images 0-999
    (Evaluate for a model without stored predictions).
It prints the RSS after every step and its growth, per model the growth its load and use cost,
and the peak (VmHWM). The figures are one process's: a real server adds Streamlit's sessions
(small) and, with many sessions at once, the scratch memory of computations running in parallel.

Run: `.venv/bin/python benchmarks/server_memory.py [--models fast augmented ...] [--eval-batch 512]`
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.process_memory import memory_mb  # noqa: E402

EVALUATED_IMAGES = 1000  # Evaluate measures test images 0-999 first (ui/evaluation_views.py)


class Ledger:
    """The RSS after each step, printed as it goes."""

    def __init__(self):
        self.last = memory_mb()[0]
        print(f"{'step':<58} {'RSS MB':>8} {'growth MB':>10} {'s':>6}")
        self.step("python, numpy, Pillow (start)", time.monotonic())

    def step(self, name: str, started: float) -> float:
        """Print the RSS now and its growth since the last step; the growth."""
        rss = memory_mb()[0]
        growth, self.last = rss - self.last, rss
        print(f"{name:<58} {rss:>8,.0f} {growth:>+10,.0f} {time.monotonic() - started:>6.1f}", flush=True)
        return growth


def server_imports() -> None:
    import pandas  # noqa: F401
    import plotly.graph_objects  # noqa: F401
    import sklearn.metrics  # noqa: F401
    import streamlit  # noqa: F401

    import cnn.artifacts  # noqa: F401
    import cnn.evaluation  # noqa: F401
    import cnn.images  # noqa: F401


def use_model(ledger: Ledger, path: Path, photos, sample, eval_batch: int) -> float:
    """Load one model and do with it what Predict, Inspect and Evaluate do; the RSS growth in all."""
    from cnn import artifacts, explain
    from cnn.evaluation import predict_split
    from cnn.inference import Predictor

    before = ledger.last
    started = time.monotonic()
    model, _ = artifacts.load_model(path)
    ledger.step(
        f"{path.stem}: load ({path.stat().st_size / 1e6:.1f} MB file, {model.count_params():,} weights)", started
    )
    started = time.monotonic()
    predictor = Predictor(model)
    predictor.predict_proba(photos)
    ledger.step(f"{path.stem}: Predict grid (3 photos)", started)
    started = time.monotonic()
    explain.explain_prediction(predictor, photos[0])
    ledger.step(f"{path.stem}: Predict details (Grad-CAM)", started)
    started = time.monotonic()
    with predictor.lock:
        for layer in explain.conv_layer_names(model):
            explain.feature_maps(model, sample.images[0], layer)
        explain.grad_cam(model, sample.images[0])
    ledger.step(f"{path.stem}: Inspect (feature maps of every convolution, Grad-CAM)", started)
    started = time.monotonic()
    with predictor.lock:
        predict_split(model, sample.subset(0, EVALUATED_IMAGES), batch_size=eval_batch)
    ledger.step(f"{path.stem}: Evaluate measured here ({EVALUATED_IMAGES:,} images, batch {eval_batch})", started)
    return ledger.last - before


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--models", nargs="*", default=None, help="model names in models/ (default: every shipped model, in name order)"
    )
    parser.add_argument(
        "--eval-batch",
        type=int,
        default=None,
        help="batch size of the Evaluate step (default: cnn.evaluation.SERVER_BATCH, the page's)",
    )
    arguments = parser.parse_args(argv)
    models_dir = ROOT / "models"
    paths = (
        [models_dir / f"{name}.keras" for name in arguments.models]
        if arguments.models
        else sorted(models_dir.glob("*.keras"))
    )
    one, five, fifteen = os.getloadavg()
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, load average {one:.1f} / {five:.1f} / {fifteen:.1f}")
    ledger = Ledger()
    started = time.monotonic()
    server_imports()
    ledger.step("the server's imports (Streamlit, plotly, pandas, sklearn, cnn)", started)
    from cnn.evaluation import SERVER_BATCH

    eval_batch = arguments.eval_batch or SERVER_BATCH
    started = time.monotonic()
    import tensorflow  # noqa: F401

    ledger.step("TensorFlow", started)
    from cnn.data import load_sample

    sample = load_sample()
    photos = sample.images[:3]
    per_model = {path.stem: use_model(ledger, path, photos, sample, eval_batch) for path in paths}
    print("\ngrowth per model (load and use): " + ", ".join(f"{name} {mb:+,.0f} MB" for name, mb in per_model.items()))
    rss, peak = memory_mb()
    print(f"all {len(paths)} models: RSS {rss:,.0f} MB, peak (VmHWM) {peak:,.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
