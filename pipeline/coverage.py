"""Foreground left out: boxes around it, so that a chromosome the detector missed (a tangle of a
kind it never saw, a faint or unusual one) or that no crop returned (one lying at the edge of a
neighbour's box, which the segmenter leaves to that neighbour) still reaches the segmenter.

Two rules, one before segmentation and one after:

- ``uncovered_boxes``: foreground the detector's boxes leave uncovered.

The foreground is the Otsu threshold of the flattened image (``pipeline.scale.flattened``: the
foreground the chromosome width is measured on), found on the image shrunk to at most
``MAX_SIDE`` pixels (large mosaics). A foreground piece (8-connected) is *uncovered* when at
least ``MIN_UNCOVERED`` chromosome areas of it (``width**2`` each, ``width`` the chromosome width)
lie outside every detector box; it then gets a box of its own, its bounding box. Pieces at least
``NUCLEUS_THICKNESS`` chromosome widths thick somewhere (twice their largest distance to the
background) are interphase nuclei and get none: however tangled, chromosomes are nowhere much
thicker than where two cross.
- ``unsegmented_boxes``: foreground no chromosome found covers, after the first pass through the
  segmenter. The chromosomes found are grown by ``FOUND_GROWTH`` chromosome widths (their rims,
  which the threshold draws a little wider, do not count), what is left is opened by a disc
  ``MIN_THICKNESS`` widths across (slivers between chromosomes do not count), and each piece of
  at least ``MIN_UNSEGMENTED`` chromosome areas that is not a nucleus gets its bounding box. With
  stop 29's windows, on the ADIR val slides, it found 29 of the 53 chromosomes the first pass had
  left out (docs/results.md).

And after stitching, ``without_blobs`` drops what came back much thicker than the chromosomes
found (pipeline setting ``stitch.max_thickness``, times their median thickness), and
``without_enclosed`` what lies inside an interphase nucleus: a chromosome whose surroundings no
other chromosome covers are about as bright as itself (pipeline setting ``stitch.max_surround``).
"""

from __future__ import annotations

import math
import weakref

import cv2
import numpy as np

from pipeline.core.imageio import otsu_foreground
from pipeline.normalised import NormalisedImage
from pipeline.scale import ADIR_WIDTH, NUCLEUS_THICKNESS, flattened

MIN_UNCOVERED = 2.0  # chromosome areas (width**2) outside every box: about a small chromosome
MAX_SIDE = 2048  # px: larger images are shrunk by a whole factor to find their foreground
FOUND_GROWTH = 0.25  # chromosome widths
MIN_THICKNESS = 0.5  # chromosome widths
MIN_UNSEGMENTED = 0.5  # chromosome areas (width**2): half a small chromosome
MIN_FOR_MEDIAN = 5  # chromosomes found: fewer give no median thickness to judge blobs by


def foreground(image: NormalisedImage) -> tuple[np.ndarray, int]:
    """The foreground of ``image`` (module doc), bool ``(H // factor, W // factor)``, and that
    whole shrink factor (1 up to ``MAX_SIDE`` px); found once per image, as both rules read it."""
    if image not in _FOREGROUNDS:
        _FOREGROUNDS[image] = _foreground(image)
    return _FOREGROUNDS[image]


_FOREGROUNDS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # images still in use


