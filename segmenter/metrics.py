"""Segmenter metrics (DESIGN.md, "Measuring"): per-class IoU and Dice pooled over all pixels.

Reported twice: with A/B as labelled, and permutation-invariant (per crop, the prediction's A and
B are swapped when that gives a higher IoU(A) + IoU(B) for that crop, then pixels are pooled).
"""

from __future__ import annotations

import numpy as np

from segmenter.targets import CHROMOSOME_A, CHROMOSOME_B, CLASS_NAMES

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
    for cls in (CHROMOSOME_A, CHROMOSOME_B):
        p, t = predicted == cls, target == cls
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
    """``(4, 4)`` int64 pixel counts, rows = target class, columns = predicted class."""
    if predicted.shape != target.shape:
        raise ValueError(f"prediction {predicted.shape} and target {target.shape} differ in shape")
    index = target.astype(np.int64).ravel() * NUM_CLASSES + predicted.astype(np.int64).ravel()
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
