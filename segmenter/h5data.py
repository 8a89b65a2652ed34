"""Loader for the seed's ``LowRes_13434_overlapping_pairs.h5`` layout.

The file holds ``dataset_1``: ``(N, 94, 93, 2)``, channel 0 the grey crop (uint8, chromosomes
bright), channel 1 the labels 0 background, 1 chromosome A, 2 chromosome B, 3 overlap, with
occasional stray values of 4 or more. As the seed (Hu et al. 2017, ``processInputImages.py``):
labels are cleaned pixel by pixel (a pixel >= 4, or a chromosome pixel with at most 3 pixels of
its own class in its 3x3 block, takes the most frequent class among its 8 neighbours, ties to the
lower class; the outermost ring of pixels becomes background), then images and labels are
centre-cropped to 88x88 with the seed's offset ``(shape[1] - 88) // 2`` on both axes. The first
80 % of the pairs are for training, the last 20 % for testing. Images are scaled to [0, 1] by
dividing by 255.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.core.adir import DatasetError
from segmenter.crops import CROP_SIZE

DATASET_KEY = "dataset_1"
TRAIN_FRACTION = 0.8
_COUNTED_CLASSES = 5  # neighbour votes are counted for values 0..4, as the seed does
_CHUNK = 512  # pairs cleaned at a time (bounds the memory of the neighbour votes)


def clean_labels(labels: np.ndarray) -> np.ndarray:
    """The seed's label clean-up of ``(N, H, W)`` integer labels -> uint8 with values 0..3."""
    labels = np.minimum(np.asarray(labels).astype(np.int64), _COUNTED_CLASSES - 1)
    count, height, width = labels.shape
    padded = np.pad(labels, ((0, 0), (1, 1), (1, 1)))
    votes = np.zeros((_COUNTED_CLASSES, count, height, width), np.int32)
    for dy in range(3):
        for dx in range(3):
            neighbour = padded[:, dy : dy + height, dx : dx + width]
            for cls in range(_COUNTED_CLASSES):
                votes[cls] += neighbour == cls
    own = np.take_along_axis(votes, labels[None], axis=0)[0]  # includes the pixel itself
    centre = np.eye(_COUNTED_CLASSES, dtype=np.int32)[labels].transpose(3, 0, 1, 2)
    majority = np.argmax(votes - centre, axis=0)  # the 8 neighbours only; ties -> lower class
    replace = (labels > 3) | ((labels > 0) & (own <= 3))
    cleaned = np.where(replace, majority, labels)
    cleaned = np.where(cleaned > 3, 3, cleaned)  # a neighbourhood of 4s (the seed would crash)
    cleaned[:, 0, :] = cleaned[:, -1, :] = 0
    cleaned[:, :, 0] = cleaned[:, :, -1] = 0
    return cleaned.astype(np.uint8)


def centre_crop(array: np.ndarray, size: int = CROP_SIZE) -> np.ndarray:
    """The seed's centre crop of ``(N, H, W, ...)``: offset ``(H - size) // 2`` on both axes."""
    start = (array.shape[1] - size) // 2
    return array[:, start : start + size, start : start + size]


def load_h5_pairs(path: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{"train": (images, labels), "test": (images, labels)}`` from a file of the seed's layout:
    images float32 ``(N, 88, 88)`` in [0, 1], labels uint8 ``(N, 88, 88)`` 0..3.

    Raises DatasetError when the file is missing, unreadable, lacks ``dataset_1``, or its shape is
    not ``(N, H >= 88, W >= 88, 2)``.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"h5 file not found: {path}")
    try:
        with h5py.File(path, "r") as h5:
            if DATASET_KEY not in h5:
                raise DatasetError(f"{path} has no '{DATASET_KEY}' dataset (keys: {list(h5)})")
            data = np.asarray(h5[DATASET_KEY][...])
    except OSError as error:
        raise DatasetError(f"cannot read h5 file {path}: {error}") from error
    if data.ndim != 4 or data.shape[3] != 2 or min(data.shape[1:3]) < CROP_SIZE or not len(data):
        raise DatasetError(
            f"{path}: '{DATASET_KEY}' must be (N, H, W, 2) with H, W >= {CROP_SIZE}, "
            f"got {data.shape}"
        )
    images = centre_crop(data[..., 0]).astype(np.float32) / 255.0
    labels = np.concatenate(
        [
            centre_crop(clean_labels(data[i : i + _CHUNK, ..., 1]))
            for i in range(0, len(data), _CHUNK)
        ]
    )
    cut = int(TRAIN_FRACTION * len(data))
    return {"train": (images[:cut], labels[:cut]), "test": (images[cut:], labels[cut:])}
