"""The GPU sweep's helpers that run here: lossless packing of the training images and the summary table."""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
from conftest import ROOT

spec = importlib.util.spec_from_file_location("gpu_sweep", ROOT / "docs" / "experiments" / "gpu_sweep.py")
gpu_sweep = importlib.util.module_from_spec(spec)
sys.modules["gpu_sweep"] = gpu_sweep  # its dataclasses look their module up there
spec.loader.exec_module(gpu_sweep)


def test_packed_tiles_give_back_the_exact_images():
    images = np.random.default_rng(0).integers(0, 256, (1000, 32, 32, 3), dtype=np.uint8)
    assert np.array_equal(gpu_sweep.untile(gpu_sweep.tile_bytes(images)), images)


def test_whitening_is_the_keras_models_own():
    from cnn import models

    assert gpu_sweep.whitening_filters is models.whitening_filters
    assert "keras" not in open(ROOT / "cnn" / "whitening.py").read()  # importable where only PyTorch is


def test_summary_averages_the_seeds_of_each_setting(tmp_path, capsys):
    rows = [
        {"name": "a", "seed": seed, "val": val, "val_jpeg75": jpeg, "relative_flops": 1.0}
        for seed, (val, jpeg) in enumerate([(0.93, 0.91), (0.95, 0.91)])
    ]
    path = tmp_path / "sweep.jsonl"
    path.write_text("\n".join(json.dumps(row) for row in [{"prepared_s": 1.0}, *rows]))
    gpu_sweep.summarize([path])
    table = capsys.readouterr().out.splitlines()
    assert table[2] == "| a | 2 | 1.00x | 94.00 ± 1.41 | 91.00 ± 0.00 | 91.30 |"


def test_low_resolution_epochs_count_for_their_pixels():
    setting = gpu_sweep.Setting("r16", epochs=20, low_res=16, low_res_epochs=8)
    assert [setting.side(epoch) for epoch in (0, 7, 8, 19)] == [16, 16, 32, 32]
    assert setting.pixel_epochs() == 8 * 0.25 + 12
    assert gpu_sweep.relative_compute(setting) == 0.7
    assert gpu_sweep.relative_compute(gpu_sweep.BASE) == 1.0


def test_sweep_compute_matches_the_keras_network():
    """The sweep's compute ratios rest on flops_per_image: it must count the Keras model's 3x3 convolutions."""
    spec = importlib.util.spec_from_file_location("cpu_ceiling", ROOT / "benchmarks" / "cpu_ceiling.py")
    cpu_ceiling = importlib.util.module_from_spec(spec)
    sys.modules["cpu_ceiling"] = cpu_ceiling
    spec.loader.exec_module(cpu_ceiling)
    from cnn.models import build_fast_trunk

    calibration = np.random.default_rng(0).integers(0, 256, (500, 32, 32, 3), dtype=np.uint8)
    model = build_fast_trunk(calibration_images=calibration)
    whitening, logits = 31 * 31 * 2 * 2 * 3 * 24, 256 * 10
    assert cpu_ceiling.forward_macs(model) == gpu_sweep.flops_per_image((64, 256, 256)) + whitening + logits
