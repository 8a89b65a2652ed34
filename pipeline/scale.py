"""How wide an image's chromosomes are, and so at what scale the models should see it.

cellpose's idea of a size model, done by measurement instead of a network: the models were trained
on chromosomes of one width (ADIR's, ``ADIR_WIDTH``); an image's chromosome width is measured, and
the image is seen by both stages at ``reference / measured`` times its size. Tables stay in the
input's pixels.

The width: the normalised image's foreground (Otsu's threshold, ``pipeline.imageio``, after the
background is taken off: ``flattened``) is split
into 8-connected pieces; of the pieces of at least ``MIN_PIECE_PIXELS``, the typical area is
the one the median foreground pixel lies in (many specks do not move it), and pieces larger than
``MAX_PIECE_RATIO`` times it (nuclei, big clusters) or smaller than ``MIN_PIECE_RATIO`` times it
(specks, debris) are left out. On the rest,
the ridge of the Euclidean distance to the background (pixels no smaller than any of their eight
neighbours: a chromosome's centre line) gives the half-width; the width is ``2 * median - 0.5``,
the median of the ridge distances weighted by themselves (each ridge pixel stands for the area
across it, so thin strokes such as a karyogram's numbers weigh little)
(a bar ``w`` px wide has ridge distance ``w / 2`` for even ``w``, ``(w + 1) / 2`` for odd).
Widths under ``FINE_WIDTH`` px are measured again on the image enlarged until they are not, so
that whole-pixel distances do not make small chromosomes off by a large fraction.

Interphase nuclei are bright too, and where they are many or much brighter than the spread they
take Otsu's threshold for themselves (the chromosomes fall below it) or most of the foreground (the
typical piece is then a nucleus): without this rule five ADIR training images measured two to
four times the width of their labelled chromosomes. So pieces of the first foreground that are
round (area under ``ELONGATED`` times the square of their thickness, twice their largest distance
to the background; a disc's is pi / 4) and at least ``NUCLEUS_THICKNESS`` times as thick as the
median elongated piece (a chromosome, or chromosomes touching) are taken as nuclei: their pixels
(grown by ``NUCLEUS_MARGIN``) are left out of the foreground and of the histogram the threshold
is found on. Specks are round too, but thin; fewer than three elongated pieces: no nuclei.

The foreground of a noisy or banded image has rough edges and holes, and the ridge then runs
near the edge: a chromosome drawn 22 px wide measured 14. So the width is measured a second time
on the image blurred by ``SMOOTHING`` times the first measure (Gaussian sigma, a share of the
width: the edge is smoothed at any size) and the second measure kept, unless it is more than
``MAX_GROWTH`` times the first: then the blur has run touching neighbours together.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from pipeline.core.imageio import otsu_foreground

ADIR_WIDTH = 12.15  # px: the median over the ADIR training slides (benchmarks/measure_widths.py)
# (thinner, thicker): within these factors of the reference, images are taken as they are: ADIR
# itself spans 9.8-17.2 px (10th-90th percentile), and both models were trained with scale
# augmentation covering it. Each segmenter model says its own (its config's
# inference.scale_tolerance and scale_tolerance_thick); this is the default
TOLERANCE = (1.3, 1.3)
MIN_PIECE_PIXELS = 15
MIN_PIECE_RATIO, MAX_PIECE_RATIO = 0.1, 4.0  # of the typical piece (``_pixel_median``)
FINE_WIDTH = 10.0
SMOOTHING, MAX_GROWTH = 0.1, 1.6  # the second measure: blur sigma per px of the first; its limit
BACKGROUND_SHRINK, BACKGROUND_KERNEL = 4, 21  # the background: an opening 84 px wide
SCALE_LIMITS = (0.2, 4.0)  # a measured scale outside is clipped: the image is not a metaphase
SCALE_SAMPLE = 2048  # px: the central region of an image its chromosome width is measured on
NUCLEUS_THICKNESS = 3.0  # times a chromosome's thickness: a nucleus (pipeline.coverage too)
ELONGATED = 2.0  # area / thickness**2 of a piece at least this: chromosomes (a disc: pi / 4)
NUCLEUS_MARGIN = 2  # px a nucleus is grown by before it is left out (its blurred rim)


def _pixel_median(values: np.ndarray) -> float:
    """The median of ``values`` weighted by themselves: for piece areas, the size of the piece
    that the median foreground pixel lies in (specks, however many, weigh little)."""
    ordered = np.sort(values)
    cumulative = np.cumsum(ordered)
    return float(ordered[np.searchsorted(cumulative, cumulative[-1] / 2)])


def ridge_width(foreground: np.ndarray) -> float | None:
    """The width (px) of the chromosome-sized pieces of a bool ``(H, W)`` foreground by the
    module's ridge rule (typical piece, ridge of the distance transform); None when it has none.
    Also the width of labelled chromosomes (``K > 0``), which ``benchmarks/measure_widths.py``
    compares the measure with."""
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        foreground.astype(np.uint8), connectivity=8
    )
    areas = stats[1:, cv2.CC_STAT_AREA]
    sized = areas >= MIN_PIECE_PIXELS
    if not sized.any():
        return None
    typical = _pixel_median(areas[sized].astype(np.float64))
    kept = sized & (areas <= MAX_PIECE_RATIO * typical) & (areas >= MIN_PIECE_RATIO * typical)
    chosen = np.concatenate([[False], kept])[pieces]  # piece 0: the background
    distance = cv2.distanceTransform(chosen.view(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    # OpenCV's threads give distances that differ in the last bits, and the ridge test below
    # would follow them (the P0703XY sample's width moved with cv2.setNumThreads)
    distance = np.round(distance, 4)
    ridge = chosen & (distance >= cv2.dilate(distance, np.ones((3, 3), np.uint8)))
    if not ridge.any():
        return None
    # weighted by the distance itself, each ridge pixel stands for the area across it: thin
    # strokes (a karyogram's numbers and lines, fibres) weigh little
    return 2.0 * _pixel_median(distance[ridge].astype(np.float64)) - 0.5


def flattened(normalised: np.ndarray) -> np.ndarray:
    """``normalised`` minus its background: the grey opening of the image shrunk by
    ``BACKGROUND_SHRINK`` with a ``BACKGROUND_KERNEL`` square (wider than any chromosome),
    enlarged back. Uneven illumination would otherwise move Otsu's threshold into the
    background."""
    height, width = normalised.shape
    small = cv2.resize(
        normalised,
        (max(1, width // BACKGROUND_SHRINK), max(1, height // BACKGROUND_SHRINK)),
        interpolation=cv2.INTER_AREA,
    )
    kernel = np.ones((BACKGROUND_KERNEL, BACKGROUND_KERNEL), np.uint8)
    background = cv2.morphologyEx(small, cv2.MORPH_OPEN, kernel)
    background = cv2.GaussianBlur(background, (0, 0), BACKGROUND_KERNEL / 4)
    background = cv2.resize(background, (width, height), interpolation=cv2.INTER_LINEAR)
    return np.clip(normalised - background, 0.0, 1.0)


def nuclei(image: np.ndarray) -> np.ndarray | None:
    """bool ``(H, W)``: the nuclei of a flattened image's Otsu foreground, grown by
    ``NUCLEUS_MARGIN`` (module doc); None when it has none."""
    foreground = otsu_foreground(image).view(np.uint8)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(foreground, connectivity=8)
    distance = cv2.distanceTransform(foreground, cv2.DIST_L2, 3)
    thickness = np.zeros(count, np.float32)
    np.maximum.at(thickness, pieces[foreground > 0], distance[foreground > 0])
    thickness *= 2
    areas = stats[:, cv2.CC_STAT_AREA]
    sized = areas >= MIN_PIECE_PIXELS
    sized[0] = False  # the background
    elongated = sized & (areas >= ELONGATED * thickness**2)
    if elongated.sum() < 3:
        return None
    found = sized & ~elongated & (thickness >= NUCLEUS_THICKNESS * np.median(thickness[elongated]))
    if not found.any():
        return None
    side = 2 * NUCLEUS_MARGIN + 1
    return cv2.dilate(found[pieces].view(np.uint8), np.ones((side, side), np.uint8)) > 0


def _width(image: np.ndarray, left_out: np.ndarray | None = None) -> float | None:
    """The ridge width (``ridge_width``) of a flattened image's Otsu foreground with ``left_out``
    (nuclei) kept out of it (``otsu_foreground``); widths under ``FINE_WIDTH`` measured again on
    the image enlarged until they are not."""
    width = ridge_width(otsu_foreground(image, left_out))
    if width is None or width >= FINE_WIDTH:
        return width
    factor = math.ceil(FINE_WIDTH / max(width, 1.0))
    enlarged = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    if left_out is not None:
        left_out = cv2.resize(
            left_out.view(np.uint8), None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST
        ).astype(bool)
    fine = ridge_width(otsu_foreground(enlarged, left_out))
    return width if fine is None else fine / factor


def chromosome_width(normalised: np.ndarray) -> float | None:
    """Median chromosome width in pixels of a normalised image (float32 ``(H, W)`` in [0, 1],
    chromosomes bright), by the module's rule; None when the image has no chromosome-like
    foreground."""
    image = flattened(np.asarray(normalised, np.float32))
    left_out = nuclei(image)
    width = _width(image, left_out)
    if width is None:
        return None
    smoothed = _width(cv2.GaussianBlur(image, (0, 0), SMOOTHING * width), left_out)
    return smoothed if smoothed is not None and smoothed <= MAX_GROWTH * width else width


def model_scale(
    width: float | None,
    reference: float = ADIR_WIDTH,
    tolerance: tuple[float, float] = TOLERANCE,
) -> float:
    """The factor an image of chromosome ``width`` px is resized by so that its chromosomes are
    ``reference`` px wide, within ``SCALE_LIMITS``; 1.0 when the width is unknown or within
    ``tolerance`` (thinner, thicker) of the reference: chromosomes up to the first factor thinner
    or the second thicker than the reference are taken as they are ((1.0, 1.0): every measured
    image is resized)."""
    if width is None or width <= 0:
        return 1.0
    thinner, thicker = tolerance
    scale = reference / width
    if 1 / thicker <= scale <= thinner:
        return 1.0
    low, high = SCALE_LIMITS
    return float(np.clip(scale, low, high))


def image_scale(
    normalised: np.ndarray, setting, tolerance: tuple[float, float] = TOLERANCE
) -> tuple[float, float | None]:
    """The factor both stages see an image at, and the chromosome width (px) it was measured
    from: ``setting`` itself when it is a number (width None), else ``model_scale`` (within
    ``tolerance``) of the width measured on the normalised image's (float32 ``(H, W)``) central
    ``SCALE_SAMPLE`` x ``SCALE_SAMPLE`` pixels."""
    if setting != "auto":
        return float(setting), None
    height, width = normalised.shape
    top, left = max(0, (height - SCALE_SAMPLE) // 2), max(0, (width - SCALE_SAMPLE) // 2)
    measured = chromosome_width(normalised[top : top + SCALE_SAMPLE, left : left + SCALE_SAMPLE])
    return model_scale(measured, tolerance=tolerance), measured
