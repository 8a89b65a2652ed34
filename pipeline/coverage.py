"""Foreground the detector left without a box: one more box around each such piece, so that a
chromosome the detector missed (a tangle of a kind it never saw, a faint or unusual one) still
reaches the segmenter.

The foreground is the Otsu threshold of the flattened image (``pipeline.scale.flattened``: the
foreground the chromosome width is measured on), found on the image shrunk to at most
``MAX_SIDE`` pixels (large mosaics). A foreground piece (8-connected) is *uncovered* when at
least ``MIN_UNCOVERED`` chromosome areas of it (``width**2`` each, ``width`` the chromosome width)
lie outside every detector box; it then gets a box of its own, its bounding box. Pieces at least
``NUCLEUS_THICKNESS`` chromosome widths thick somewhere (twice their largest distance to the
background) are interphase nuclei and get none: however tangled, chromosomes are nowhere much
thicker than where two cross.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.imageio import otsu_foreground
from pipeline.normalised import NormalisedImage
from pipeline.scale import ADIR_WIDTH, flattened

MIN_UNCOVERED = 2.0  # chromosome areas (width**2) outside every box: about a small chromosome
NUCLEUS_THICKNESS = 3.0  # chromosome widths
MAX_SIDE = 2048  # px: larger images are shrunk by a whole factor to find their foreground


def uncovered_boxes(
    image: NormalisedImage, boxes: np.ndarray, width: float | None, scale: float = 1.0
) -> np.ndarray:
    """Boxes float32 ``(M, 4)`` x0, y0, x1, y1 (the image's pixel edges) around the foreground
    pieces of ``image`` that ``boxes`` (the same form) leave uncovered, by the module's rule.
    ``width``: the chromosome width measured in the image's pixels; None (not measured): the
    width the models were trained at (``pipeline.scale.ADIR_WIDTH``) as the image seen at
    ``scale`` shows it."""
    width = width or ADIR_WIDTH / scale
    factor = max(1, math.ceil(max(image.shape) / MAX_SIDE))
    normalised = image.to_uint8()  # a mosaic is shrunk from 8 bits, never copied whole as float
    if factor > 1:
        size = (image.shape[1] // factor, image.shape[0] // factor)
        normalised = cv2.resize(normalised, size, interpolation=cv2.INTER_AREA)
    foreground = otsu_foreground(flattened(normalised.astype(np.float32) / 255))
    covered = np.zeros(foreground.shape, bool)
    for x0, y0, x1, y1 in np.asarray(boxes, np.float32).reshape(-1, 4) / factor:
        covered[int(y0) : math.ceil(y1), int(x0) : math.ceil(x1)] = True
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        foreground.astype(np.uint8), connectivity=8
    )
    outside = np.bincount(pieces[foreground & ~covered], minlength=count)
    width = width / factor
    found = []
    for piece in np.flatnonzero(outside[1:] >= MIN_UNCOVERED * width * width) + 1:
        x, y, w, h, _ = stats[piece]
        mask = np.pad(pieces[y : y + h, x : x + w] == piece, 1).astype(np.uint8)
        if 2 * cv2.distanceTransform(mask, cv2.DIST_L2, 3).max() < NUCLEUS_THICKNESS * width:
            found.append((x, y, x + w, y + h))
    found = np.asarray(found, np.float32).reshape(-1, 4) * factor
    return np.minimum(found, np.float32([image.shape[1], image.shape[0]] * 2))
