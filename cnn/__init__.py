"""The product's logic: CIFAR-10 data, the model zoo, training, evaluation,
inference, safe image decoding and URL fetching. Never imports streamlit.

Submodules are imported on demand so that light users (the Learn pages use
only `cnn.ops`) never pay for TensorFlow.
"""

__all__ = ["CLASS_NAMES"]

# The CIFAR-10 label order of `batches.meta` (index = label).
CLASS_NAMES = (
    "airplane",
    "automobile",
    "bird",
    "cat",
    "deer",
    "dog",
    "frog",
    "horse",
    "ship",
    "truck",
)
