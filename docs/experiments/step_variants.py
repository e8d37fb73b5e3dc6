"""Training speed of the fast network's conv-group variants (issue 12, item 3: step efficiency).

Builds the fast trunk four ways and times its training step with the `fast` recipe (bf16, batch 1024,
SGD-Nesterov) on random CIFAR-shaped data:
  keras-bn + gelu   the layout before: Keras BatchNormalization(center=False, scale=False) + ScaledBias + GELU
  fused-bn + gelu   cnn.models.BatchNormBias (one FusedBatchNormV3 kernel) + GELU
  keras-bn + relu
  fused-bn + relu   the layout shipped since (cnn.models.FAST_ACTIVATION = "relu")
Run: `.venv/bin/python docs/experiments/step_variants.py` (about 3 minutes; figures in docs/experiments/README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from benchmarks.timing import timed_runs  # noqa: E402

STEPS = 4


def conv_group(fused: bool, activation: str):
    """A replacement for cnn.models._fast_block with the chosen batch norm and activation."""
    from keras import layers

    from cnn import models

    def block(features, filters: int, name: str):
        for index in (1, 2):
            conv = layers.Conv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_conv{index}")
            features = conv(features)
            models.start_as_identity(conv)
            if index == 1:
                features = layers.MaxPooling2D(2, name=f"{name}_pool")(features)
            if fused:
                features = models.BatchNormBias(momentum=models.BN_MOMENTUM, name=f"{name}_bn{index}")(features)
            else:
                features = layers.BatchNormalization(
                    momentum=models.BN_MOMENTUM, epsilon=1e-12, center=False, scale=False, name=f"{name}_bn{index}"
                )(features)
                features = models.ScaledBias(name=f"{name}_bias{index}")(features)
            features = layers.Activation(activation, name=f"{name}_act{index}")(features)
        return features

    return block


def images_per_second(fused: bool, activation: str) -> float:
    """Training images per second of the fast trunk built with this conv group (best of three short fits)."""
    import keras
    import numpy as np
    import tensorflow as tf

    from cnn import models
    from cnn.training import TrainConfig, compile_model

    config = TrainConfig.for_model("fast")
    rng = np.random.default_rng(0)
    original = models._fast_block
    models._fast_block = conv_group(fused, activation)
    keras.config.set_dtype_policy("mixed_bfloat16")
    try:
        model = models.build_fast_trunk(calibration_images=rng.integers(0, 256, (5000, 32, 32, 3), dtype=np.uint8))
    finally:
        keras.config.set_dtype_policy("float32")
        models._fast_block = original
    compile_model(model, config, total_steps=1000)
    x = tf.random.uniform((config.batch_size, 32, 32, 3))
    y = tf.one_hot(rng.integers(0, 10, config.batch_size), 10)
    batches = tf.data.Dataset.from_tensors((x, y)).repeat()
    seconds = min(timed_runs(lambda: model.fit(batches, steps_per_epoch=STEPS, epochs=1, verbose=0), 3))
    return STEPS * config.batch_size / seconds


def main() -> None:
    print(f"load average at start {os.getloadavg()[0]:.1f}")
    baseline = None
    for fused, activation in ((False, "gelu"), (True, "gelu"), (False, "relu"), (True, "relu")):
        rate = images_per_second(fused, activation)
        baseline = baseline or rate
        print(
            f"{'fused' if fused else 'keras'}-bn + {activation}: {rate:,.0f} images/s ({rate / baseline:.2f}x)",
            flush=True,
        )


if __name__ == "__main__":
    main()
