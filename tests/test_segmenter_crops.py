"""The crop geometry: square windows, padding, and the way back to image coordinates."""

import numpy as np
import pytest

from segmenter import crops


def test_window_is_square_centred_with_margin():
    geometry = crops.window_for_box((10, 20, 30, 30), margin=4)  # 20 wide, 10 high
    assert geometry == crops.CropGeometry(x0=6, y0=11, side=28)
    with pytest.raises(ValueError):
        crops.window_for_box((5, 5, 2, 9), 0)


def test_crop_pads_with_background_outside_the_image():
    image = np.ones((20, 20), np.float32)
    geometry = crops.CropGeometry(x0=-10, y0=-10, side=20)
    window = crops.cut_window(image, geometry, 0.25)
    assert (window[:10] == 0.25).all() and (window[10:, 10:] == 1).all()
    assert crops.crop_image(image, geometry, 0.25).shape == (88, 88)


@pytest.mark.parametrize("size", [44, 88, 176])  # enlarge x2, same, shrink x2
def test_round_trip_lands_on_the_same_pixels_exactly(size):
    labels = np.zeros((300, 300), np.uint8)
    labels[100 : 100 + size // 2, 120 : 120 + size // 4] = 1
    labels[110 : 100 + size // 2, 130 : 120 + size // 4 + 4] = 2
    box = (120, 100, 120 + size // 4 + 4, 100 + size // 2)
    margin = (size - size // 2) // 2
    geometry = crops.window_for_box(box, margin)
    assert geometry.side == size
    crop = crops.crop_labels(labels, geometry)
    onehot = np.eye(4, dtype=np.float32)[crop].transpose(2, 0, 1)
    maps, (x0, y0, x1, y1) = crops.probabilities_to_image(onehot, geometry, labels.shape)
    back = np.zeros(labels.shape, np.uint8)
    back[y0:y1, x0:x1] = maps.argmax(axis=0)
    np.testing.assert_array_equal(back, labels)


def test_round_trip_at_odd_sizes_and_image_edges():
    rng = np.random.default_rng(0)
    labels = np.zeros((120, 100), np.uint8)
    labels[2:60, 70:99] = 1  # touches the image's right edge region
    labels[30:50, 60:90] = 3
    geometry = crops.window_for_box((60, 2, 99, 60), margin=5)  # side 68, leaves the image
    assert geometry.x0 + geometry.side > 100
    image = rng.random((120, 100)).astype(np.float32)
    assert crops.crop_image(image, geometry, 0.0).dtype == np.float32
    crop = crops.crop_labels(labels, geometry)
    onehot = np.eye(4, dtype=np.float32)[crop].transpose(2, 0, 1)
    maps, (x0, y0, x1, y1) = crops.probabilities_to_image(onehot, geometry, labels.shape)
    assert maps.shape == (4, y1 - y0, x1 - x0) and (x1, y0) == (100, 0)
    back = maps.argmax(axis=0)
    agreement = (back == labels[y0:y1, x0:x1]).mean()
    assert agreement > 0.98
    for cls in (1, 3):  # each class lands where it was (centroid within a pixel)
        true = np.argwhere(labels[y0:y1, x0:x1] == cls).mean(axis=0)
        found = np.argwhere(back == cls).mean(axis=0)
        assert np.abs(true - found).max() < 1.0
