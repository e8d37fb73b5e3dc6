"""The zoo's image augmentation: random left-right flip and a shift of up to 2 pixels.

One vectorized TensorFlow function, used by the training pipeline and by the
Data page's preview, so the preview shows exactly what training sees. The flip
is either drawn afresh for every image each time it is drawn, or decided by the
pipeline (airbench's alternating flip, see `alternating_flip`).
"""

from __future__ import annotations

import numpy as np

MAX_SHIFT = 2  # pixels; the border is filled by reflection (airbench's translate=2)


def augment_batch(images, seed=None, flip=None):
    """Flip and randomly shift a batch (B, H, W, C) of float or uint8 images (TensorFlow ops).

    Args:
        images: the batch.
        seed: an int for repeatable draws (the preview); None uses the pipeline's randomness.
        flip: a boolean tensor (B,) saying which images are mirrored; None flips each
            image with probability 1/2.
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    batch, height, width = tf.shape(images)[0], tf.shape(images)[1], tf.shape(images)[2]
    if flip is None:
        flip = _uniform(tf, [batch], 0.0, 1.0, tf.float32, seed, 0) < 0.5
    images = tf.where(flip[:, None, None, None], tf.reverse(images, axis=[2]), images)
    padded = tf.pad(images, [[0, 0], [MAX_SHIFT, MAX_SHIFT], [MAX_SHIFT, MAX_SHIFT], [0, 0]], mode="REFLECT")
    offsets = _uniform(tf, [batch, 2], 0, 2 * MAX_SHIFT + 1, tf.int32, seed, 1)
    rows = offsets[:, :1] + tf.range(height)[None, :]
    cols = offsets[:, 1:] + tf.range(width)[None, :]
    shifted = tf.gather(padded, rows, axis=1, batch_dims=1)
    return tf.gather(shifted, cols, axis=2, batch_dims=1)


def alternating_flip(bits, epochs):
    """airbench's alternating flip (Keller Jordan, 2024): which images are mirrored (TensorFlow ops).

    Every training image has one random bit, drawn once; in epoch `epochs` (0-based,
    one per image, same shape as `bits`) it is mirrored iff its bit XOR the epoch is
    odd. Each image is thus seen both ways in any two consecutive epochs, never the
    same way twice in a row, which beats independent coin flips that repeat a view
    half of the time.
    """
    import tensorflow as tf

    odd = tf.equal(tf.math.floormod(tf.cast(epochs, tf.int64), 2), 1)
    return tf.math.logical_xor(tf.cast(bits, tf.bool), odd)


def jpeg_image(image, probability: float, quality: tuple[int, int] = (60, 95)):
    """Re-encode one float image in [0, 1] as JPEG with probability `probability` (TensorFlow ops),
    at a quality drawn uniformly from the inclusive range `quality` (chroma subsampled, like most JPEGs).

    Photos that users upload are JPEGs, and so are 90% of the shared copy's test
    images: training on re-encoded copies teaches the network to ignore
    JPEG's blocking and colour smearing.
    """
    import tensorflow as tf

    drawn = tf.random.uniform([], quality[0], quality[1] + 1, dtype=tf.int32)
    encoded = tf.image.adjust_jpeg_quality(image, drawn)
    return tf.cond(tf.random.uniform([]) < probability, lambda: tf.reshape(encoded, tf.shape(image)), lambda: image)


def _uniform(tf, shape, low, high, dtype, seed, stream):
    """Stateless (repeatable) draws when a seed is given, else the pipeline's own randomness."""
    if seed is None:
        return tf.random.uniform(shape, low, high, dtype=dtype)
    return tf.random.stateless_uniform(shape, (seed, stream), low, high, dtype=dtype)


def augment_preview(images: np.ndarray, seed: int = 0) -> np.ndarray:
    """Augmented copies of uint8 images (N, H, W, 3), for showing what training sees."""
    return np.asarray(augment_batch(images, seed=seed)).astype(np.uint8)
