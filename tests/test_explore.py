"""cnn.explore: class counts, random picks per class, exact pixel histograms, array summaries."""

import numpy as np
import pytest

from cnn import explore


def test_class_counts_include_empty_classes():
    assert explore.class_counts(np.array([0, 0, 3, 9])).tolist() == [2, 0, 0, 1, 0, 0, 0, 0, 0, 1]


def test_class_counts_reject_labels_outside_the_classes():
    with pytest.raises(ValueError, match="0..9"):
        explore.class_counts(np.array([0, 10]))


def test_random_per_class_picks_distinct_images_of_the_right_class_repeatably():
    labels = np.arange(200) % 10
    picks = explore.random_per_class(labels, per_class=5, seed=3)
    assert len(picks) == 10
    for label, indices in enumerate(picks):
        assert len(indices) == 5 and len(set(indices.tolist())) == 5
        assert (labels[indices] == label).all()
    again = explore.random_per_class(labels, per_class=5, seed=3)
    assert all((a == b).all() for a, b in zip(picks, again))
    other = explore.random_per_class(labels, per_class=5, seed=4)
    assert any((a != b).any() for a, b in zip(picks, other)), "a new seed must draw other images"


def test_random_per_class_gives_what_a_small_class_has():
    labels = np.array([0, 0, 1])
    picks = explore.random_per_class(labels, per_class=4, seed=0)
    assert sorted(picks[0].tolist()) == [0, 1] and picks[1].tolist() == [2]
    assert all(len(indices) == 0 for indices in picks[2:])
    with pytest.raises(ValueError):
        explore.random_per_class(labels, per_class=0, seed=0)


def test_pixel_histogram_counts_every_value_per_channel():
    images = np.zeros((2, 2, 2, 3), np.uint8)
    images[..., 0] = 255  # red all 255
    images[0, 0, 0, 1] = 7  # one green 7
    histogram = explore.pixel_histogram(images)
    assert histogram.names == ("red", "green", "blue")
    assert histogram.counts.shape == (3, 256)
    assert histogram.counts[0, 255] == 8 and histogram.counts[0].sum() == 8
    assert histogram.counts[1, 7] == 1 and histogram.counts[1, 0] == 7
    assert histogram.counts[2, 0] == 8
    np.testing.assert_allclose(histogram.means, images.reshape(-1, 3).mean(axis=0))
    np.testing.assert_allclose(histogram.stds, images.reshape(-1, 3).std(axis=0))


def test_pixel_histogram_pooled_and_normalized_axis():
    images = np.random.default_rng(0).integers(0, 256, (5, 4, 4, 3), dtype=np.uint8)
    pooled = explore.pixel_histogram(images, per_channel=False)
    assert pooled.names == ("all channels",)
    assert pooled.counts.sum() == images.size
    np.testing.assert_allclose(pooled.means[0], images.mean())
    assert pooled.values()[-1] == 255 and pooled.values(normalized=True)[-1] == 1.0


def test_pixel_histogram_rejects_non_uint8():
    with pytest.raises(ValueError, match="uint8"):
        explore.pixel_histogram(np.zeros((1, 2, 2, 3), np.float32))


def test_array_summary():
    summary = explore.array_summary(np.array([[3, 9]], np.uint8))
    assert summary == {"shape": "(1, 2)", "dtype": "uint8", "min": 3, "max": 9}