def foreground_part(image: NormalisedImage, row0: int, col0: int, height: int, width: int):
    """bool ``(height, width)``: the foreground (``foreground``) of the image's rows
    ``row0:row0+height`` and columns ``col0:col0+width`` (inside the image), at full size."""
    mask, factor = foreground(image)
    rows = np.minimum(np.arange(row0, row0 + height) // factor, mask.shape[0] - 1)
    cols = np.minimum(np.arange(col0, col0 + width) // factor, mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _foreground(image: NormalisedImage) -> tuple[np.ndarray, int]:
    factor = max(1, math.ceil(max(image.shape) / MAX_SIDE))
    normalised = image.to_uint8()  # a mosaic is shrunk from 8 bits, never copied whole as float
    if factor > 1:
        size = (image.shape[1] // factor, image.shape[0] // factor)
        normalised = cv2.resize(normalised, size, interpolation=cv2.INTER_AREA)
    return otsu_foreground(flattened(normalised.astype(np.float32) / 255)), factor


def _thickness(piece: np.ndarray) -> float:
    """Twice the largest distance of bool ``piece``'s pixels to the background, in pixels."""
    return 2 * float(cv2.distanceTransform(np.pad(piece, 1).astype(np.uint8), cv2.DIST_L2, 3).max())


def _is_nucleus(piece: np.ndarray, width: float) -> bool:
    """Whether bool ``piece`` is at least ``NUCLEUS_THICKNESS`` chromosome widths thick."""
    return _thickness(piece) >= NUCLEUS_THICKNESS * width


def without_blobs(chromosomes: list, thickness: float | None) -> list:
    """``chromosomes`` (``pipeline.stitch.Instance``) less those at least ``thickness`` times as
    thick as their median (None: none dropped): a chromosome is one width thick, where it lies over
    another too, and what the U-Net returns that much thicker is a nucleus or a blob of debris.
    The median of the chromosomes found, not the image's measured width: where that measure is
    wrong, it would take whole chromosomes for blobs. Fewer than ``MIN_FOR_MEDIAN`` chromosomes:
    none dropped."""
    if thickness is None or len(chromosomes) < MIN_FOR_MEDIAN:
        return chromosomes
    thick = np.array([_thickness(item.mask) for item in chromosomes])
    limit = thickness * np.median(thick)
    return [item for item, value in zip(chromosomes, thick, strict=True) if value < limit]


def without_enclosed(chromosomes: list, image: NormalisedImage, surround: float | None) -> list:
    """``chromosomes`` (``pipeline.stitch.Instance``) less those lying inside an interphase
    nucleus (None: none dropped): whose surroundings (the pixels within their median thickness
    of them that no chromosome covers) are, over the image's background level, at least
    ``surround`` times as bright as they are (medians). A chromosome's surroundings are
    background or other chromosomes; a piece of a nucleus that the U-Net took for one is
    surrounded by the rest of the nucleus, as bright as itself. Fewer than ``MIN_FOR_MEDIAN``
    chromosomes: none dropped."""
    if surround is None or len(chromosomes) < MIN_FOR_MEDIAN:
        return chromosomes
    radius = max(1, round(np.median([_thickness(item.mask) for item in chromosomes])))
    disc = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    background = image.background()
    boxes = np.array([item.box for item in chromosomes])
    height, width = image.shape
    kept = []
    for item in chromosomes:
        x0, y0, x1, y1 = item.box
        x0, y0 = max(x0 - radius, 0), max(y0 - radius, 0)
        x1, y1 = min(x1 + radius, width), min(y1 + radius, height)
        near = (boxes[:, 0] < x1) & (boxes[:, 2] > x0) & (boxes[:, 1] < y1) & (boxes[:, 3] > y0)
        covered = np.zeros((y1 - y0, x1 - x0), bool)
        for index in np.flatnonzero(near):
            covered |= chromosomes[index].full_mask_part(x0, y0, x1, y1)
        own = item.full_mask_part(x0, y0, x1, y1)
        around = cv2.dilate(own.astype(np.uint8), disc).astype(bool) & ~covered
        values = image[y0:y1, x0:x1] - background
        if not around.any() or np.median(values[around]) < surround * np.median(values[own]):
            kept.append(item)
    return kept


def _boxes(found: list, factor: int, shape: tuple[int, int]) -> np.ndarray:
    boxes = np.asarray(found, np.float32).reshape(-1, 4) * factor
    return np.minimum(boxes, np.float32([shape[1], shape[0]] * 2))


def uncovered_boxes(
    image: NormalisedImage, boxes: np.ndarray, width: float | None, scale: float = 1.0
) -> np.ndarray:
    """Boxes float32 ``(M, 4)`` x0, y0, x1, y1 (the image's pixel edges) around the foreground
    pieces of ``image`` that ``boxes`` (the same form) leave uncovered, by the module's rule.
    ``width``: the chromosome width measured in the image's pixels; None (not measured): the
    width the models were trained at (``pipeline.scale.ADIR_WIDTH``) as the image seen at
    ``scale`` shows it."""
    mask, factor = foreground(image)
    covered = np.zeros(mask.shape, bool)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float32).reshape(-1, 4) / factor:
        covered[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)] = True
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    outside = np.bincount(pieces[mask & ~covered], minlength=count)
    width = (width or ADIR_WIDTH / scale) / factor
    found = []
    for piece in np.flatnonzero(outside[1:] >= MIN_UNCOVERED * width * width) + 1:
        x, y, w, h, _ = stats[piece]
        if not _is_nucleus(pieces[y : y + h, x : x + w] == piece, width):
            found.append((x, y, x + w, y + h))
    return _boxes(found, factor, image.shape)


def unsegmented_boxes(
    image: NormalisedImage, chromosomes: list, width: float | None, scale: float = 1.0
) -> np.ndarray:
    """Boxes float32 ``(M, 4)`` x0, y0, x1, y1 (the image's pixel edges) around the foreground
    of ``image`` that no chromosome of ``chromosomes`` (``pipeline.stitch.Instance``, the image's
    pixels) covers, by the module's rule; ``width`` and ``scale`` as for ``uncovered_boxes``."""
    mask, factor = foreground(image)
    covered = np.zeros(mask.shape, np.uint8)
    for chromosome in chromosomes:
        rows, cols = np.nonzero(chromosome.mask)
        covered[(rows + chromosome.row0) // factor, (cols + chromosome.col0) // factor] = 1
    width = (width or ADIR_WIDTH / scale) / factor
    covered = cv2.dilate(covered, _disc(2 * round(FOUND_GROWTH * width) + 1))
    left = cv2.morphologyEx(
        (mask & (covered == 0)).astype(np.uint8), cv2.MORPH_OPEN, _disc(MIN_THICKNESS * width)
    )
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(left, connectivity=8)
    found = []
    for piece in range(1, count):
        x, y, w, h, area = stats[piece]
        if area >= MIN_UNSEGMENTED * width * width and not _is_nucleus(
            pieces[y : y + h, x : x + w] == piece, width
        ):
            found.append((x, y, x + w, y + h))
    return _boxes(found, factor, image.shape)


def _disc(diameter: float) -> np.ndarray:
    side = max(1, int(round(diameter)))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (side, side))
