"""What the zoo holds, without TensorFlow: names, descriptions, training recipes, the report's figures.

Pages that only list or configure models (Train, Evaluate, Home) read this;
`cnn.models` pairs each entry with its Keras builder.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from cnn.errors import UserError
from cnn.report import REPORT_ACCURACY

FLIPS = ("random", "alternate")  # how augmentation mirrors images; see cnn.augment.alternating_flip


@dataclass(frozen=True)
class ZooInfo:
    """One zoo model: what it is, its default recipe (TrainConfig overrides) and the report's figure."""

    name: str
    description: str
    recipe: dict = field(default_factory=dict)
    report_accuracy: float | None = None


# Epochs of the report's models: the report gives none. base and dropout run long enough to show
# (report figs. 24-25) model 1's validation loss rising and model 2's not; models 3-6 got what the
# CPU budget allowed (about 10-30 minutes each on 2 cores); their validation curves are in the sidecars.
ZOO_INFO: dict[str, ZooInfo] = {
    info.name: info
    for info in (
        ZooInfo("base", "Report model 1: 2x Conv(32, 4x4)+MaxPool, Dense 256",
                dict(epochs=15, batch_size=32, learning_rate=1e-3), REPORT_ACCURACY["base"]),
        ZooInfo("dropout", "Report model 2: model 1 + dropout",
                dict(epochs=25, batch_size=32, learning_rate=1e-3), REPORT_ACCURACY["dropout"]),
        ZooInfo("deeper", "Report model 3: 6 conv layers, 32-64-128 filters",
                dict(epochs=10, batch_size=64, learning_rate=1e-3)),
        ZooInfo("deeper_dropout", "Report model 4: model 3 + more dropout",
                dict(epochs=12, batch_size=64, learning_rate=1e-3)),
        ZooInfo("batchnorm", "Report model 5: model 4 + batch normalization",
                dict(epochs=15, batch_size=64, learning_rate=1e-3, lr_schedule="cosine")),
        ZooInfo("augmented", "Report model 6: model 5 + image augmentation",
                dict(epochs=35, batch_size=64, learning_rate=1e-3, lr_schedule="cosine", augment=True),
                REPORT_ACCURACY["augmented"]),
        ZooInfo("fast", "Ours: airbench94-style ConvNet (whitening, fused batch norm, ReLU), averaged over six views",
                # airbench94 in Keras units (lr 1.5 on the mean loss, decoupled decay 0.0087 per unit of lr),
                # whitening bias held after 3 epochs, alternating flip, no JPEG training, 15 epochs.
                # Evidence: validation 94.26% / 94.10% (seeds 0 / 1), 14.9 / 13.6 min on a 2-core Xeon CPU
                # (`python -m cnn train --model fast --seed S`; docs/experiments/README.md).
                dict(epochs=15, batch_size=1024, learning_rate=1.5, optimizer="sgd_nesterov", momentum=0.85,
                     weight_decay=0.0087, label_smoothing=0.2, lr_schedule="warmup_linear", augment=True,
                     flip="alternate", whiten_bias_epochs=3, lookahead=True)),
        ZooInfo("best", "Ours: the fast network made wider (airbench95: 128-384-384 filters), averaged over six views",
                # airbench95's changes to airbench94: widths 128/384/384, learning rate x0.87, more epochs.
                dict(epochs=20, batch_size=1024, learning_rate=1.3, optimizer="sgd_nesterov", momentum=0.85,
                     weight_decay=0.0087, label_smoothing=0.2, lr_schedule="warmup_linear", augment=True,
                     flip="alternate", whiten_bias_epochs=3, lookahead=True)),
    )
}


def get_info(name: str) -> ZooInfo:
    """The zoo entry called `name`, with the list of names when it is unknown."""
    if name not in ZOO_INFO:
        raise UserError(f"Unknown model {name!r}: choose one of {', '.join(ZOO_INFO)}.")
    return ZOO_INFO[name]
