"""Synthetic overlapping pairs made from single chromosomes of real metaphases.

As the seed's 13,434-pair set was made: one chromosome is laid over another at a random angle,
flip and offset so that they cross (or, for a share of pairs, only touch). Here the first
chromosome stays in its real surroundings (its neighbours remain in the picture, labelled
background, as in real cluster crops) and the second is pasted over it.

Overlap intensity: in the ADIR DAPI images the pixels of an overlap region are brighter than the
single-chromosome pixels right around them. ``overlap_ratios`` measures, for every overlap region
(``K == 255``) of the given (training) metaphases, ``mean(overlap pixels) / mean(single-chromosome
pixels within 3 px of it)`` on the normalised image (on the ADIR training slides: median 1.19,
10th-90th percentile 0.88-1.49, 279 regions). A synthetic overlap pixel is then
``ratio * (a + b) / 2`` (``a``, ``b`` the two chromosomes' own intensities there, clipped to 1),
with ``ratio`` drawn per pair from those measured ratios.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from segmenter import crops
from segmenter.targets import CHROMOSOME_A, CHROMOSOME_B, OVERLAP, cluster_targets

RING_PIXELS = 3  # single-chromosome pixels this close to an overlap region are its reference
MIN_REGION_PIXELS = 5
_SQUARE3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class Single:
    """One single-chromosome cluster in its surroundings (a square window of the normalised image).

    ``window`` float32 ``(S, S)``; ``mask`` bool ``(S, S)`` the chromosome; ``others`` bool
    ``(S, S)`` other labelled chromosomes in the window; ``background`` the image's background
    level (padding value).
    """

    window: np.ndarray
    mask: np.ndarray
    others: np.ndarray
    background: float


def overlap_ratios(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Measured ``overlap / nearby single-chromosome`` intensity ratios of one metaphase.

    ``image`` normalised float32 ``(H, W)``, ``labels`` the K image. Returns float32 ``(R,)``, one
    per overlap region of at least 5 pixels with single-chromosome pixels around it.
    """
    count, regions = cv2.connectedComponents((labels == 255).astype(np.uint8), connectivity=8)
    single = (labels > 0) & (labels < 255)
    kernel = np.ones((2 * RING_PIXELS + 1,) * 2, np.uint8)
    ratios = []
    for index in range(1, count):
        region = regions == index
        if region.sum() < MIN_REGION_PIXELS:
            continue
        ring = cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & single
        reference = image[ring].mean() if ring.sum() >= MIN_REGION_PIXELS else 0.0
        if reference > 0:
            ratios.append(image[region].mean() / reference)
    return np.asarray(ratios, np.float32)


def singles_from_image(image: np.ndarray, labels: np.ndarray, context: int) -> list[Single]:
    """Every single-chromosome cluster of one metaphase, with ``context`` pixels around its box.

    ``image`` normalised float32 ``(H, W)``; ``labels`` the K image.
    """
    background = crops.background_level(image)
    labelled = labels > 0
    out = []
    for box, target, count in cluster_targets(labels):
        if count != 1 or (target == OVERLAP).any():
            continue
        geometry = crops.window_for_box(box, context)
        mask = crops.cut_window(target, geometry, 0) > 0
        others = crops.cut_window(labelled, geometry, False) & ~mask
        window = crops.cut_window(image, geometry, background)
        out.append(Single(window, mask, others, background))
    return out


