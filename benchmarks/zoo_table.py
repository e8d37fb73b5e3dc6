"""Re-evaluate every shipped model and print one table beside the report's figures.

Columns: parameters, epochs, training minutes (from the sidecar, read through
`cnn.artifacts.Sidecar`: measured by the training command), validation accuracy (last 5,000
training images, also re-encoded as JPEG
quality 75 to estimate the cost of JPEG artefacts without the test set), test
accuracy on the exact images 0-999 and on all 10,000 (1000-9999 JPEG-derived in
the shared copy), and single-image latency (`cnn.inference.single_image_latency`: a 32x32 image -> top-3,
p50 after warm-up, compiled call). Accuracies are recomputed here, not copied.

Run: `.venv/bin/python benchmarks/zoo_table.py [--models NAME ...]` (needs CIFAR-10: CIFAR10_DIR or ../shared/data).
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from cnn.artifacts import load_model, scan_models  # noqa: E402
from cnn.data import CLEAN_TEST_STOP, jpeg_copy, load_cifar10  # noqa: E402
from cnn.errors import ModelFileError  # noqa: E402
from cnn.evaluation import evaluate  # noqa: E402
from cnn.hardware import describe_hardware  # noqa: E402
from cnn.inference import Predictor, single_image_latency  # noqa: E402
from cnn.zoo import report_accuracy, zoo_position  # noqa: E402


def percent(value) -> str:
    return f"{value:.1%}" if value is not None else "-"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="*", help="only these saved models (default: every one)")
    wanted = parser.parse_args(argv).models
    data_dir = os.environ.get("CIFAR10_DIR") or (ROOT.parent / "shared" / "data" / "cifar-10-batches-py")
    data = load_cifar10(data_dir)
    entries = sorted(
        (entry for entry in scan_models() if not wanted or entry.name in wanted), key=lambda e: zoo_position(e.name)
    )
    print(f"Hardware: {describe_hardware()}; data: {data.identity}")
    print()
    val_jpeg = jpeg_copy(data.val)
    print(
        "| model | parameters | epochs | training min | validation | validation as JPEG q75 "
        "| test exact 0-999 | test all 10,000 | report | latency p50 ms |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for entry in entries:
        try:
            if not entry.usable:
                raise ModelFileError(entry.describe())
            model, _ = load_model(entry.path)
        except ModelFileError as error:  # one bad model costs its own row, never the table
            print(f"| {error} |" + " |" * 9)
            continue
        sidecar = entry.sidecar
        val = evaluate(model, data.val)
        val_as_jpeg = evaluate(model, val_jpeg)
        clean = evaluate(model, data.test.subset(0, CLEAN_TEST_STOP))
        whole = evaluate(model, data.test)
        latency = single_image_latency(Predictor(model)).p50_ms
        print(
            f"| {entry.name} | {sidecar.parameters or 0:,} | {sidecar.epochs} "
            f"| {(sidecar.wall_time_s or 0) / 60:.1f} | {percent(val.accuracy)} | {percent(val_as_jpeg.accuracy)} "
            f"| {percent(clean.accuracy)} "
            f"| {percent(whole.accuracy)} | {percent(report_accuracy(sidecar.model))} | {latency:.2f} |"
        )


if __name__ == "__main__":
    main()
