"""Time one prediction, from JPEG bytes to the top-3 classes, against the report's way of predicting.

Our path (what the Predict page and `python -m cnn predict` do):
    cnn.images.decode_image -> cnn.inference.Predictor.top (preprocess, compiled call) -> top-3
The report's path, per image:
    keras.utils.load_img(target_size=(32, 32)) -> img_to_array -> / 255 -> model.predict -> argsort

Both use the best shipped model (`cnn.artifacts.list_models()[0]`), or, when
none is shipped, a freshly built untrained `fast` model (said in the output).
Both run after a warm-up, in the same process, on the same JPEG.
Targets: our p50 <= 10 ms on the machine it runs on, and at least 5x faster than the report's path.

It also times what every rerun of the Predict page pays to find its cached
model (`ui.resources.get_predictor`): a key of the file's path, inode, size and
mtime (one `stat`; the sha256 is checked once per load), against a key that
hashes the whole .keras file (read and hashed on every rerun). Printed: both
keys, the whole cached getter, and the time the stat key saves per rerun.

Run: `.venv/bin/python benchmarks/predict_latency.py [--runs 200] [--cache-only]`; exits 1 if a target is missed.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import sys
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402

from benchmarks.timing import timed_runs  # noqa: E402

TARGET_P50_MS = 10.0
TARGET_SPEEDUP = 5.0
JPEG_SIDE = 256  # a typical small photo; the model sees 32x32 either way


def best_model():
    """(model, description): the best shipped model, else an untrained `fast`."""
    from cnn import artifacts
    from cnn.zoo import ZOO

    shipped = artifacts.list_models()
    if shipped:
        model, _ = artifacts.load_model(shipped[0]["path"])
        return model, f"shipped model {shipped[0]['name']!r} ({shipped[0]['path']})"
    return ZOO["fast"].build(), "NO shipped model found: a freshly built, untrained 'fast' model (same architecture)"


def sample_jpeg() -> bytes:
    """A CIFAR-10 test image enlarged to JPEG_SIDE x JPEG_SIDE and saved as JPEG."""
    from cnn.data import load_sample

    picture = Image.fromarray(load_sample().images[3]).resize((JPEG_SIDE, JPEG_SIDE), Image.Resampling.BICUBIC)
    buffer = io.BytesIO()
    picture.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def timings_ms(action, runs: int, warmup: int) -> np.ndarray:
    return np.array(timed_runs(action, runs, warmup=warmup)) * 1000


def model_cache_lines(runs: int) -> list[str]:
    """What one Predict rerun pays to find the cached best model: the old sha256 key against the file key now."""
    from cnn import artifacts
    from ui import resources

    shipped = artifacts.list_models()
    if not shipped:
        return ["model cache: no shipped model, nothing to time"]
    name = shipped[0]["name"]
    path = artifacts.resolve_model_path(name)
    resources.get_predictor(name)  # the one load: sha256 checked against the sidecar, model built
    sha256_key = np.median(timings_ms(lambda: artifacts.sha256_of(artifacts.resolve_model_path(name)), runs, 2))
    file_key = np.median(timings_ms(lambda: resources.model_file(name), runs, 2))
    cached_getter = np.median(timings_ms(lambda: resources.get_predictor(name), runs, 2))
    return [
        f"model cache, per Predict rerun ({path.name}, {path.stat().st_size:,} bytes), {runs} runs each, p50:",
        f"  before: key = sha256 of the file (resolve + hash): {sha256_key:.2f} ms on every rerun, "
        "hashed twice on a cache miss",
        f"  now:    key = path, inode, size, mtime (resolve + stat): {file_key:.3f} ms; "
        f"whole get_predictor() on a cache hit: {cached_getter:.3f} ms; sha256 once per load",
        f"  saved per rerun: {sha256_key - file_key:.2f} ms",
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200, help="timed predictions on our path")
    parser.add_argument("--report-runs", type=int, default=60, help="timed predictions on the report's path")
    parser.add_argument("--cache-runs", type=int, default=30, help="timed lookups of the cached model")
    parser.add_argument("--cache-only", action="store_true", help="time only the cached model's lookup")
    args = parser.parse_args()
    if args.cache_only:
        print(
            f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"load average {os.getloadavg()[0]:.2f}"
        )
        print("\n".join(model_cache_lines(args.cache_runs)))
        return 0

    import keras

    from cnn.images import decode_image
    from cnn.inference import Predictor

    model, description = best_model()
    jpeg = sample_jpeg()
    predictor = Predictor(model)

    def ours():
        return predictor.top([decode_image(jpeg)], k=3)[0]

    def report():
        picture = keras.utils.load_img(io.BytesIO(jpeg), target_size=(32, 32))
        batch = keras.utils.img_to_array(picture)[None] / 255.0
        probabilities = model.predict(batch, verbose=0)[0]
        return np.argsort(probabilities)[::-1][:3]

    ours_ms = timings_ms(ours, args.runs, warmup=20)
    report_ms = timings_ms(report, args.report_runs, warmup=5)
    p50, p95 = np.percentile(ours_ms, [50, 95])
    report_p50, report_p95 = np.percentile(report_ms, [50, 95])
    speedup = report_p50 / p50

    print(f"model: {description}")
    print(
        f"input: one {JPEG_SIDE}x{JPEG_SIDE} JPEG ({len(jpeg):,} bytes); top-3 of ours: "
        + ", ".join(f"{r.class_name} {r.probability:.1%}" for r in ours())
    )
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f}; TensorFlow-CPU via keras {keras.__version__}"
    )
    print(f"ours   (decode_image + Predictor.top), {args.runs} runs: p50 {p50:.2f} ms, p95 {p95:.2f} ms")
    print(
        f"report (load_img + img_to_array + /255 + model.predict), {args.report_runs} runs: "
        f"p50 {report_p50:.2f} ms, p95 {report_p95:.2f} ms"
    )
    print(f"speed-up (report p50 / ours p50): {speedup:.1f}x")
    met_latency, met_speedup = p50 <= TARGET_P50_MS, speedup >= TARGET_SPEEDUP
    print(
        f"target p50 <= {TARGET_P50_MS:g} ms: {'met' if met_latency else 'MISSED'}; "
        f"target speed-up >= {TARGET_SPEEDUP:g}x: {'met' if met_speedup else 'MISSED'}"
    )
    print("\n".join(model_cache_lines(args.cache_runs)))
    return 0 if met_latency and met_speedup else 1


if __name__ == "__main__":
    sys.exit(main())
