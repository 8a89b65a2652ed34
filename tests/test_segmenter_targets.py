"""Segmenter targets built from hand-made K images with known answers."""

import numpy as np

from segmenter import crops
from segmenter.metrics import crop_instances
from segmenter.targets import (
    IGNORE,
    OVERLAP,
    cluster_targets,
    target_from_instances,
    touch_graph,
    two_colour,
    window_target,
)


def _crossing_pair() -> np.ndarray:
    """A 40x40 K image: a long horizontal chromosome (class 1) crossed by a shorter vertical one
    (class 5); their 4x4 crossing is labelled 255."""
    labels = np.zeros((40, 40), np.uint8)
    labels[18:22, 4:36] = 1  # 4 x 32 = 128 px
    labels[8:32, 12:16] = 5  # 24 x 4 = 96 px
    labels[18:22, 12:16] = 255
    return labels


def test_crossing_pair_gives_overlap_and_two_colours():
    ((box, target, count),) = cluster_targets(_crossing_pair())
    assert count == 2
    np.testing.assert_array_equal(box, [4, 8, 36, 32])
    assert (target[18:22, 12:16] == 3).all()
    assert (target[18:22, 4:12] == 1).all() and (target[18:22, 16:36] == 1).all()  # larger = A
    assert (target[8:18, 12:16] == 2).all() and (target[22:32, 12:16] == 2).all()
    assert target.sum() == 1 * (128 - 16) + 2 * (96 - 16) + 3 * 16


def test_chain_of_three_alternates_and_singles_stay_apart():
    labels = np.zeros((30, 60), np.uint8)
    labels[5:10, 2:20] = 3  # a
    labels[5:10, 20:38] = 7  # b touches a and c
    labels[5:10, 38:50] = 9  # c
    labels[20:28, 40:50] = 12  # a separate single cluster
    results = cluster_targets(labels)
    assert [count for _, _, count in results] == [3, 1]
    chain = results[0][1]
    assert chain[7, 10] == chain[7, 45] != chain[7, 30]
    assert set(np.unique(chain)) == {0, 1, 2}
    single = results[1][1]
    assert set(np.unique(single)) == {0, 1} and single[24, 45] == 1 and single[7, 10] == 0


def test_two_colour_of_a_triangle_leaves_one_conflict():
    masks = np.zeros((3, 10, 10), bool)
    masks[0, 0:4, 0:4] = masks[1, 0:4, 4:8] = masks[2, 4:8, 2:6] = True  # all touch each other
    colours = two_colour(masks)
    assert set(colours) <= {1, 2} and len(set(colours)) == 2


def _same_instances(target: np.ndarray, masks: np.ndarray) -> bool:
    """Whether the target's instances (as the stitcher reads them) are the masks, one each at IoU
    >= 0.8."""
    found = crop_instances(np.where(target == IGNORE, 0, target), min_pixels=1)
    if len(found) != len(masks):
        return False
    for mask in masks:
        ious = [(mask & piece).sum() / (mask | piece).sum() for piece in found]
        if max(ious) < 0.8:
            return False
    return True


def _touching_triangle(scale: int = 1) -> np.ndarray:
    """Three bars that all touch, none overlapping: no colouring keeps every neighbour apart."""
    masks = np.zeros((3, 24 * scale, 24 * scale), bool)
    masks[0, 2 * scale : 8 * scale, 2 * scale : 12 * scale] = True
    masks[1, 2 * scale : 8 * scale, 12 * scale : 22 * scale] = True
    masks[2, 8 * scale : 14 * scale, 4 * scale : 20 * scale] = True
    return masks


def test_same_label_neighbours_are_kept_apart_by_a_gap():
    masks = _touching_triangle()
    assert all(len(others) == 2 for others in touch_graph(masks))
    target = target_from_instances(masks)
    assert not (target == IGNORE).any() and not (target == OVERLAP).any()
    assert _same_instances(target, masks)  # three instances, where one label would join two


def test_colouring_keeps_overlapping_chromosomes_apart_first():
    masks = np.zeros((3, 30, 30), bool)
    masks[0, 12:16, 2:28] = True  # a long bar ...
    masks[1, 2:28, 12:16] = True  # ... crossed by another (they overlap)
    masks[2, 16:20, 18:28] = True  # touches both without overlapping either
    colours = two_colour(masks)
    assert colours[0] != colours[1]  # the conflict left is a touch, which a gap can keep apart
    target = target_from_instances(masks)
    assert (target[12:16, 12:16] == OVERLAP).all() and not (target == IGNORE).any()
    assert _same_instances(target, masks)


def test_overlapping_chromosomes_of_one_label_are_ignored():
    masks = np.zeros((3, 30, 30), bool)
    masks[0, 12:16, 2:28] = True
    masks[1, 2:28, 12:16] = True
    masks[2, 2:28, 18:22] = True
    masks[2, 20:24, 8:22] = True  # crosses both others: three chromosomes all overlapping
    target = target_from_instances(masks)
    colours = two_colour(masks)
    same = [(i, j) for i in range(3) for j in range(i + 1, 3) if colours[i] == colours[j]]
    assert len(same) == 1
    i, j = same[0]
    assert (target[masks[i] & masks[j]] == IGNORE).all()


def test_large_cluster_leaves_only_the_conflict_an_odd_cycle_forces():
    masks = np.zeros((15, 84, 60), bool)  # 14 strips, each touching the next, and a bar
    for i in range(14):
        masks[i, 6 * i : 6 * i + 6, 3:] = True
    masks[0, 0:6, 2] = masks[13, 78:84, 2] = True  # the bar touches the first and last strip
    masks[14, :, 0:2] = True  # a ring of 15: one pair must share a label
    colours = two_colour(masks)
    neighbours = touch_graph(masks)
    same = [(i, j) for i in range(15) for j in neighbours[i] if i < j and colours[i] == colours[j]]
    assert len(same) == 1
    assert _same_instances(target_from_instances(masks), masks)


def test_window_target_keeps_the_gap_of_a_shrunken_cluster():
    masks = _touching_triangle(scale=8)  # 192 px: the crop shrinks it more than twice
    geometry = crops.window_for_box((0, 0, 192, 192), 0)
    target = window_target(masks, geometry)
    assert target.shape == (88, 88)
    shrunk = np.stack([crops.crop_labels(mask, geometry) > 0 for mask in masks])
    assert _same_instances(target, shrunk)


def test_no_instances_gives_empty_target():
    assert not target_from_instances(np.zeros((0, 5, 5), bool)).any()
