"""Detector metrics on hand-made boxes with known answers."""

import numpy as np
import pytest

from detector.api import GREEN, RED, YELLOW
from detector.evaluate import error_picture, false_positive_kinds
from detector.metrics import (
    assign,
    average_precision,
    best_f1_threshold,
    box_inside,
    counts_at,
    match,
)
from pipeline.core.matching import box_iou, mask_iou, optimal

TRUTH = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [40, 0, 50, 10]], np.float32)


def test_box_iou():
    iou = box_iou(np.array([[0, 0, 10, 10], [5, 0, 15, 10]]), np.array([[0, 0, 10, 10]]))
    np.testing.assert_allclose(iou[:, 0], [1.0, 50 / 150])
    assert box_iou(np.zeros((0, 4)), TRUTH).shape == (0, 3)


def test_matching_is_one_to_one_by_score():
    pred = np.array([[0, 0, 10, 10], [1, 0, 11, 10], [20, 0, 30, 10], [60, 0, 70, 10]], np.float32)
    scores = np.array([0.6, 0.9, 0.8, 0.7])
    # the 0.9 box takes truth 0 first; the 0.6 duplicate is then a false positive
    assert match(pred, scores, TRUTH).tolist() == [False, True, True, False]
    assert match(pred, scores, TRUTH[:0]).tolist() == [False] * 4
    assert match(pred[:0], scores[:0], TRUTH).tolist() == []
    assert assign(pred, scores, TRUTH).tolist() == [-1, 0, 1, -1]


def test_error_picture_colours_matches_false_positives_and_misses():
    # truth 0 found, truth 1 found only by a box below the threshold, truth 2 missed; one box on
    # nothing
    pred = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [60, 0, 70, 10]], np.float32)
    scores = np.array([0.9, 0.2, 0.8], np.float32)
    picture = error_picture(np.zeros((12, 80), np.float32), pred, scores, TRUTH, 0.5)
    assert picture.shape == (12, 80, 3) and picture.dtype == np.uint8
    # each box's left edge, mid-height
    assert tuple(picture[5, 0]) == GREEN
    assert tuple(picture[5, 20]) == YELLOW and tuple(picture[5, 40]) == YELLOW
    assert tuple(picture[5, 60]) == RED
    assert tuple(picture[5, 15]) == (0, 0, 0)


def test_counts_and_ap_known_answer():
    # ranked: TP (0.9), FP (0.8), TP (0.7); one truth of three never found
    scores = np.array([0.9, 0.8, 0.7])
    flags = np.array([True, False, True])
    counts = counts_at(scores, flags, 3, 0.75)
    assert (counts["tp"], counts["fp"], counts["fn"]) == (1, 1, 2)
    assert counts["precision"] == 0.5 and counts["recall"] == pytest.approx(1 / 3)
    # envelope: recall 1/3 at precision 1, recall 2/3 at precision 2/3
    assert average_precision(scores, flags, 3) == pytest.approx(1 / 3 + 1 / 3 * 2 / 3)
    assert average_precision(np.ones(2), np.array([True, True]), 2) == 1.0
    assert average_precision(np.zeros(0), np.zeros(0, bool), 0) == 1.0
    assert average_precision(np.zeros(0), np.zeros(0, bool), 4) == 0.0


def test_ties_in_score_are_taken_together():
    # a TP and an FP with the same score: one precision point of 1/2 at recall 1
    assert average_precision(np.array([0.5, 0.5]), np.array([False, True]), 1) == 0.5


def test_best_f1_threshold():
    scores = np.array([0.9, 0.8, 0.7, 0.2])
    flags = np.array([True, True, True, False])
    assert best_f1_threshold(scores, flags, 3) == 0.7
    assert best_f1_threshold(np.zeros(0), np.zeros(0, bool), 3) == 0.5


def test_false_positive_kinds():
    truth = np.array([[0, 0, 10, 10], [12, 0, 20, 10], [40, 40, 80, 80]], np.float32)
    boxes = np.array(
        [
            [0, 0, 10, 10],  # matches the first cluster
            [0, 0, 21, 11],  # over the first two clusters
            [41, 41, 60, 60],  # inside the third
            [100, 100, 120, 120],  # elsewhere
            [200, 200, 220, 220],  # elsewhere, but under the threshold
        ],
        np.float32,
    )
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.1], np.float32)
    kinds = false_positive_kinds([(boxes, scores)], [truth], threshold=0.5)
    assert kinds == {"over_several_clusters": 1, "inside_one_cluster": 1, "elsewhere": 1}
    assert box_inside(truth[:1], boxes[1:2]).all() and not box_inside(boxes[1:2], truth).any()


def test_mask_matching_is_one_to_one_and_maximises_the_summed_iou():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, :, :5] = True
    masks[1, :, 5:] = True
    masks[2, :, 3:8] = True  # half on each
    truth = masks[:2]
    iou = mask_iou(masks, truth)
    assert iou.shape == (3, 2) and iou[0, 0] == 1.0 and iou[0, 1] == 0.0
    assert np.isclose(iou[2, 0], 2 / 8)  # 2 shared columns of 8
    matches = optimal(iou, 0.5)
    assert [(i, j) for i, j, _ in matches] == [(0, 0), (1, 1)]  # the half-half mask: no match
    assert optimal(mask_iou(masks[:0], truth)) == []


def test_chromosomes_inside_a_box_allow_the_crop_margin():
    from detector.evaluate import chromosomes_inside

    chromosomes = [np.array([[10, 10, 30, 20], [12, 40, 20, 80], [100, 100, 120, 110]], np.float32)]
    boxes = np.array([[8, 8, 32, 84], [103, 100, 120, 110], [0, 0, 200, 200]], np.float32)
    scores = np.array([0.9, 0.9, 0.1], np.float32)
    # the third box holds everything but scores below the threshold; the second misses the
    # third chromosome by 3 px, within the 4 px margin
    found = chromosomes_inside([(boxes, scores)], chromosomes, threshold=0.5)
    assert found == {"chromosomes": 3, "inside": 3, "share": 1.0}
    narrow = boxes.copy()
    narrow[1, 0] = 106  # now 6 px short
    found = chromosomes_inside([(narrow, scores)], chromosomes, threshold=0.5)
    assert found["inside"] == 2
