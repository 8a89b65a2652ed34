"""The loader of the seed's LowRes_13434_overlapping_pairs.h5 layout, on tiny files."""

import h5py
import numpy as np
import pytest

from pipeline.core.adir import DatasetError
from segmenter.h5data import clean_labels, load_h5_pairs


def _write(path, data, key="dataset_1"):
    with h5py.File(path, "w") as h5:
        h5.create_dataset(key, data=data)
    return path


def test_loads_centre_crops_cleans_labels_and_splits_80_20(tmp_path):
    rng = np.random.default_rng(0)
    data = np.zeros((10, 94, 93, 2), np.uint8)
    data[..., 0] = rng.integers(0, 256, (10, 94, 93))
    data[:, 30:60, 30:60, 1] = 1
    data[:, 40:50, 40:50, 1] = 3
    data[:, 45, 45, 1] = 4  # a stray 4 inside the overlap
    data[:, 20, 20, 1] = 2  # a lone pixel in the background
    pairs = load_h5_pairs(_write(tmp_path / "pairs.h5", data))
    images, labels = pairs["train"]
    assert images.shape == labels.shape == (8, 88, 88) and len(pairs["test"][0]) == 2
    assert images.dtype == np.float32 and labels.dtype == np.uint8
    np.testing.assert_allclose(images[0], data[0, 3:91, 3:91, 0] / 255.0)  # seed's offset: 3, 3
    assert labels.max() <= 3
    assert labels[0, 45 - 3, 45 - 3] == 3 and labels[0, 20 - 3, 20 - 3] == 0
    assert (labels[0, 31 - 3 : 59 - 3, 31 - 3 : 39 - 3] == 1).all()


def test_clean_labels_rule():
    labels = np.zeros((1, 6, 6), np.uint8)
    labels[0, 1:5, 1:5] = 2
    labels[0, 2, 2] = 4
    cleaned = clean_labels(labels)
    assert cleaned[0, 2, 2] == 2  # a 4 takes its neighbours' majority
    assert cleaned[0, 0].max() == 0 and cleaned[0, :, -1].max() == 0


def test_bad_h5_files_give_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="not found"):
        load_h5_pairs(tmp_path / "missing.h5")
    with pytest.raises(DatasetError, match="no 'dataset_1'"):
        load_h5_pairs(_write(tmp_path / "other.h5", np.zeros((2, 94, 93, 2)), key="images"))
    with pytest.raises(DatasetError, match=r"must be \(N, H, W, 2\)"):
        load_h5_pairs(_write(tmp_path / "flat.h5", np.zeros((2, 94, 93))))
    (tmp_path / "junk.h5").write_bytes(b"not an h5 file")
    with pytest.raises(DatasetError, match="cannot read"):
        load_h5_pairs(tmp_path / "junk.h5")
