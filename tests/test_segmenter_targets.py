"""Segmenter targets built from hand-made K images with known answers."""

import numpy as np

from segmenter.targets import cluster_targets, target_from_instances, two_colour


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


def test_no_instances_gives_empty_target():
    assert not target_from_instances(np.zeros((0, 5, 5), bool)).any()
