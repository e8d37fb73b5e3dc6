"""The Build page's minutes-per-epoch estimate: its two constants, fitted to measured training times.

Run: `python benchmarks/build_estimate.py` (reads models/*.json; no training, a second).

Each report model's sidecar records the wall time of its training on this
project's machine (all 45,000 training images each epoch, plus 5,000 validation
images). Seconds per epoch = (training images + validation images / 3) x
(SECONDS_PER_IMAGE + SECONDS_PER_MULTIPLY_ADD x forward multiply-adds per image),
fitted by least squares on the report's models without batch normalization (models 1-4).
Batch normalization is memory-bound on a CPU: a model with it takes BATCHNORM_SLOWDOWN
times longer, model 5's (batchnorm) measured time over that fit's estimate for it.
It prints the fitted constants (cnn/spec.py keeps them) and, for every report model,
the estimate next to the measured time (model 6 also augments its images).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cnn import spec as specs  # noqa: E402
from cnn.artifacts import default_models_dir  # noqa: E402

# The fit uses the report's models without batch normalization: batch norm gets its own factor below.
FITTED = tuple(
    name for name, spec in specs.REPORT_SPECS.items() if all(layer["type"] != "batchnorm" for layer in spec["layers"])
)


def measured(name: str) -> dict | None:
    """Seconds per epoch, images and the hardware line of a shipped report model; None when missing."""
    path = Path(default_models_dir()) / f"{name}.json"
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    metrics = record.get("metrics", {})
    return {
        "seconds_per_epoch": record["wall_time_s"] / record["epochs"],
        "train": metrics["train_images"],
        "val": metrics["val_images"],
        "hardware": record.get("hardware", "?"),
        "batch_size": record["config"]["batch_size"],
    }


def main() -> None:
    rows = {name: measured(name) for name in specs.REPORT_SPECS}
    rows = {name: row for name, row in rows.items() if row}
    fitted = [name for name in FITTED if name in rows]
    if len(fitted) < 2:
        print("Needs at least two of the report models' sidecars in models/.")
        return
    work = {name: specs.analyze(specs.REPORT_SPECS[name], specs.Limits()).multiply_adds for name in rows}
    images = {name: row["train"] + specs.VALIDATION_SHARE * row["val"] for name, row in rows.items()}
    design = np.array([[1.0, work[name]] for name in fitted])
    target = np.array([rows[name]["seconds_per_epoch"] / images[name] for name in fitted])
    (per_image, per_multiply_add), *_ = np.linalg.lstsq(design, target, rcond=None)
    print(f"Hardware (from the sidecars): {rows[fitted[0]]['hardware']}")
    print(
        f"Fitted on {', '.join(fitted)}: SECONDS_PER_IMAGE = {per_image:.3g}, "
        f"SECONDS_PER_MULTIPLY_ADD = {per_multiply_add:.3g}"
    )
    if "batchnorm" in rows:
        without = images["batchnorm"] * (per_image + per_multiply_add * work["batchnorm"])
        print(
            f"Batch normalization: BATCHNORM_SLOWDOWN = {rows['batchnorm']['seconds_per_epoch'] / without:.2f} "
            "(model 5's measured time over the fit's estimate for it)"
        )
    print(
        f"In cnn/spec.py: SECONDS_PER_IMAGE = {specs.SECONDS_PER_IMAGE:.3g}, "
        f"SECONDS_PER_MULTIPLY_ADD = {specs.SECONDS_PER_MULTIPLY_ADD:.3g}, "
        f"BATCHNORM_SLOWDOWN = {specs.BATCHNORM_SLOWDOWN}\n"
    )
    print("| model | batch | multiply-adds per image | measured s/epoch | estimated s/epoch | estimate/measured |")
    print("|---|---|---|---|---|---|")
    for name, row in rows.items():
        estimate = 60 * specs.minutes_per_epoch(specs.REPORT_SPECS[name], work[name], row["train"], row["val"])
        print(
            f"| {name} | {row['batch_size']} | {work[name] / 1e6:.1f} M | {row['seconds_per_epoch']:.1f} | "
            f"{estimate:.1f} | {estimate / row['seconds_per_epoch']:.2f} |"
        )


if __name__ == "__main__":
    main()
