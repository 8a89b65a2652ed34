"""Instance masks -> ADIR labels; ``chromoseg export-training`` (run outputs -> training data)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_pipeline_helpers import bar_mask, crossing_pair
from test_pipeline_run import make_slides, run

from pipeline.cli import main
from pipeline.core.adir import (
    OVERLAP_LABEL,
    DatasetError,
    chromosome_instances,
    find_images,
    labels_from_instances,
    load,
)
from pipeline.export import label_masks
from pipeline.imageio import normalise, read_image
from pipeline.outputs import read_label_tiff

SHAPE = (120, 160)
SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "adir"


def same_masks(found: np.ndarray, expected: np.ndarray) -> bool:
    return sorted(m.tobytes() for m in found) == sorted(m.tobytes() for m in expected)


def test_labels_from_instances_round_trip():
    crossing = crossing_pair(SHAPE, (40, 40), 50, 30)
    touching = [bar_mask(SHAPE, (110, 30), 40, 8, 90), bar_mask(SHAPE, (118, 30), 40, 8, 90)]
    # three bars crossing pairwise at the corners of a triangle: three colours needed
    triangle = [
        bar_mask(SHAPE, (100, 110), 80, 8, 0),
        bar_mask(SHAPE, (115, 84), 80, 8, 120),
        bar_mask(SHAPE, (85, 84), 80, 8, 60),
    ]
    lone = [bar_mask(SHAPE, (30, 100), 30, 8, 0)]
    masks = np.stack(crossing + touching + triangle + lone)
    assert (touching[0] & touching[1]).sum() == 0  # they touch without overlapping
    labels = labels_from_instances(masks)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels == OVERLAP_LABEL, masks.sum(axis=0) >= 2)
    found, classes = chromosome_instances(labels)
    assert same_masks(found, masks)
    assert len(set(classes.tolist())) == 3
    assert len(labels_from_instances(np.zeros((0, *SHAPE), bool))) == SHAPE[0]


def test_labels_from_instances_round_trip_on_the_adir_samples():
    for image in find_images(SAMPLES):
        masks = chromosome_instances(load(image)[1])[0]
        assert len(masks) > 40 and same_masks(
            chromosome_instances(labels_from_instances(masks))[0], masks
        )


def test_more_than_24_chromosomes_on_one_spot_cannot_be_labelled():
    star = np.stack([bar_mask(SHAPE, (80, 60), 100, 4, 7.2 * k) for k in range(25)])
    with pytest.raises(DatasetError, match="24"):
        labels_from_instances(star)
    labels_from_instances(star[:24])


def test_label_masks_of_both_label_image_forms():
    planes = np.zeros((2, 4, 4), np.uint16)
    planes[0, 0, :3] = 1
    planes[0, 1, 1:] = 2
    planes[1, 0, 1] = 2  # chromosome 2 also lies under 1 at (0, 1)
    masks = label_masks(planes)
    assert masks.shape == (2, 4, 4) and masks[1, 0, 1] and masks[0, 0, 1]
    np.testing.assert_array_equal(label_masks(planes[0]), planes[0][None] == [[[1]], [[2]]])


def test_export_training_from_a_run(tmp_path):
    make_slides(tmp_path / "data", 3)
    assert run(tmp_path / "data", tmp_path / "out").exit_code == 0
    training = tmp_path / "training"
    assert main(["export-training", str(tmp_path / "out"), "--out", str(training)]) == 0
    slides = json.loads((training / "slides.json").read_text())
    assert {key: value["slide"] for key, value in slides.items()} == {
        "001": "slide0",
        "002": "slide1",
    }
    images = find_images(training)
    assert [(image.slide, image.name) for image in images] == [
        ("001", "m0"),
        ("001", "m2"),
        ("002", "m1"),
    ]
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    entries = {entry["image"]: entry for entry in manifest["images"]}
    for image in images:
        entry = entries[f"{slides[image.slide]['slide']}/{image.name}.png"]
        picture, labels = load(image)
        expected = np.round(normalise(read_image(entry["file"])) * 255)
        np.testing.assert_array_equal(picture, expected)
        run_masks = label_masks(read_label_tiff(tmp_path / "out" / entry["outputs"]["labels"]))
        assert len(run_masks) == entry["chromosomes"] == 7
        assert same_masks(chromosome_instances(labels)[0], run_masks)
    assert main(["export-training", str(tmp_path / "data"), "--out", str(training)]) == 2
