"""What the Train page costs: the poll of a run folder, and our training path against plain `model.fit`.

Prints three figures:
  1. poll cost: `cnn.runs.run_state` (status + history files) plus building both
     plotly learning-curve figures and serialising them, as the page does every
     second; median of 50 polls of a 50-epoch history;
  2. training throughput (images/s) of `cnn.training.train` (the worker's code:
     tf.data pipeline, history/status/checkpoint callbacks) against plain
     `model.fit` on the same arrays, same model (`base`), same precision
     (float32), same batch size, both with the same validation images;
     target: at most 10% overhead;
  3. worker start-up: seconds from `cnn.jobs.start_run` to the first batch
     progress in status.json (Python + TensorFlow import + data loading).

Needs the real CIFAR-10 (CIFAR10_DIR or ../shared/data/cifar-10-batches-py).
Run: `.venv/bin/python benchmarks/train_overhead.py [--images 10000 --epochs 2]`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
SHARED_DATA = ROOT.parent / "shared" / "data" / "cifar-10-batches-py"
if "CIFAR10_DIR" not in os.environ and SHARED_DATA.is_dir():
    os.environ["CIFAR10_DIR"] = str(SHARED_DATA)

from cnn import jobs, runs  # noqa: E402
from cnn.hardware import describe_hardware  # noqa: E402

VAL_IMAGES = 1_000  # validation images evaluated after every epoch, by both paths


def poll_cost(repeats: int = 50) -> float:
    """Median seconds of one poll: read the run folder, build and serialise both figures."""
    import streamlit.logger  # noqa: F401 - quiet the "no runtime" warnings of the UI module's import

    from ui.training_views import learning_curves

    with tempfile.TemporaryDirectory() as folder:
        run_dir = Path(folder)
        rows = [
            {
                "epoch": epoch,
                "loss": 1 / epoch,
                "accuracy": 0.5,
                "val_loss": 1.1 / epoch,
                "val_accuracy": 0.45,
                "seconds": 12.0,
                "learning_rate": 1e-3,
            }
            for epoch in range(1, 51)
        ]
        (run_dir / "history.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))
        (run_dir / "status.json").write_text(
            json.dumps({"state": "running", "pid": os.getpid(), "epoch": 50, "epochs": 60, "batch": 10, "batches": 313})
        )
        timings = []
        for _ in range(repeats):
            started = time.perf_counter()
            state = runs.run_state(run_dir)
            for figure in learning_curves({"this run": state.history}):
                figure.to_json()
            timings.append(time.perf_counter() - started)
    return statistics.median(timings)


def throughput(images: int, epochs: int, batch_size: int) -> tuple[float, float]:
    """(images/s of cnn.training.train, images/s of plain model.fit), best of two alternating runs each."""
    import keras

    from cnn.data import load_cifar10, one_hot
    from cnn.inference import preprocess
    from cnn.training import TrainConfig, compile_model, train
    from cnn.zoo import ZOO

    data = load_cifar10(val_size=VAL_IMAGES)
    config = TrainConfig.for_model(
        "base", epochs=epochs, batch_size=batch_size, subset=images, mixed_precision=False, val_size=VAL_IMAGES
    )
    x, y = preprocess(data.train.images[:images]), one_hot(data.train.labels[:images])
    validation = (preprocess(data.val.images), one_hot(data.val.labels))

    def ours() -> float:
        with tempfile.TemporaryDirectory() as folder:
            started = time.perf_counter()
            train(config, data, folder, verbose=0)
            return time.perf_counter() - started

    def plain() -> float:
        keras.utils.set_random_seed(0)
        model = ZOO["base"].build()
        compile_model(model, config, total_steps=1)
        started = time.perf_counter()
        model.fit(
            x, y, batch_size=batch_size, epochs=epochs, validation_data=validation, validation_batch_size=512, verbose=0
        )
        return time.perf_counter() - started

    plain()  # warm-up: TensorFlow's first graph builds are not what we compare
    ours_times, plain_times = [], []
    for _ in range(2):
        plain_times.append(plain())
        ours_times.append(ours())
    work = images * epochs
    return work / min(ours_times), work / min(plain_times)


def startup_seconds() -> float:
    """Seconds from start_run to the worker's first batch progress (base, 1,000 images, 1 epoch)."""
    from cnn.training import TrainConfig

    with tempfile.TemporaryDirectory() as folder:
        run_dir, out = Path(folder) / "run", Path(folder) / "models" / "bench_classroom.keras"
        config = TrainConfig.for_model("base", epochs=1, subset=1_000, val_size=VAL_IMAGES)
        started = time.perf_counter()
        jobs.start_run(runs.RunRequest(config=config.to_dict(), out_path=str(out)), run_dir)
        while True:
            state = runs.run_state(run_dir)
            if state.batch > 0 or state.history or not state.active:
                elapsed = time.perf_counter() - started
                break
            time.sleep(0.05)
        jobs.wait_until_done(run_dir)
        return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000, help="training images (first N)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    print(
        f"hardware: {describe_hardware()}; load average at start {os.getloadavg()[0]:.1f} "
        "(other processes share these cores: wall-clock figures vary with it)"
    )
    print(
        f"poll cost (run_state + 2 figures built and serialised, 50-epoch history): {poll_cost() * 1000:.1f} ms median"
    )
    ours, plain = throughput(args.images, args.epochs, args.batch_size)
    print(
        f"training throughput, base, {args.images:,} images x {args.epochs} epochs, batch {args.batch_size}, "
        f"float32, {VAL_IMAGES:,} validation images per epoch (best of 2):"
    )
    print(f"  cnn.training.train (worker path): {ours:,.0f} images/s")
    print(f"  plain model.fit:                  {plain:,.0f} images/s")
    print(f"  overhead: {(plain / ours - 1) * 100:+.1f}% (target at most +10%)")
    print(f"worker start-up to first batch (python -m cnn train, base, 1,000 images): {startup_seconds():.1f} s")


if __name__ == "__main__":
    main()
