"""The one crop geometry of the segmenter, used for training and at inference.

A cluster box (``x0, y0, x1, y1`` float pixel edges in the full image) becomes a square window
centred on the box, of side ``max(w, h) + 2 * margin`` pixels (whole pixels). The window is cut
from the normalised image (float32, chromosomes bright); where it leaves the image it is padded
with the given background level. It is then resized to ``CROP_SIZE`` x ``CROP_SIZE``: images with
INTER_AREA when shrinking and INTER_LINEAR when enlarging, label maps with INTER_NEAREST.

Going back: per-class probability maps ``(4, 88, 88)`` are resized to the window's side (the
probabilities, not labels: the caller takes the argmax after pasting) and clipped to the image.

Arrays are ``[row, col]``; windows are given by their top-left pixel ``(x0, y0)`` and ``side``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

CROP_SIZE = 88


@dataclass(frozen=True)
class CropGeometry:
    """A square window in full-image pixels: columns ``x0 .. x0+side-1``, rows ``y0 .. y0+side-1``.

    ``x0``/``y0`` may be negative and the window may pass the image's far edges (padded there).
    """

    x0: int
    y0: int
    side: int


def window_for_box(box, margin: int) -> CropGeometry:
    """The square window around ``box`` (``x0, y0, x1, y1`` pixel edges): centred on the box,
    side ``ceil(max(w, h)) + 2 * margin`` (at least 1)."""
    x0, y0, x1, y1 = (float(v) for v in box)
    if x1 < x0 or y1 < y0:
        raise ValueError(f"box must have x1 >= x0 and y1 >= y0, got {tuple(box)}")
    side = max(1, math.ceil(max(x1 - x0, y1 - y0)) + 2 * int(margin))
    return CropGeometry(
        x0=int(math.floor((x0 + x1 - side) / 2 + 0.5)),
        y0=int(math.floor((y0 + y1 - side) / 2 + 0.5)),
        side=side,
    )


def cut_window(image, geometry: CropGeometry, fill: float, dtype=None) -> np.ndarray:
    """The window's pixels of a ``(H, W)`` image, ``(side, side)`` of ``dtype`` (default the
    image's), ``fill`` outside. ``image``: an array, or any object with ``shape`` and 2-D slicing
    (``pipeline.normalised.NormalisedImage``): only the window is read."""
    height, width = image.shape[:2]
    out = np.full((geometry.side, geometry.side), fill, dtype=dtype or image.dtype)
    ix0, iy0 = max(geometry.x0, 0), max(geometry.y0, 0)
    ix1 = min(geometry.x0 + geometry.side, width)
    iy1 = min(geometry.y0 + geometry.side, height)
    if ix1 > ix0 and iy1 > iy0:
        out[iy0 - geometry.y0 : iy1 - geometry.y0, ix0 - geometry.x0 : ix1 - geometry.x0] = image[
            iy0:iy1, ix0:ix1
        ]
    return out


def _resize(array: np.ndarray, size: int, interpolation: int) -> np.ndarray:
    return cv2.resize(array, (size, size), interpolation=interpolation)


def crop_image(
    image: np.ndarray, geometry: CropGeometry, background: float, size: int = CROP_SIZE
) -> np.ndarray:
    """``(size, size)`` float32 crop of a normalised ``(H, W)`` image (padding = ``background``);
    ``image`` as in ``cut_window``."""
    window = cut_window(image, geometry, background, np.float32)
    shrinking = geometry.side > size
    return _resize(window, size, cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR)


def crop_labels(labels: np.ndarray, geometry: CropGeometry, size: int = CROP_SIZE) -> np.ndarray:
    """``(size, size)`` uint8 crop of a ``(H, W)`` label map (nearest; 0 outside the image)."""
    window = cut_window(labels, geometry, 0, np.uint8)
    return _resize(window, size, cv2.INTER_NEAREST)


def background_level(image: np.ndarray) -> float:
    """Padding level for crops of a normalised image: its median (background covers most of a
    metaphase)."""
    return float(np.median(image))


def probabilities_to_image(
    probabilities: np.ndarray, geometry: CropGeometry, image_shape: tuple[int, int]
) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Per-class maps ``(C, s, s)`` of one crop back in full-image coordinates.

    The maps are resized to the window's side (INTER_AREA when shrinking, INTER_LINEAR when
    enlarging) and clipped to the image. Returns ``(C, y1 - y0, x1 - x0)`` float32 and the region
    ``(x0, y0, x1, y1)`` (pixel edges, inside the image) where they belong:
    ``full[:, y0:y1, x0:x1] = maps``. The region is empty when the window misses the image.
    """
    probabilities = np.asarray(probabilities, np.float32)
    if probabilities.ndim != 3:
        raise ValueError(f"probabilities must be (C, H, W), got shape {probabilities.shape}")
    side = geometry.side
    interpolation = cv2.INTER_AREA if side < probabilities.shape[1] else cv2.INTER_LINEAR
    resized = np.stack([_resize(p, side, interpolation) for p in probabilities])
    height, width = image_shape[:2]
    x0, y0 = max(geometry.x0, 0), max(geometry.y0, 0)
    x1 = max(min(geometry.x0 + side, width), x0)
    y1 = max(min(geometry.y0 + side, height), y0)
    maps = resized[:, y0 - geometry.y0 : y1 - geometry.y0, x0 - geometry.x0 : x1 - geometry.x0]
    return np.ascontiguousarray(maps), (x0, y0, x1, y1)
