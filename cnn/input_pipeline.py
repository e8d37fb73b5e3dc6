"""The training input: the images a run trains on and the tf.data pipeline that batches and augments them.

Every image passes through `cnn.inference.preprocess` (the same scaling as
evaluation and prediction); augmentation (`cnn.augment`) works on those batches.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from cnn.data import Cifar10, one_hot
from cnn.errors import UserError
from cnn.inference import preprocess

if TYPE_CHECKING:
    from cnn.training import TrainConfig


def training_images(config: TrainConfig, data: Cifar10):
    """The training split (images, labels), cut to `config.subset` images when asked."""
    images, labels = data.train.images, data.train.labels
    if config.subset is not None:
        if config.subset > len(labels):
            raise UserError(f"subset {config.subset} is larger than the {len(labels)} training images.")
        images, labels = images[: config.subset], labels[: config.subset]
    return images, labels


def training_batches(images, labels, config: TrainConfig, initial_epoch: int = 0):
    """Endless shuffled (x, y) training batches of `config`'s size, augmented as `config` says.

    Args:
        images: uint8 training images (N, 32, 32, 3).
        labels: their class indices (N,).
        config: batch size, seed, augmentation, flip and JPEG settings.
        initial_epoch: the epoch the run starts from (a resume): sets the alternating flip's phase.
    """
    import tensorflow as tf

    from cnn.augment import augment_batch

    if config.augment and config.flip == "alternate":
        dataset = flip_planned_batches(images, labels, config, initial_epoch)
        dataset = dataset.map(lambda x, y, flip: (augment_batch(x, flip=flip), y), num_parallel_calls=tf.data.AUTOTUNE)
    else:
        dataset = _batches(config, preprocess(images), one_hot(labels))
        if config.augment:
            dataset = dataset.map(lambda x, y: (augment_batch(x), y), num_parallel_calls=tf.data.AUTOTUNE)
    return dataset.prefetch(tf.data.AUTOTUNE)


def _batches(config: TrainConfig, *columns):
    """Batches of (x, y, *extra) rows: shuffled every epoch, repeated endlessly, x maybe re-encoded as JPEG."""
    import tensorflow as tf

    from cnn.augment import jpeg_image

    dataset = tf.data.Dataset.from_tensor_slices(columns)
    # .repeat() + steps_per_epoch: a finite dataset makes fit rebuild its iterator every epoch (a stall).
    dataset = dataset.shuffle(len(columns[0]), seed=config.seed, reshuffle_each_iteration=True).repeat()
    if config.jpeg_augment:
        dataset = dataset.map(
            lambda x, *rest: (jpeg_image(x, config.jpeg_augment, config.jpeg_quality), *rest),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return dataset.batch(config.batch_size)


def flip_planned_batches(images, labels, config: TrainConfig, initial_epoch: int = 0):
    """Un-augmented training batches (x, y, flip), flip saying which images airbench's alternating flip mirrors.

    Each image's random bit (from `config.seed`) travels with it through the shuffle.
    """
    import tensorflow as tf

    from cnn.augment import alternating_flip

    count, size = len(labels), config.batch_size
    bits = np.random.default_rng(config.seed).integers(0, 2, count).astype(bool)
    dataset = _batches(config, preprocess(images), one_hot(labels), bits)

    # .repeat() of a shuffled dataset concatenates whole epochs and, never ending, only makes
    # full batches: row i of batch b is element b*size + i, of epoch initial_epoch + that // count
    # (a batch may straddle two epochs). Counting here rather than per element keeps it vectorized.
    def plan(b, batch):
        x, y, bit = batch
        position = b * size + tf.range(size, dtype=tf.int64)
        return x, y, alternating_flip(bit, initial_epoch + position // count)

    return dataset.enumerate().map(plan, num_parallel_calls=tf.data.AUTOTUNE)


def validation_data(data: Cifar10):
    """The validation split as (x, y) for `model.fit`, or None when there is none."""
    if len(data.val) == 0:
        return None
    return preprocess(data.val.images), one_hot(data.val.labels)
