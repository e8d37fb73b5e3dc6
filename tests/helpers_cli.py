"""The command line as the tests drive it: the arguments of a short training on the synthetic data, and
`python -m cnn` in a fresh process."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def train_argv(data_dir: Path, run_dir: Path, *options: str, model: str = "base") -> list[str]:
    """The arguments of `train` for `model` on `data_dir` (20 of its training images validate), without
    mixed precision, into the run folder `run_dir`; `options` (epochs, batch size, --out, ...) follow."""
    return [
        "train",
        "--model",
        model,
        "--data-dir",
        str(data_dir),
        "--val-size",
        "20",
        "--no-mixed-precision",
        "--run-dir",
        str(run_dir),
        *options,
    ]


def cnn_command(*argv: str) -> list[str]:
    """`python -m cnn ARGV` with this interpreter (run it from ROOT)."""
    return [sys.executable, "-m", "cnn", *argv]


def run_cnn(*argv: str) -> subprocess.CompletedProcess:
    """`python -m cnn ARGV` run to its end in a fresh process, its output as text."""
    # Two minutes: a fresh process imports TensorFlow, slow on a loaded machine.
    return subprocess.run(cnn_command(*argv), cwd=ROOT, capture_output=True, text=True, timeout=120)
