"""Two models side by side on real photos (not CIFAR-10): the top-3 of each, the true class's probability.

Used to check that a new `fast` model does not answer worse than the one it replaces on the kind of
pictures students upload. The photos stay outside the repository and out of all training data.
Run: `.venv/bin/python docs/experiments/real_photos.py MODELS_DIR_A MODELS_DIR_B cat=PHOTO.jpg horse=PHOTO.png ...`
(each MODELS_DIR holds a `fast.keras` with its sidecar; figures in docs/experiments/README.md).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv: list[str]) -> None:
    from cnn import CLASS_NAMES
    from cnn.artifacts import load_model
    from cnn.images import decode_image
    from cnn.inference import Predictor

    folders, labelled = argv[:2], [item.split("=", 1) for item in argv[2:]]
    predictors = {folder: Predictor(load_model("fast", Path(folder))[0]) for folder in folders}
    right = {folder: 0 for folder in folders}
    for label, path in labelled:
        image = decode_image(Path(path).read_bytes())
        for folder, predictor in predictors.items():
            probabilities = predictor.predict_proba([image])[0]
            top = predictor.top([image])[0]
            right[folder] += top[0].class_name == label
            ranked = ", ".join(f"{entry.class_name} {entry.probability:.0%}" for entry in top)
            print(
                f"{Path(path).name} ({label}) {folder}: {ranked}; "
                f"p({label}) = {probabilities[CLASS_NAMES.index(label)]:.0%}"
            )
    for folder, count in right.items():
        print(f"{folder}: {count} of {len(labelled)} right")


if __name__ == "__main__":
    main(sys.argv[1:])
