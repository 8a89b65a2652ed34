"""Large chromosomes segmented again, alone: the U-Net's two colours cannot keep apart every
chromosome of a tangle, and where it gives two crossing chromosomes one colour they come back as
one. Seen without their neighbours, most such merges are a pair it parts.

Each chromosome found whose area is at least a factor times the image's median (a merge holds
two; the factor is the segmenter's own, its config's ``inference.resegment``) and whose
segmenter score is under ``MAX_SCORE`` (the U-Net was unsure of it somewhere) is cut again as a
crop of its own box, everything but the chromosome (grown ``GROW`` px at the models' scale)
painted with the crop background, and segmented. The chromosome is replaced by the pieces that
come back (each clipped to it) when the split looks like chromosomes, not like a chromosome cut
in two: at least two pieces of at least ``MIN_PIECE`` median areas, together covering at least
``MIN_COVER`` of it, each with at least ``MIN_OWN`` median areas that no other piece holds (a
band or an end marked as an overlap gives a piece that lies almost wholly on another).
Otherwise it stays as it was. The limits were chosen on the ADIR val slides (docs/results.md).
The G-band segmenter, which cuts single chromosomes at their bands, has no factor: alone, it cut
more.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.stitch import Instance, Window, tight, window_instances
from segmenter.crops import CropGeometry, crop_image, cut_window

GROW = 2  # px at the models' scale: the chromosome's rim, which its mask may leave out
MIN_PIECE = 0.3  # median chromosome areas
MIN_COVER = 0.8  # of the chromosome's pixels
MIN_OWN = 0.5  # median chromosome areas held by one piece alone
MIN_FOR_MEDIAN = 5  # chromosomes found: fewer give no median area to judge by
# a chromosome the U-Net was this sure of (its mean class probability) is left as it is: two
# chromosomes given one colour leave it unsure where they cross
MAX_SCORE = 0.9


def candidates(chromosomes: list[Instance], factor: float | None) -> list[int]:
    """Indices of the chromosomes at least ``factor`` times the median area whose segmenter score
    is under ``MAX_SCORE`` (none with ``factor`` None or fewer than ``MIN_FOR_MEDIAN``
    chromosomes)."""
    if factor is None or len(chromosomes) < MIN_FOR_MEDIAN:
        return []
    areas = np.array([item.area for item in chromosomes])
    scores = np.array([item.segmenter_score for item in chromosomes])
    return np.flatnonzero((areas >= factor * np.median(areas)) & (scores < MAX_SCORE)).tolist()


def alone_crop(
    normalised, chromosome: Instance, geometry: CropGeometry, background: float, grow: int
) -> np.ndarray:
    """The 88x88 float32 crop of ``geometry`` from ``normalised`` (``(H, W)``, or anything
    ``segmenter.crops.cut_window`` reads) with every pixel farther than ``grow`` px from
    ``chromosome`` set to ``background``."""
    window = cut_window(normalised, geometry, background, np.float32)
    keep = np.zeros(window.shape, np.uint8)
    height, width = chromosome.mask.shape
    row, col = chromosome.row0 - geometry.y0, chromosome.col0 - geometry.x0
    keep[row : row + height, col : col + width] = chromosome.mask
    if grow > 0:
        keep = cv2.dilate(keep, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * grow + 1,) * 2))
    window[keep == 0] = background
    return crop_image(window, CropGeometry(0, 0, geometry.side), background)


def split(
    chromosome: Instance, maps: np.ndarray, region: tuple[int, int, int, int], median_area: float
) -> list[Instance] | None:
    """The chromosomes ``chromosome`` splits into by the class probabilities ``maps``
    (``(4, h, w)`` float32 over ``region`` x0, y0, x1, y1 of the image: the alone crop's, as
    ``segmenter.crops.probabilities_to_image`` returns them), by the module's rule; None when it
    does not split."""
    x0, y0, x1, y1 = region
    window = Window(maps, y0, x0, np.float32(region), chromosome.detector_score, 0)
    image_shape = (y1, x1)  # whether a piece is cut by the crop's edge does not matter here
    kept = []
    for piece in window_instances(window, image_shape, 1, 0.0, 0.0, 0):
        inside = piece.full_mask_part(*chromosome.box) & chromosome.mask
        if inside.sum() >= MIN_PIECE * median_area:
            kept.append((inside, piece.segmenter_score))
    if len(kept) < 2:
        return None
    count = np.sum([mask for mask, _ in kept], axis=0)
    if (count > 0).sum() < MIN_COVER * chromosome.area:
        return None
    if any((mask & (count == 1)).sum() < MIN_OWN * median_area for mask, _ in kept):
        return None
    return [
        Instance(
            *tight(mask, chromosome.row0, chromosome.col0),
            cluster_id=chromosome.cluster_id,
            detector_score=chromosome.detector_score,
            segmenter_score=score,
            complete=chromosome.complete,
            seen=chromosome.seen,
        )
        for mask, score in kept
    ]
