"""Classical reference for the detector, and what counts as a nucleus in its evaluation.

Both work on ``pipeline.imageio.normalise`` output ((H, W) float32, chromosomes bright).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core.adir import MIN_PIXELS, masks_to_boxes
from pipeline.core.imageio import otsu_foreground

NUCLEUS_MIN_PIXELS = 1000
NUCLEUS_MAX_LABELLED = 0.1


def components(mask: np.ndarray, min_pixels: int) -> np.ndarray:
    """8-connected components of ``mask`` with >= ``min_pixels`` pixels: int32 (H, W) ids 1..N."""
    count, labelled, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    keep = np.zeros(count, np.int32)
    big = [i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_pixels]
    keep[big] = np.arange(1, len(big) + 1)
    return keep[labelled]


def otsu_boxes(image: np.ndarray, min_pixels: int = MIN_PIXELS) -> tuple[np.ndarray, np.ndarray]:
    """Baseline detection: boxes (N, 4) float32 xyxy of the 8-connected components (>=
    ``min_pixels``) of the global Otsu mask, and scores (N,) float32, all 1.0 (the baseline has
    no confidence, so its AP50 is precision x recall).
    """
    ids = components(otsu_foreground(image), min_pixels)
    count = int(ids.max())
    boxes = masks_to_boxes(ids[None] == np.arange(1, count + 1)[:, None, None])
    return boxes, np.ones(count, np.float32)


def nucleus_mask(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Nuclei of a labelled image: components of the Otsu mask with >= 1000 pixels of which
    fewer than 10 % are labelled (K > 0). Chromosome clusters are labelled, so they are not
    nuclei; interphase nuclei (bright blobs, 0 in K) are. bool (H, W).
    """
    ids = components(otsu_foreground(image), NUCLEUS_MIN_PIXELS)
    count = int(ids.max())
    labelled = np.bincount(ids[labels > 0], minlength=count + 1)
    size = np.bincount(ids.ravel(), minlength=count + 1)
    nuclei = np.flatnonzero(labelled < NUCLEUS_MAX_LABELLED * size)
    nuclei = nuclei[nuclei > 0]
    return np.isin(ids, nuclei)


def boxes_on_nuclei(boxes: np.ndarray, nuclei: np.ndarray, cover: float = 0.3) -> np.ndarray:
    """Flags (N,) bool: boxes whose area is at least ``cover`` nucleus pixels."""
    flags = np.zeros(len(boxes), bool)
    for i, (x0, y0, x1, y1) in enumerate(np.round(boxes).astype(int)):
        window = nuclei[max(y0, 0) : max(y1, 0), max(x0, 0) : max(x1, 0)]
        flags[i] = window.size > 0 and window.mean() >= cover
    return flags
