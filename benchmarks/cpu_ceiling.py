"""How close the fast model's training runs to what this CPU can compute, and what more accuracy would cost.

The PyTorch port's sweep (docs/experiments/README.md) found that 93% on the shared copy's
JPEG-affected whole test set needs about 7.5 times the compute of 20 epochs of the fast
network. This script measures how much of the CPU a training step uses and what such
budgets cost here. It prints:
  1. the CPU's practical ceiling: a large bf16 (and float32) matrix product in TensorFlow,
     and one 3x3 convolution of the network's commonest shape, in GFLOP/s;
  2. the fast network's training throughput with its recipe (bf16, batch 1024, SGD-Nesterov),
     in images/s and in GFLOP/s (a training step is about three forward passes);
  3. the minutes 20 epochs of 45,000 images and the sweep's 93% setting
     (widths 128/512/512, 40 epochs: 7.55x the compute) take at that throughput, and at the
     ceiling (the faster of the bf16 figures of 1.: a bound no whole training step reaches).

Random inputs (speed does not depend on the pixels). Run: `.venv/bin/python benchmarks/cpu_ceiling.py`.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.timing import timed_runs  # noqa: E402

EPOCHS20_IMAGES = 20 * 45_000  # images seen in 20 epochs of the 45,000 training images
SWEEP_93_COMPUTE = 7.55  # widths 128/512/512 x 40 epochs against 20 epochs of the fast network (docs/experiments)
BUDGET_MIN = 30.0


@dataclass(frozen=True)
class Rate:
    """A measured speed: floating-point operations per second, and images per second where it applies."""

    gflops: float
    images_per_s: float | None = None


def best_seconds(run, repeats: int) -> float:
    """The fastest of `repeats` timed calls of `run` (after one untimed warm-up call)."""
    return min(timed_runs(run, repeats))


def matmul_rate(dtype: str, size: int = 4096, repeats: int = 3) -> Rate:
    """GFLOP/s of one size x size matrix product in TensorFlow (oneDNN)."""
    import tensorflow as tf

    a = tf.random.uniform((size, size), dtype="float32")
    a = tf.cast(a, dtype)
    product = tf.function(lambda: tf.reduce_sum(tf.cast(tf.linalg.matmul(a, a), "float32")))
    return Rate(2 * size**3 / best_seconds(lambda: product().numpy(), repeats) / 1e9)


def conv_rate(channels: int = 256, side: int = 8, batch: int = 1024, repeats: int = 3) -> Rate:
    """GFLOP/s of one bf16 3x3 convolution, channels -> channels on side x side maps, forward only."""
    import tensorflow as tf

    x = tf.cast(tf.random.uniform((batch, side, side, channels)), "bfloat16")
    kernel = tf.cast(tf.random.uniform((3, 3, channels, channels)), "bfloat16")
    conv = tf.function(lambda: tf.reduce_sum(tf.cast(tf.nn.conv2d(x, kernel, 1, "SAME"), "float32")))
    macs = batch * side * side * 9 * channels * channels
    return Rate(2 * macs / best_seconds(lambda: conv().numpy(), repeats) / 1e9)


def forward_macs(model) -> int:
    """Multiply-adds of one image's forward pass through the model's Conv2D and Dense layers."""
    import keras

    total = 0
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv2D):
            kh, kw, cin, cout = layer.kernel.shape
            _, height, width, _ = layer.output.shape
            total += height * width * kh * kw * cin * cout
        elif isinstance(layer, keras.layers.Dense):
            cin, cout = layer.kernel.shape
            total += cin * cout
    return int(total)


def fast_training_rate(steps: int = 3) -> tuple[Rate, int]:
    """(training speed of the fast network with its recipe, its forward multiply-adds per image)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnn.training import TrainConfig, compile_model
    from cnn.zoo import ZOO

    config = TrainConfig.for_model("fast")
    rng = np.random.default_rng(0)
    calibration = rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8)
    previous_policy = keras.config.dtype_policy()
    keras.config.set_dtype_policy("mixed_bfloat16" if config.mixed_precision else "float32")
    try:
        model = ZOO["fast"].build_trainable(calibration_images=calibration)
    finally:
        keras.config.set_dtype_policy(previous_policy)
    compile_model(model, config, total_steps=1000)
    size = config.batch_size
    images = tf.random.uniform((size, 32, 32, 3))
    labels = tf.one_hot(rng.integers(0, 10, size), 10)
    batches = tf.data.Dataset.from_tensors((images, labels)).repeat()
    # The first fit traces the step and builds oneDNN's kernels; then the best of three short fits.
    seconds = best_seconds(lambda: model.fit(batches, steps_per_epoch=steps, epochs=1, verbose=0), repeats=3)
    images_per_s = steps * size / seconds
    macs = forward_macs(model)
    return Rate(3 * 2 * macs * images_per_s / 1e9, images_per_s), macs


def main() -> None:
    from cnn.hardware import describe_hardware

    print(f"hardware: {describe_hardware()}; load average at start {os.getloadavg()[0]:.1f}")
    bf16, fp32 = matmul_rate("bfloat16"), matmul_rate("float32")
    conv = conv_rate()
    print(f"ceiling: 4096x4096 matrix product, bf16 {bf16.gflops:,.0f} GFLOP/s, float32 {fp32.gflops:,.0f} GFLOP/s")
    print(f"         one bf16 3x3 convolution, 256 -> 256 channels on 8x8 maps: {conv.gflops:,.0f} GFLOP/s")
    ceiling = max(bf16.gflops, conv.gflops)
    fast, macs = fast_training_rate()
    print(
        f"fast network ({macs / 1e6:.0f} M multiply-adds per image forward), training with its recipe: "
        f"{fast.images_per_s:,.0f} images/s = {fast.gflops:,.0f} GFLOP/s "
        f"({fast.gflops / ceiling:.0%} of the ceiling, the faster of the two bf16 figures above)"
    )
    epochs20_min = EPOCHS20_IMAGES / fast.images_per_s / 60
    ceiling_images_per_s = ceiling * 1e9 / (3 * 2 * macs)
    print(
        f"20 epochs x 45,000 images: {epochs20_min:.1f} min at this speed, "
        f"{EPOCHS20_IMAGES / ceiling_images_per_s / 60:.1f} min at the ceiling "
        "(no data pipeline, callbacks or evaluation)"
    )
    print(
        f"the sweep's 93%-whole-set setting ({SWEEP_93_COMPUTE}x that compute): "
        f"{SWEEP_93_COMPUTE * epochs20_min:.0f} min at this speed, "
        f"{SWEEP_93_COMPUTE * EPOCHS20_IMAGES / ceiling_images_per_s / 60:.0f} min at the ceiling "
        f"(budget {BUDGET_MIN:.0f} min)"
    )


if __name__ == "__main__":
    main()
