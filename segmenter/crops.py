"""The one crop geometry of the segmenter, used for training and at inference.

A cluster box (``x0, y0, x1, y1`` float pixel edges in the full image) becomes a square window
centred on the box, of side ``max(w, h) + 2 * margin`` pixels (whole pixels). The window is cut
from the normalised image (float32, chromosomes bright); where it leaves the image it is padded
with the given background level. It is then resized to ``CROP_SIZE`` x ``CROP_SIZE``: images with
INTER_AREA when shrinking and INTER_LINEAR when enlarging, label maps with INTER_NEAREST_EXACT
(pixel centres aligned as those two align them; OpenCV's INTER_NEAREST is off by up to a pixel).

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


def _starts(low: float, high: float, side: int) -> list[int]:
    """First pixels of windows ``side`` px wide covering ``low..high`` (pixel edges), evenly
    spaced at most ``side / 2`` apart; one centred window when the span fits."""
    extent = high - low
    if extent <= side:
        return [int(math.floor((low + high - side) / 2 + 0.5))]
    count = math.ceil((extent - side) / (side / 2)) + 1
    return [int(round(low + i * (extent - side) / (count - 1))) for i in range(count)]


def windows_for_box(box, margin: int, max_side: float) -> list[tuple[CropGeometry, np.ndarray]]:
    """Crop windows of ``box`` (``x0, y0, x1, y1`` pixel edges), none wider than ``max_side``.

    A box whose window (``window_for_box``) fits is one window, with the box itself. A larger
    one (a big cluster: shrunk into 88 px it would be squashed past what the segmenter was
    trained on) is covered by a grid of windows ``max_side`` px wide, each at most half a window
    from the next, so that a chromosome up to half a window long lies whole in one of them.
    Each comes with its *core*: its middle half (out to the box's edge for windows on the box's
    edge), within the box, float32 ``(4,)``. The stitcher keeps a piece cut by a window's edge
    only when most of it lies in that window's core, and merges the copies of a chromosome that
    several windows found whole (``pipeline.stitch``). Returns ``[(geometry, core box)]``.
    """
    whole = window_for_box(box, margin)
    if whole.side <= max_side:
        return [(whole, np.asarray(box, np.float32))]
    side = max(1, int(max_side))
    x0, y0, x1, y1 = (float(v) for v in box)

    def cores(starts: list[int], low: float, high: float) -> list[tuple[float, float]]:
        last = len(starts) - 1
        return [
            (
                low if i == 0 else max(low, start + side / 4),
                high if i == last else min(high, start + 3 * side / 4),
            )
            for i, start in enumerate(starts)
        ]

    lefts, tops = _starts(x0 - margin, x1 + margin, side), _starts(y0 - margin, y1 + margin, side)
    out = []
    for top, (cy0, cy1) in zip(tops, cores(tops, y0, y1), strict=True):
        for left, (cx0, cx1) in zip(lefts, cores(lefts, x0, x1), strict=True):
            core = np.asarray((cx0, cy0, cx1, cy1), np.float32)
            out.append((CropGeometry(left, top, side), core))
    return out


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
    return _resize(window, size, cv2.INTER_NEAREST_EXACT)


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
