"""The product's logic: CIFAR-10 data, the model zoo, training, evaluation,
inference, safe image decoding and URL fetching. Never imports streamlit.

Submodules are imported on demand so that light users (the Learn pages use
only `cnn.ops`) never pay for TensorFlow.
"""

__all__ = ["CLASS_NAMES", "IMAGE_SIZE", "INPUT_SHAPE", "NUM_CLASSES"]

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

NUM_CLASSES = len(CLASS_NAMES)

# Every model takes CIFAR-10's 32x32 RGB images, channels last; other images are resized to this.
IMAGE_SIZE = 32
INPUT_SHAPE = (IMAGE_SIZE, IMAGE_SIZE, 3)  # (height, width, channels)