def _rotated(single: Single, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The chromosome of ``single`` cut out, flipped at random and rotated by a random angle:
    intensity and coverage (alpha in [0, 1]) on a square patch, float32 each."""
    rows = np.flatnonzero(single.mask.any(axis=1))
    cols = np.flatnonzero(single.mask.any(axis=0))
    alpha = single.mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    value = single.window[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] * alpha
    if rng.random() < 0.5:
        alpha, value = alpha[:, ::-1], value[:, ::-1]
    height, width = alpha.shape
    side = int(np.ceil(np.hypot(height, width))) + 2
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), rng.uniform(0, 360), 1)
    matrix[:, 2] += ((side - width) / 2, (side - height) / 2)
    alpha = cv2.warpAffine(
        np.ascontiguousarray(alpha), matrix, (side, side), flags=cv2.INTER_LINEAR
    )
    value = cv2.warpAffine(
        np.ascontiguousarray(value), matrix, (side, side), flags=cv2.INTER_LINEAR
    )
    return value / np.maximum(alpha, 1e-3), alpha


def _placed(patch: np.ndarray, shape: tuple[int, int], y: int, x: int) -> np.ndarray | None:
    """``patch`` with its top-left at ``(y, x)`` on a zero array of ``shape``; None if it leaves."""
    height, width = patch.shape
    if y < 0 or x < 0 or y + height > shape[0] or x + width > shape[1]:
        return None
    out = np.zeros(shape, patch.dtype)
    out[y : y + height, x : x + width] = patch
    return out


def make_pair(
    first: Single,
    second: Single,
    ratio: float,
    rng: np.random.Generator,
    margin: int,
    touch_fraction: float = 0.2,
    tries: int = 20,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One synthetic pair as a segmenter crop: ``(image (88, 88) float32, target (88, 88) uint8)``.

    ``second`` is laid over ``first`` so that they cross (or, with probability
    ``touch_fraction``, touch without overlapping), never touching ``first``'s neighbours, each
    keeping at least a third of its pixels outside the overlap. Returns None when no placement
    is found in ``tries`` attempts.
    """
    value, alpha = _rotated(second, rng)
    patch_mask = alpha > 0.5
    half = patch_mask.shape[0] // 2
    mask_a = first.mask
    rows, cols = np.nonzero(mask_a)
    grown_others = cv2.dilate(first.others.astype(np.uint8), _SQUARE3).astype(bool)
    touching = rng.random() < touch_fraction
    for _ in range(tries):
        pick = rng.integers(len(rows))
        y, x = rows[pick] - half, cols[pick] - half
        if touching:  # slide away along a random direction until the two no longer overlap
            step_y, step_x = np.sin(angle := rng.uniform(0, 2 * np.pi)), np.cos(angle)
            for distance in range(1, 2 * half + 2):
                mask_b = _placed(
                    patch_mask, mask_a.shape, int(y + distance * step_y), int(x + distance * step_x)
                )
                if mask_b is None or not (mask_b & mask_a).any():
                    break
            offset = (int(y + distance * step_y), int(x + distance * step_x))
        else:
            offset = (int(y + rng.integers(-3, 4)), int(x + rng.integers(-3, 4)))
            mask_b = _placed(patch_mask, mask_a.shape, *offset)
        if mask_b is None or (mask_b & grown_others).any():
            continue
        both = mask_a & mask_b
        if touching:
            if both.any() or not (cv2.dilate(mask_b.astype(np.uint8), _SQUARE3) & mask_a).any():
                continue
        elif (
            both.sum() < 4
            or min((mask_a & ~both).sum() / mask_a.sum(), (mask_b & ~both).sum() / mask_b.sum())
            < 1 / 3
        ):
            continue
        alpha_b = _placed(alpha, mask_a.shape, *offset)
        value_b = _placed(value, mask_a.shape, *offset)
        image = first.window * (1 - alpha_b) + value_b * alpha_b
        image[both] = np.minimum(ratio * (first.window[both] + value_b[both]) / 2, 1.0)
        target = np.zeros(mask_a.shape, np.uint8)
        target[mask_a] = CHROMOSOME_A
        target[mask_b] = CHROMOSOME_B
        target[both] = OVERLAP
        rows_ab = np.flatnonzero((target > 0).any(axis=1))
        cols_ab = np.flatnonzero((target > 0).any(axis=0))
        box = (cols_ab[0], rows_ab[0], cols_ab[-1] + 1, rows_ab[-1] + 1)
        geometry = crops.window_for_box(box, margin)
        return (
            crops.crop_image(image, geometry, first.background),
            crops.crop_labels(target, geometry),
        )
    return None


def make_pairs(
    singles: list[Single],
    ratios: np.ndarray,
    count: int,
    seed: int,
    margin: int,
    touch_fraction: float = 0.2,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` synthetic pairs: images ``(count, 88, 88)`` float32, targets uint8, reproducible
    for a given ``seed``. Raises ValueError with fewer than two singles or no ratios."""
    if len(singles) < 2 or not len(ratios):
        raise ValueError("synthetic pairs need at least two single chromosomes and one ratio")
    rng = np.random.default_rng(seed)
    images, targets = [], []
    while len(images) < count:
        first, second = rng.choice(len(singles), 2, replace=False)
        pair = make_pair(
            singles[first], singles[second], float(rng.choice(ratios)), rng, margin, touch_fraction
        )
        if pair is not None:
            images.append(pair[0])
            targets.append(pair[1])
    return np.stack(images).astype(np.float32), np.stack(targets).astype(np.uint8)
