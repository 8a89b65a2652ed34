"""Metrics on label maps whose IoU and Dice are known."""

import numpy as np
import pytest

from segmenter.metrics import best_assignment, evaluate_labels, swap_ab


def _maps():
    target = np.zeros((1, 4, 4), np.uint8)
    target[0, 0, :] = 1  # 4 px A
    target[0, 1, :] = 2  # 4 px B
    target[0, 2, :2] = 3  # 2 px overlap
    return target


def test_perfect_prediction_scores_one():
    target = _maps()
    result = evaluate_labels(target, target)
    assert result["crops"] == 1
    for assignment in ("as_labelled", "permutation_invariant"):
        assert all(v == 1.0 for v in result[assignment]["iou"].values())


def test_known_partial_overlap():
    target = _maps()
    predicted = target.copy()
    predicted[0, 0, :2] = 0  # A: 2 of 4 found -> IoU 0.5, Dice 2*2/(2+4) = 2/3
    predicted[0, 3, 0] = 3  # overlap: 1 false positive -> IoU 2/3, Dice 0.8
    result = evaluate_labels(predicted, target)["as_labelled"]
    assert result["iou"]["chromosome_A"] == pytest.approx(0.5)
    assert result["dice"]["chromosome_A"] == pytest.approx(2 / 3)
    assert result["iou"]["overlap"] == pytest.approx(2 / 3)
    assert result["dice"]["overlap"] == pytest.approx(0.8)
    assert result["iou"]["chromosome_B"] == pytest.approx(1.0)
    assert result["iou"]["background"] == pytest.approx(5 / 8)  # 5 true, 2 missed A + 1 lost


def test_swapped_ab_is_zero_as_labelled_and_perfect_invariant():
    target = np.concatenate([_maps(), _maps()])
    predicted = target.copy()
    predicted[0] = swap_ab(target[0])  # first crop swapped, second as labelled
    result = evaluate_labels(predicted, target)
    assert result["as_labelled"]["iou"]["chromosome_A"] == pytest.approx(4 / 12)
    assert result["permutation_invariant"]["iou"]["chromosome_A"] == 1.0
    assert result["permutation_invariant"]["iou"]["chromosome_B"] == 1.0
    np.testing.assert_array_equal(best_assignment(predicted, target), target)


def test_absent_class_gives_nan_and_shape_mismatch_raises():
    target = np.zeros((1, 3, 3), np.uint8)
    assert np.isnan(evaluate_labels(target, target)["as_labelled"]["iou"]["overlap"])
    with pytest.raises(ValueError):
        evaluate_labels(target, np.zeros((1, 3, 4), np.uint8))
