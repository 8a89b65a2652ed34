"""Large chromosomes segmented again alone (pipeline.resegment): which are tried, what the
segmenter sees, which splits are kept, and the whole run with a segmenter that merges a crossing
pair among neighbours but parts it alone."""

import dataclasses

import numpy as np
from scipy import ndimage
from test_pipeline import write_png
from test_pipeline_helpers import (
    BRIGHT,
    DIM,
    bar_mask,
    crossing_pair,
    fake_models,
    paint,
    test_config,
    threshold_segment,
)

from pipeline.evaluate import match
from pipeline.resegment import alone_crop, candidates, split
from pipeline.run import process_image
from pipeline.stitch import instances_from_masks
from segmenter.crops import window_for_box

SHAPE = (120, 160)


def merged_pair():
    """Two bars crossing at right angles, the chromosome they make as one, and the bars."""
    bars = crossing_pair(SHAPE, (60, 60), 50, 0)
    (merged,) = instances_from_masks(np.array([bars[0] | bars[1]]))
    return merged, bars


def maps_of(labels: np.ndarray) -> np.ndarray:
    """One-hot class maps ``(4, H, W)`` float32 of a label map of the whole image."""
    return (labels[None] == np.arange(4)[:, None, None]).astype(np.float32)


def whole_image(labels: np.ndarray):
    return maps_of(labels), (0, 0, SHAPE[1], SHAPE[0])


def test_only_chromosomes_well_above_the_median_are_tried():
    masks = [bar_mask(SHAPE, (20 + 25 * i, 60), 30, 8, 90) for i in range(5)]
    masks.append(np.logical_or.reduce(crossing_pair(SHAPE, (140, 60), 30, 0)))
    chromosomes = instances_from_masks(np.array(masks))  # segmenter scores 1: sure of each
    assert candidates(chromosomes, 1.2) == []
    unsure = [dataclasses.replace(item, segmenter_score=0.8) for item in chromosomes]
    assert candidates(unsure, 1.2) == [5]
    assert candidates(unsure, None) == []
    assert candidates(unsure[2:], 1.2) == []  # too few for a median


def test_the_crop_shows_the_chromosome_alone():
    merged, _ = merged_pair()
    neighbour = bar_mask(SHAPE, (60, 92), 40, 8, 0)  # 4 px below the pair, in its window
    image = paint(SHAPE, [(merged.full_mask(SHAPE), BRIGHT), (neighbour, DIM)]) / 255.0
    geometry = window_for_box(merged.box, 10)
    crop = alone_crop(image.astype(np.float32), merged, geometry, 0.04, 2)
    assert crop.shape == (88, 88)
    assert crop.max() > 0.4  # the pair
    lone = ndimage.label(crop > 0.25, np.ones((3, 3)))[1]
    assert lone == 1  # the neighbour is painted over
    assert np.isclose(np.median(crop), 0.04)


def test_a_crossing_pair_is_split_into_its_two_chromosomes():
    merged, bars = merged_pair()
    labels = np.where(bars[0] & bars[1], 3, np.where(bars[0], 1, np.where(bars[1], 2, 0)))
    pieces = split(merged, *whole_image(labels), median_area=bars[0].sum())
    assert pieces is not None and len(pieces) == 2
    for bar in bars:  # each bar, to the pixel, is one of the pieces
        assert any((piece.full_mask(SHAPE) == bar).all() for piece in pieces)


def test_a_chromosome_in_one_piece_or_with_a_sliver_is_kept_whole():
    merged, bars = merged_pair()
    median = int(bars[0].sum())
    whole = merged.full_mask(SHAPE)
    assert split(merged, *whole_image(whole.astype(int)), median_area=median) is None  # one piece
    # most of the left arm (columns 39..55 of 35..56) read as an overlap, with a strip of B at
    # its end: B's piece is large enough, but lies almost wholly on A's
    labels = whole.astype(int)
    labels[:, 39:55][whole[:, 39:55]] = 3
    labels[:, 37:39][whole[:, 37:39]] = 2
    assert split(merged, *whole_image(labels), median_area=median) is None


def merging_segment(crops: np.ndarray) -> np.ndarray:
    """``threshold_segment``, except that a crop holding more than one foreground piece comes back
    all chromosome A, unsure (A 0.6, B 0.4): a segmenter that merges among neighbours and parts a
    pair seen alone."""
    out = threshold_segment(crops)
    for crop, probabilities in zip(crops, out, strict=True):
        if ndimage.label(crop > 0.25, np.ones((3, 3)))[1] > 1:
            foreground = probabilities[0] < 0.5
            probabilities[:] = 0
            probabilities[0][~foreground] = 1
            probabilities[1][foreground] = 0.6
            probabilities[2][foreground] = 0.4
    return out


def test_a_pair_merged_among_neighbours_comes_apart_alone(tmp_path):
    bars = crossing_pair(SHAPE, (50, 50), 40, 0)
    # 3 px right of the pair: in its window (margin 6), beyond the 2 px it is grown by alone
    singles = [bar_mask(SHAPE, (78, 50), 40, 8, 90)]
    singles += [bar_mask(SHAPE, (100 + 14 * i, 60), 36, 8, 90) for i in range(4)]
    image = paint(SHAPE, [(bars[0], DIM), (bars[1], BRIGHT)] + [(s, DIM) for s in singles])
    job = write_png(tmp_path / "pair.png", image)
    models = dataclasses.replace(fake_models(margin=6), segment=merging_segment, resegment=1.2)

    merged = process_image(job, models, test_config(segmenter={"resegment": False}))
    assert len(merged.instances) == 6  # the pair as one

    result = process_image(job, models, test_config())
    assert len(result.instances) == 7
    truth = instances_from_masks(np.array(bars + singles))
    pairs = match(result.instances, truth)
    assert len(pairs) == 7 and min(iou for _, _, iou in pairs) > 0.8
