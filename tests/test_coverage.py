"""Boxes for the foreground the detector left uncovered, or no chromosome found covers
(``pipeline.coverage``), and the duplicate rule that keeps a blob made of chromosomes found
elsewhere out (``pipeline.stitch``)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from test_pipeline import write_png
from test_pipeline_helpers import BRIGHT, DIM, bar_mask, fake_models, paint, test_config

from pipeline import coverage
from pipeline.coverage import (
    uncovered_boxes,
    unsegmented_boxes,
    without_blobs,
    without_enclosed,
)
from pipeline.models import Models
from pipeline.normalised import NormalisedImage
from pipeline.run import process_image
from pipeline.stitch import (
    in_reading_order,
    instances_from_masks,
    merge_duplicates,
    merge_pieces,
    without_covered,
)

SHAPE = (200, 260)
WIDTH = 8  # the bars' width: the chromosome width the rule is given


def disc(centre, radius) -> np.ndarray:
    rows, cols = np.mgrid[: SHAPE[0], : SHAPE[1]]
    return (cols - centre[0]) ** 2 + (rows - centre[1]) ** 2 < radius**2


def test_only_uncovered_chromosome_sized_foreground_gets_a_box():
    boxed = bar_mask(SHAPE, (50, 50), 50, WIDTH, 30)
    missed = bar_mask(SHAPE, (150, 60), 60, WIDTH, -60)
    speck = disc((220, 30), 3)  # about half a chromosome area (64 px)
    nucleus = disc((120, 150), 30)  # thicker than any chromosome
    image = paint(SHAPE, [(boxed, DIM), (missed, DIM), (speck, DIM), (nucleus, DIM)])
    boxes = np.float32([[20, 25, 80, 75]])  # around the first bar only
    [found] = uncovered_boxes(NormalisedImage(image), boxes, WIDTH)
    rows, cols = np.nonzero(missed)
    assert found[0] <= cols.min() and found[2] >= cols.max() + 1
    assert found[1] <= rows.min() and found[3] >= rows.max() + 1
    assert (found[2] - found[0]) < cols.max() - cols.min() + 6  # the bar's box, not more
    everything = np.float32([[0, 0, SHAPE[1], SHAPE[0]]])
    assert len(uncovered_boxes(NormalisedImage(image), everything, WIDTH)) == 0


def test_both_rules_read_one_foreground_per_image(monkeypatch):
    image = NormalisedImage(paint(SHAPE, [(bar_mask(SHAPE, (60, 60), 60, WIDTH, 20), DIM)]))
    found = []
    original = coverage._foreground
    monkeypatch.setattr(coverage, "_foreground", lambda item: found.append(item) or original(item))
    uncovered_boxes(image, np.zeros((0, 4), np.float32), WIDTH)
    unsegmented_boxes(image, [], WIDTH)
    assert found == [image]
    assert not image.to_uint8().flags.writeable  # read by both rules and the overlay: shared
    other = NormalisedImage(image.grey.copy())
    uncovered_boxes(other, np.zeros((0, 4), np.float32), WIDTH)
    assert found == [image, other]


def test_a_run_finds_chromosomes_the_detector_missed(tmp_path):
    bars = [bar_mask(SHAPE, (60, 60), 60, WIDTH, 20), bar_mask(SHAPE, (180, 130), 70, WIDTH, 100)]
    job = write_png(tmp_path / "missed.png", paint(SHAPE, [(bar, DIM) for bar in bars]))

    def blind(image):  # a detector that finds nothing
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)

    models = fake_models()
    models = Models(blind, models.segment, models.margin, models.info)
    found = process_image(job, models, test_config()).instances
    assert len(found) == 2
    assert all(instance.detector_score == 0 for instance in found)
    for bar in bars:
        assert (
            max(np.sum(i.full_mask(SHAPE) & bar) / np.sum(i.full_mask(SHAPE) | bar) for i in found)
            > 0.8
        )
    off = test_config(detector={"fill_uncovered": False}, segmenter={"second_pass": False})
    assert process_image(job, models, off).instances == []
    # the second pass alone finds them too: no chromosome covers them after the first
    second = test_config(detector={"fill_uncovered": False})
    assert len(process_image(job, models, second).instances) == 2


def test_only_foreground_no_chromosome_covers_gets_a_box_after_segmentation():
    found = bar_mask(SHAPE, (50, 50), 50, WIDTH, 30)
    left_out = bar_mask(SHAPE, (150, 60), 60, WIDTH, -60)
    speck = disc((220, 30), 3)
    nucleus = disc((120, 150), 30)
    image = paint(SHAPE, [(found, DIM), (left_out, DIM), (speck, DIM), (nucleus, DIM)])
    # the chromosome returned a pixel narrower than the foreground: its rim is not left out
    narrower = bar_mask(SHAPE, (50, 50), 48, WIDTH - 2, 30)
    chromosomes = instances_from_masks(narrower[None])
    [box] = unsegmented_boxes(NormalisedImage(image), chromosomes, WIDTH)
    rows, cols = np.nonzero(left_out)
    assert box[0] <= cols.min() + 1 and box[2] >= cols.max()
    assert box[1] <= rows.min() + 1 and box[3] >= rows.max()
    both = instances_from_masks(np.array([narrower, left_out]))
    assert len(unsegmented_boxes(NormalisedImage(image), both, WIDTH)) == 0


def test_a_mosaic_is_looked_at_shrunk_and_its_boxes_come_back_in_its_pixels():
    shape = (300, 2200)  # wider than MAX_SIDE: the foreground is found at half size
    found = bar_mask(shape, (200, 150), 120, 2 * WIDTH, 30)
    left_out = bar_mask(shape, (2000, 150), 120, 2 * WIDTH, -60)
    image = paint(shape, [(found, DIM), (left_out, DIM)])
    chromosomes = instances_from_masks(found[None])
    [box] = unsegmented_boxes(NormalisedImage(image), chromosomes, 2 * WIDTH)
    rows, cols = np.nonzero(left_out)
    assert abs(box[0] - cols.min()) <= 3 and abs(box[2] - cols.max() - 1) <= 3
    assert abs(box[1] - rows.min()) <= 3 and abs(box[3] - rows.max() - 1) <= 3


def test_the_second_pass_segments_what_the_first_left_out(tmp_path):
    bars = [bar_mask(SHAPE, (60, 60), 60, WIDTH, 20), bar_mask(SHAPE, (180, 130), 70, WIDTH, 100)]
    job = write_png(tmp_path / "two.png", paint(SHAPE, [(bar, DIM) for bar in bars]))

    def first_only(image):  # a detector that boxes the first bar only
        rows, cols = np.nonzero(bars[0])
        box = [cols.min() - 2, rows.min() - 2, cols.max() + 3, rows.max() + 3]
        return np.float32([box]), np.float32([0.9])

    models = fake_models()
    models = Models(first_only, models.segment, models.margin, models.info)
    config = test_config(detector={"fill_uncovered": False})
    found = process_image(job, models, config).instances
    assert sorted(instance.detector_score for instance in found) == [0.0, np.float32(0.9)]
    config = test_config(detector={"fill_uncovered": False}, segmenter={"second_pass": False})
    assert len(process_image(job, models, config).instances) == 1


def test_a_blob_over_chromosomes_found_elsewhere_is_a_duplicate():
    bars = [bar_mask(SHAPE, (100, 60 + 15 * k), 60, WIDTH, 0) for k in range(3)]  # parallel
    singles = instances_from_masks(np.array(bars))
    # what a confused crop makes of the three, less sure of it than of each alone
    [blob] = instances_from_masks(np.logical_or.reduce(bars)[None])
    blob = replace(blob, segmenter_score=0.5)
    assert merge_duplicates([*singles, blob]) == singles
    # a third of it lies in each (IoU 1/3): only together do they make it a duplicate
    assert merge_duplicates([singles[0], blob]) == [singles[0], blob]


def test_what_comes_back_much_thicker_than_a_chromosome_is_dropped(tmp_path):
    """A nucleus the segmenter returns as a chromosome (the fake one labels every bright blob) is
    dropped after stitching, the five bars beside it kept; with ``stitch.max_thickness: null`` all
    six stay. Thickness is judged against the median chromosome's (a crossing's bars are each one
    width thick); with fewer than five chromosomes found, nothing is dropped."""
    bars = [bar_mask(SHAPE, (40 + 45 * i, 50), 60, WIDTH, 80 + 5 * i) for i in range(5)]
    nucleus = disc((130, 150), 25)
    painted = paint(SHAPE, [*[(bar, DIM) for bar in bars], (nucleus, DIM)])
    job = write_png(tmp_path / "nucleus.png", painted)
    counts = {}
    for thickness in (2.2, None):
        config = test_config(stitch={"min_segmenter_score": 0.0, "max_thickness": thickness})
        counts[thickness] = len(process_image(job, fake_models(), config).instances)
    assert counts == {2.2: 5, None: 6}
    crossing = bar_mask(SHAPE, (40, 50), 60, WIDTH, 170)
    found = instances_from_masks(np.stack([*bars, crossing]))
    assert len(without_blobs(found, 2.2)) == 6
    assert len(without_blobs([*found, *instances_from_masks(nucleus[None])], 2.2)) == 6
    assert len(without_blobs(instances_from_masks(np.stack([bars[0], nucleus])), 2.2)) == 2


def test_a_piece_of_a_nucleus_is_dropped_and_chromosomes_beside_it_stay():
    """What lies inside a nucleus (its surroundings that no chromosome covers as bright as
    itself) is dropped; a chromosome lying over the nucleus (brighter than it: surroundings 0.39
    of its brightness, over the background) and two touching side by side (each covers the
    other's side) stay; null keeps everything, and so do fewer than five chromosomes."""
    nucleus = disc((180, 100), 45)
    inside = bar_mask(SHAPE, (180, 100), 40, WIDTH, 20)
    over_nucleus = bar_mask(SHAPE, (180, 130), 40, WIDTH, 0)
    touching = [bar_mask(SHAPE, (40 + WIDTH * k, 60), 60, WIDTH, 90) for k in range(2)]
    apart = [bar_mask(SHAPE, (40 + 30 * k, 160), 40, WIDTH, 0) for k in range(2)]
    bars = [*touching, *apart, over_nucleus]
    image = NormalisedImage(paint(SHAPE, [(nucleus, DIM), *[(bar, BRIGHT) for bar in bars]]))
    chromosomes = instances_from_masks(np.array([*bars, inside]))
    assert without_enclosed(chromosomes, image, 0.6) == chromosomes[:5]
    assert without_enclosed(chromosomes, image, 0.3) == chromosomes[:4]
    assert without_enclosed(chromosomes, image, None) == chromosomes
    assert without_enclosed(chromosomes[3:], image, 0.6) == chromosomes[3:]


def test_a_piece_kept_first_and_covered_by_chromosomes_kept_after_it_is_dropped():
    crossing = [bar_mask(SHAPE, (130, 100), 80, WIDTH, angle) for angle in (20, 110)]
    # the middle of the crossing, which a confused crop made one chromosome of, and was more
    # sure of than of either chromosome: kept before them, it covers too little of each to stop
    # them, and lies all in the two together
    middle = np.logical_or.reduce(crossing) & disc((130, 100), 16)
    [piece] = instances_from_masks(middle[None])
    chromosomes = instances_from_masks(np.array(crossing))
    chromosomes = [replace(chromosome, segmenter_score=0.8) for chromosome in chromosomes]
    piece = replace(piece, segmenter_score=0.95)
    kept = merge_duplicates([piece, *chromosomes])
    assert kept == [piece, *chromosomes]
    assert without_covered(kept) == chromosomes
    assert merge_pieces([piece, *chromosomes]) == in_reading_order(chromosomes)
    assert len(merge_pieces([piece, *chromosomes], redundant_coverage=None)) == 3
    # crossing chromosomes share their middle only: both stay
    assert without_covered(chromosomes) == chromosomes
