"""Fakes of the two trained stages and synthetic images for the pipeline's tests (no tests here).

The fakes follow ``pipeline.models.Models``: ``threshold_detect`` boxes the 8-connected
components of a normalised image above 0.25; ``threshold_segment`` labels crop pixels by
intensity (< 0.25 background, < 0.5 chromosome A, < 0.8 chromosome B, else overlap), so that
two bars of different brightness crossing each other come apart exactly as the U-Net should
separate them (the rim that blurring leaves around a bright bar is given to it).
"""

from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage

from pipeline.config import load_config
from pipeline.models import Models

DIM, BRIGHT = 80, 120  # grey levels of bars read as chromosome A and as B (background 10)
BACKGROUND = 10


def threshold_detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    count, _, stats, _ = cv2.connectedComponentsWithStats(
        (image > 0.25).astype(np.uint8), connectivity=8
    )
    boxes = [[x, y, x + w, y + h] for x, y, w, h, area in stats[1:] if area >= 20]
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    return boxes, np.full(len(boxes), 0.9, np.float32)


def threshold_segment(crops: np.ndarray) -> np.ndarray:
    labels = np.digitize(crops, [0.25, 0.5, 0.8])
    # The blurred edge of a bright bar passes through the dim range: a thin ring of "A" around
    # it. Pieces of A that an erosion removes entirely are such rims: they go to B.
    for crop_labels in labels:
        pieces, count = ndimage.label(crop_labels == 1, np.ones((3, 3)))
        thick = np.unique(pieces[ndimage.binary_erosion(pieces > 0, np.ones((5, 5)))])
        crop_labels[(pieces > 0) & ~np.isin(pieces, thick)] = 2
    return (labels[:, None] == np.arange(4)[None, :, None, None]).astype(np.float32)


def fake_models(margin: int = 4) -> Models:
    return Models(
        detect=threshold_detect,
        segment=threshold_segment,
        margin=margin,
        info={"detector": {"fake": "threshold"}, "segmenter": {"fake": "threshold"}},
    )


def test_config(**overrides) -> dict:
    """The default pipeline config with small batches (several U-Net calls per test) shared by
    two worker processes, without
    the rule that drops small pieces of low confidence (it is tuned to the real U-Net, while the
    fake's one-hot maps are blurred at every edge by the back-mapping alone), and at scale 1
    (the test images' bars are thinner than ADIR's chromosomes; the scale has tests of its own)."""
    overrides.setdefault("stitch", {"min_segmenter_score": 0.0})
    overrides.setdefault("scale", 1.0)
    overrides["segmenter"] = {"batch_size": 4, **overrides.get("segmenter", {})}
    # two forked worker processes (pipeline.forked) whatever the machine's cores
    overrides["batch"] = {"images": 2, "processes": 2, **overrides.get("batch", {})}
    return load_config(None, **overrides)


test_config.__test__ = False  # a helper, not a test


def bar_mask(shape, centre, length, width, angle_degrees) -> np.ndarray:
    """bool mask of a stadium (bar with round ends): pixel centres within width/2 of a segment
    of length ``length - width`` through ``centre`` (x, y) at ``angle_degrees`` (ccw from +x)."""
    rows, cols = np.mgrid[: shape[0], : shape[1]] + 0.5
    angle = np.radians(angle_degrees)
    half = (length - width) / 2 * np.array([np.cos(angle), -np.sin(angle)])
    start = np.asarray(centre, float) - half
    along = 2 * half
    points = np.stack([cols, rows], -1) - start
    t = np.clip(points @ along / (along @ along), 0, 1)
    return np.linalg.norm(points - t[..., None] * along, axis=-1) < width / 2


def paint(shape, bars) -> np.ndarray:
    """uint8 image: background 10; bars ``(mask, level)`` add ``level - 10`` where they lie, so
    that crossings are brighter (capped at 255)."""
    image = np.full(shape, BACKGROUND, np.int32)
    for mask, level in bars:
        image[mask] += level - BACKGROUND
    return np.clip(image, 0, 255).astype(np.uint8)


def crossing_pair(shape, centre, length, angle_degrees) -> list[np.ndarray]:
    """Masks of two bars (width 8) crossing at ``centre`` at right angles."""
    return [
        bar_mask(shape, centre, length, 8, angle_degrees),
        bar_mask(shape, centre, length, 8, angle_degrees + 90),
    ]


def scattered_bars(shape, singles, pairs, seed) -> tuple[np.ndarray, list[np.ndarray]]:
    """An image of ``singles`` lone dim bars and ``pairs`` crossing pairs (dim + bright) at random
    places and angles, no two clusters touching, and the masks of all bars. Enough crossings
    (>= 0.1 % of the pixels) make them the normalised image's 1.0, so the fake segmenter sees
    dim = A, bright = B, crossing = overlap."""
    rng = np.random.default_rng(seed)
    taken = np.zeros(shape, bool)
    masks, levels = [], []
    while len(masks) < singles + 2 * pairs:
        centre = (rng.uniform(25, shape[1] - 25), rng.uniform(25, shape[0] - 25))
        angle = rng.uniform(-90, 90)
        if len(masks) < 2 * pairs:
            cluster = crossing_pair(shape, centre, rng.uniform(26, 40), angle)
        else:
            cluster = [bar_mask(shape, centre, rng.uniform(18, 36), rng.uniform(5, 8), angle)]
        union = np.logical_or.reduce(cluster)
        if not (cv2.dilate(union.astype(np.uint8), np.ones((9, 9), np.uint8)) & taken).any():
            taken |= union
            masks += cluster
            levels += [DIM, BRIGHT][: len(cluster)]
    return paint(shape, list(zip(masks, levels, strict=True))), masks
