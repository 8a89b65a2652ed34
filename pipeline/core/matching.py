"""Matching predictions to truth, for boxes and masks alike (after stardist's ``matching.py``).

Everything starts from an IoU matrix ``(N predicted, M true)`` float64: ``box_iou`` for boxes
(``(N, 4)`` x0, y0, x1, y1 pixel edges), ``mask_iou`` for stacks of masks ``(N, H, W)`` bool, or
the caller's own (the pipeline's cropped instances). Two rules match on it:

- ``greedy``: predictions in order of falling score, each to the not yet matched true item it
  overlaps most, if IoU >= ``threshold`` (the PASCAL VOC rule of the detector's AP: the matches of
  the predictions above any score threshold are those made if only they existed);
- ``optimal``: one-to-one, maximising the summed IoU (Hungarian), pairs below ``threshold``
  dropped (the instance metrics).

``counts`` turns a number of matches into tp, fp, fn, precision, recall and F1.
"""

from __future__ import annotations

import numpy as np


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (M, 4): float64 (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    width = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[:, 0]), 0, None
    )
    height = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[:, 1]), 0, None
    )
    inter = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every mask of ``a`` (N, H, W) bool with every mask of ``b`` (M, H, W) bool:
    float64 (N, M)."""
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    a = a.reshape(len(a), int(np.prod(a.shape[1:]))).astype(np.float64)
    b = b.reshape(len(b), int(np.prod(b.shape[1:]))).astype(np.float64)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1), 0.0)


def greedy(iou: np.ndarray, scores: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """For each prediction, the index of the true item it matches by the greedy rule (module
    doc), -1 for none: int64 ``(N,)``."""
    iou = np.asarray(iou, np.float64)
    assigned = np.full(iou.shape[0], -1, np.int64)
    if iou.size == 0:
        return assigned
    taken = np.zeros(iou.shape[1], bool)
    for i in np.argsort(-np.asarray(scores), kind="stable"):
        candidates = np.where(taken, -1.0, iou[i])
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            assigned[i], taken[best] = best, True
    return assigned


def optimal(iou: np.ndarray, threshold: float = 0.5) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(predicted index, true index, IoU)`` maximising the summed IoU, each
    with IoU >= ``threshold``."""
    from scipy.optimize import linear_sum_assignment

    iou = np.asarray(iou, np.float64)
    if iou.size == 0:
        return []
    rows, cols = linear_sum_assignment(-iou)
    return [
        (int(i), int(j), float(iou[i, j]))
        for i, j in zip(rows, cols, strict=True)
        if iou[i, j] >= threshold
    ]


def counts(tp: int, predicted: int, true: int, empty: float = 1.0) -> dict:
    """tp, fp, fn, precision, recall and F1 of ``tp`` matches among ``predicted`` predictions
    and ``true`` true items; precision (recall) is ``empty`` when nothing was predicted (is
    there to find)."""
    precision = tp / predicted if predicted else empty
    recall = tp / true if true else empty
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {
        "tp": int(tp),
        "fp": int(predicted - tp),
        "fn": int(true - tp),
        "precision": precision,
        "recall": recall,
        "f1": f1,
    }
