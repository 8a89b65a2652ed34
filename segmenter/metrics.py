"""Segmenter metrics (DESIGN.md, "Measuring"): per-class IoU and Dice pooled over all pixels.

Reported twice: with A/B as labelled, and permutation-invariant (per crop, the prediction's A and
B are swapped when that gives a higher IoU(A) + IoU(B) for that crop, then pixels are pooled).
Target pixels of 255 (``segmenter.targets.IGNORE``: what the labels cannot vouch for) are left out
of every count.
"""

from __future__ import annotations

import numpy as np

from segmenter.targets import CHROMOSOME_A, CHROMOSOME_B, CLASS_NAMES, IGNORE

NUM_CLASSES = len(CLASS_NAMES)


def swap_ab(labels: np.ndarray) -> np.ndarray:
    """Labels with 1 (A) and 2 (B) exchanged (any shape, integer dtype)."""
    out = labels.copy()
    out[labels == CHROMOSOME_A] = CHROMOSOME_B
    out[labels == CHROMOSOME_B] = CHROMOSOME_A
    return out


def _ab_iou_sum(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per crop ``(N,)``: IoU(A) + IoU(B), an empty union counting 0."""
    total = np.zeros(len(predicted))
    valid = target != IGNORE
    for cls in (CHROMOSOME_A, CHROMOSOME_B):
        p, t = (predicted == cls) & valid, target == cls
        inter = (p & t).reshape(len(p), -1).sum(axis=1)
        union = (p | t).reshape(len(p), -1).sum(axis=1)
        total += np.where(union > 0, inter / np.maximum(union, 1), 0.0)
    return total


def best_assignment(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``predicted`` ``(N, H, W)`` with A/B swapped in the crops where that matches ``target``
    better (higher IoU(A) + IoU(B)); ties keep the prediction as it is."""
    swapped = swap_ab(predicted)
    better = _ab_iou_sum(swapped, target) > _ab_iou_sum(predicted, target)
    return np.where(better[:, None, None], swapped, predicted)


def confusion(predicted: np.ndarray, target: np.ndarray) -> np.ndarray:
    """``(4, 4)`` int64 pixel counts, rows = target class, columns = predicted class (ignored
    target pixels left out)."""
    if predicted.shape != target.shape:
        raise ValueError(f"prediction {predicted.shape} and target {target.shape} differ in shape")
    valid = target != IGNORE
    index = target[valid].astype(np.int64) * NUM_CLASSES + predicted[valid].astype(np.int64)
    return np.bincount(index, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def scores(matrix: np.ndarray) -> dict:
    """``{"iou": {class: v}, "dice": {class: v}}`` from a confusion matrix (NaN if a class is
    absent from both target and prediction)."""
    tp = np.diag(matrix).astype(np.float64)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = tp / (tp + fp + fn)
        dice = 2 * tp / (2 * tp + fp + fn)
    return {
        "iou": {name: float(v) for name, v in zip(CLASS_NAMES, iou, strict=True)},
        "dice": {name: float(v) for name, v in zip(CLASS_NAMES, dice, strict=True)},
    }


def evaluate_labels(predicted: np.ndarray, target: np.ndarray) -> dict:
    """Scores of predicted label maps ``(N, H, W)`` against targets of the same shape:
    ``{"crops": N, "as_labelled": scores, "permutation_invariant": scores}``."""
    predicted, target = np.asarray(predicted), np.asarray(target)
    if predicted.ndim != 3:
        raise ValueError(f"label maps must be (N, H, W), got shape {predicted.shape}")
    return {
        "crops": int(len(target)),
        "as_labelled": scores(confusion(predicted, target)),
        "permutation_invariant": scores(confusion(best_assignment(predicted, target), target)),
    }


MIN_INSTANCE_PIXELS = 10  # at 88x88: pieces smaller than this are fragments, not chromosomes


def crop_instances(labels: np.ndarray, min_pixels: int = MIN_INSTANCE_PIXELS) -> np.ndarray:
    """Chromosomes of one ``(H, W)`` label map, as the stitcher reads them: the 8-connected
    pieces of A∪overlap and of B∪overlap with at least ``min_pixels`` pixels, pieces made only of
    overlap pixels dropped. Returns bool ``(N, H, W)``."""
    import cv2

    from segmenter.targets import OVERLAP

    masks = []
    for cls in (CHROMOSOME_A, CHROMOSOME_B):
        count, pieces = cv2.connectedComponents(
            ((labels == cls) | (labels == OVERLAP)).astype(np.uint8), connectivity=8
        )
        for index in range(1, count):
            piece = pieces == index
            if piece.sum() >= min_pixels and (labels[piece] == cls).any():
                masks.append(piece)
    return np.stack(masks) if masks else np.zeros((0, *labels.shape), bool)


def separation(
    predicted: np.ndarray, target: np.ndarray, threshold: float = 0.5
) -> tuple[dict, np.ndarray]:
    """How often every chromosome of a crop comes back as its own instance.

    ``predicted``, ``target`` ``(N, H, W)`` label maps. Per crop, ``crop_instances`` of both are
    matched one-to-one (``pipeline.core.matching.optimal``: summed IoU, pairs below
    ``threshold`` unmatched). Returns ``{"crops": N, "separated": share of crops whose true
    chromosomes all have a match, "exact": share of crops separated with no extra predicted
    piece}`` and the per-crop bool ``(N,)`` separated.
    """
    from pipeline.core import matching

    separated = np.zeros(len(target), bool)
    exact = np.zeros(len(target), bool)
    for index, (mine, truth) in enumerate(zip(predicted, target, strict=True)):
        true = crop_instances(np.where(truth == IGNORE, 0, truth))
        found = crop_instances(mine)
        matched = len(matching.optimal(matching.mask_iou(found, true), threshold))
        separated[index] = matched == len(true)
        exact[index] = separated[index] and len(found) == len(true)
    count = max(len(target), 1)
    return {
        "crops": int(len(target)),
        "separated": float(separated.sum() / count),
        "exact": float(exact.sum() / count),
    }, separated
