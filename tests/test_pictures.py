"""cnn.pictures: square-pixel enlargement, mosaics, the viridis overlay, shrinking to fit."""

import numpy as np
import pytest
from PIL import Image

from cnn import pictures


def test_enlarge_makes_each_pixel_a_square_block_of_one_image_or_a_batch():
    image = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    big = pictures.enlarge(image, 4)
    assert big.shape == (8, 12, 3) and big.dtype == np.uint8
    for row in range(2):
        for column in range(3):
            assert (big[4 * row : 4 * row + 4, 4 * column : 4 * column + 4] == image[row, column]).all()
    batch = pictures.enlarge(np.stack([image, image + 1]), 2)
    assert batch.shape == (2, 4, 6, 3) and (batch[1, 2:4, 4:6] == image[1, 2] + 1).all()
    np.testing.assert_array_equal(pictures.enlarge(image, 1), image)
    with pytest.raises(ValueError):
        pictures.enlarge(image, 0)


def test_unit_to_uint8_rounds_and_clips():
    np.testing.assert_array_equal(pictures.unit_to_uint8(np.array([0.0, 0.5, 1.0, -0.2, 1.3])), [0, 128, 255, 0, 255])


def test_mosaic_places_tiles_row_by_row_with_gaps():
    images = np.stack([np.full((2, 2, 3), value, np.uint8) for value in (10, 20, 30)])
    picture = pictures.mosaic(images, [np.array([0, 1]), np.array([2])], gap=1, fill=255)
    assert picture.shape == (5, 5, 3) and picture.dtype == np.uint8
    assert (picture[0:2, 0:2] == 10).all() and (picture[0:2, 3:5] == 20).all()
    assert (picture[3:5, 0:2] == 30).all()
    assert (picture[2] == 255).all() and (picture[3:5, 3:5] == 255).all()  # gap row, missing tile
    assert pictures.tile_centers(2, size=2, gap=1) == [0.5, 3.5]
    with pytest.raises(ValueError):
        pictures.mosaic(images, [np.array([], int)])


def test_grid_rows_and_tile_positions_agree_with_the_mosaic():
    rows = pictures.grid_rows(5, 2)
    assert [row.tolist() for row in rows] == [[0, 1], [2, 3], [4]]
    images = np.stack([np.full((3, 4), index, np.float32) for index in range(5)])
    picture = pictures.mosaic(images, rows, gap=1, fill=np.nan)
    for index, (top, left) in enumerate(pictures.tile_positions(5, 3, 4, columns=2, gap=1)):
        assert (picture[top : top + 3, left : left + 4] == index).all()


def test_filters_enlarged_in_a_mosaic_have_the_expected_size():
    filters = np.random.default_rng(0).random((32, 4, 4, 3))
    picture = pictures.mosaic(pictures.enlarge(pictures.unit_to_uint8(filters), 10), pictures.grid_rows(32, 8), gap=2)
    assert picture.shape == (4 * 42 - 2, 8 * 42 - 2, 3)


def test_tile_channels_puts_channel_c_at_its_tile_with_nan_between():
    activations = np.arange(3 * 4 * 5, dtype=np.float32).reshape(3, 4, 5)
    grid = pictures.tile_channels(activations, max_channels=5, columns=2)
    assert grid.shape == (3 * 4 - 1, 2 * 5 - 1)
    np.testing.assert_array_equal(grid[4:7, 5:9], activations[:, :, 3])  # channel 3: row 1, column 1
    assert np.isnan(grid[3]).all() and np.isnan(grid[8:, 5:]).all()


def test_viridis_and_overlay():
    np.testing.assert_array_equal(pictures.viridis(np.array([0.0, 1.0])), [[68, 1, 84], [253, 231, 37]])
    base = np.zeros((32, 32, 3), np.uint8)
    blended = pictures.overlay(base, np.ones((32, 32), np.float32), alpha=0.5)
    assert blended.dtype == np.uint8 and blended.shape == (32, 32, 3)
    np.testing.assert_array_equal(blended[0, 0], [126, 116, 18])
    with pytest.raises(ValueError):
        pictures.overlay(base, np.ones((8, 8)))


def test_fit_within_shrinks_keeping_the_shape_and_says_so():
    fitted, shrunk = pictures.fit_within(Image.new("RGB", (600, 300), (10, 200, 30)), 256)
    assert shrunk and fitted.size == (256, 128)
    small = Image.new("RGB", (40, 20))
    assert pictures.fit_within(small, 256) == (small, False)
