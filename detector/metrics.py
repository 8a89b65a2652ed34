"""Detection metrics on boxes, on the matching core (``pipeline.core.matching``).

Boxes are float32 ``(N, 4)`` x0, y0, x1, y1 (pixel edges). A prediction is a true positive when
it overlaps a not yet matched true box with IoU >= ``iou`` (0.5); predictions are taken in order
of falling score, each to the unmatched true box it overlaps most (the PASCAL VOC rule,
``matching.greedy``). Since
matching goes by score, the flags of the predictions above any threshold are the same as if only
those had been made: flags are computed once and thresholds applied afterwards.
"""

from __future__ import annotations

import numpy as np

from pipeline.core import matching
from pipeline.core.matching import box_iou


def box_inside(a: np.ndarray, b: np.ndarray, tolerance: float = 2.0) -> np.ndarray:
    """Whether every box of ``a`` (N, 4) lies inside every box of ``b`` (M, 4), each edge allowed
    ``tolerance`` px outside: bool (N, M)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None]
    return np.all(a[..., :2] >= b[..., :2] - tolerance, -1) & np.all(
        a[..., 2:] <= b[..., 2:] + tolerance, -1
    )


def assign(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """For each prediction of one image, the index of the true box it matches (see module doc),
    -1 for none: int64 ``(N,)``."""
    return matching.greedy(box_iou(pred, truth), scores, iou)


def match(pred: np.ndarray, scores: np.ndarray, truth: np.ndarray, iou: float = 0.5) -> np.ndarray:
    """True-positive flags ``(N,)`` bool of the predictions of one image (see module doc)."""
    return assign(pred, scores, truth, iou) >= 0


def counts_at(scores: np.ndarray, flags: np.ndarray, n_true: int, threshold: float) -> dict:
    """tp, fp, fn, precision, recall and F1 of the pooled predictions with score >= threshold."""
    kept = np.asarray(scores) >= threshold
    tp = int(np.count_nonzero(np.asarray(flags)[kept]))
    return matching.counts(tp, int(np.count_nonzero(kept)), n_true)


def average_precision(scores: np.ndarray, flags: np.ndarray, n_true: int) -> float:
    """Area under the precision-recall curve with the precision envelope (VOC 2010+ all-point).

    ``scores``/``flags``: pooled predictions of all images; ``n_true``: number of true boxes.
    Ties in score are taken together. 1.0 when there is nothing to find and nothing was found.
    """
    scores, flags = np.asarray(scores, np.float64), np.asarray(flags, bool)
    if n_true == 0:
        return 1.0 if len(scores) == 0 else 0.0
    if len(scores) == 0:
        return 0.0
    order = np.argsort(-scores, kind="stable")
    scores, flags = scores[order], flags[order]
    last_of_tie = np.r_[scores[1:] != scores[:-1], True]
    tp = np.cumsum(flags)[last_of_tie]
    fp = np.cumsum(~flags)[last_of_tie]
    recall = np.r_[0.0, tp / n_true]
    precision = np.r_[1.0, tp / np.maximum(tp + fp, 1)]
    envelope = np.maximum.accumulate(precision[::-1])[::-1]
    return float(np.sum(np.diff(recall) * envelope[1:]))


def best_f1_threshold(scores: np.ndarray, flags: np.ndarray, n_true: int) -> float:
    """The score threshold (one of ``scores``) with the highest pooled F1; the higher on ties."""
    candidates = np.unique(np.asarray(scores))[::-1]
    if len(candidates) == 0:
        return 0.5
    f1 = [counts_at(scores, flags, n_true, t)["f1"] for t in candidates]
    return float(candidates[int(np.argmax(f1))])
