"""Learning-rate schedules over a run's optimizer steps: constant, cosine, and airbench's warm-up/linear decay.

Every schedule is one of Keras's built-in, serializable schedules, so that a
checkpoint (which holds its optimizer) loads in safe mode.
"""

from __future__ import annotations

import numpy as np

LR_SCHEDULES = ("constant", "cosine", "warmup_linear")
WARMUP_SHARE = 0.23  # airbench: the share of the steps that warms up


def learning_rate_schedule(schedule: str, peak: float, total_steps: int):
    """The learning rate for the optimizer: a float (constant) or a Keras schedule over `total_steps`.

    Args:
        schedule: one of LR_SCHEDULES: "constant" (`peak` throughout), "cosine" (from
            `peak` to 0) or "warmup_linear" (airbench: a linear warm-up from 0.2x to 1x
            over 23% of the steps, then a linear decay to 0.07x).
        peak: the highest learning rate.
        total_steps: optimizer steps of the whole run.
    """
    import keras

    if schedule == "constant":
        return peak
    if schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(peak, decay_steps=total_steps)
    if schedule == "warmup_linear":
        warmup = max(1, int(WARMUP_SHARE * total_steps))
        return keras.optimizers.schedules.PiecewiseConstantDecay(*_piecewise_linear(peak, warmup, total_steps))
    raise ValueError(f"schedule must be one of {', '.join(LR_SCHEDULES)}, not {schedule!r}")


def _piecewise_linear(peak: float, warmup: int, total: int, points: int = 64):
    """Boundaries and values approximating the warm-up/decay ramp with `points` steps."""
    steps = np.linspace(0, total, points + 1)[1:-1].astype(int)
    steps = np.unique(steps)
    values = [peak * warmup_linear_ramp(0, warmup, total)]
    values += [peak * warmup_linear_ramp(int(step), warmup, total) for step in steps]
    return [int(step) for step in steps], [float(value) for value in values]


def warmup_linear_ramp(step: int, warmup: int, total: int) -> float:
    """The factor of the peak rate at `step` of `total`: 0.2 rising linearly to 1 over the first `warmup`
    steps, then falling linearly to 0.07 at `total` (airbench)."""
    if step < warmup:
        return 0.2 + 0.8 * step / warmup
    return 1.0 - 0.93 * (step - warmup) / max(1, total - warmup)
