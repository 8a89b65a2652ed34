"""The ADIR format: clusters, instances, the split, and errors for bad folders."""

from pathlib import Path

import numpy as np
import pytest
import tifffile

from pipeline.core import adir

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "samples" / "adir"


def crossing_labels() -> np.ndarray:
    """Two bars of classes 3 and 7 crossing at an overlap (255), plus a lone bar and a speck."""
    labels = np.zeros((40, 50), np.uint8)
    labels[5:30, 10:14] = 3  # vertical bar
    labels[15:19, 2:25] = 7  # horizontal bar over it
    labels[15:19, 10:14] = 255  # the crossing
    labels[30:34, 35:48] = 5  # a single chromosome
    labels[0:3, 45:48] = 9  # 9 pixels: below the 20-pixel minimum
    return labels


def test_cluster_boxes_of_hand_made_labels():
    boxes = adir.cluster_boxes(crossing_labels())
    expected = np.array([[2, 5, 25, 30], [35, 30, 48, 34]], np.float32)
    np.testing.assert_array_equal(boxes, expected)


def test_instances_join_overlap_to_every_chromosome_touching_it():
    masks, classes = adir.chromosome_instances(crossing_labels())
    assert sorted(classes.tolist()) == [3, 5, 7]
    by_class = dict(zip(classes.tolist(), masks, strict=True))
    crossing = np.zeros((40, 50), bool)
    crossing[15:19, 10:14] = True
    for value in (3, 7):
        assert (by_class[value] & crossing).sum() == crossing.sum()
    assert not (by_class[5] & crossing).any()
    # the vertical bar is split by the crossing into two pieces; joined by it, it is one instance
    assert by_class[3].sum() == 25 * 4


def test_split_is_deterministic_and_by_slide():
    images = adir.find_images(SAMPLES)
    assert [image.slide for image in images] == ["A02", "P07", "V13"]
    first = adir.make_split(images, test_fraction=0.3, val_fraction=0.3, seed=1)
    assert first == adir.make_split(images, test_fraction=0.3, val_fraction=0.3, seed=1)
    parts = [set(ids) for ids in first.values()]
    assert set.union(*parts) == {"A02", "P07", "V13"}
    assert sum(len(part) for part in parts) == 3


def test_shipped_split_holds_out_at_least_15_percent_of_slides():
    split = adir.read_split()
    slides = sum(len(ids) for ids in split.values())
    assert len(split["test"]) >= 0.15 * slides
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))


def test_select_on_unknown_slides_takes_every_image(tmp_path):
    folder = tmp_path / "X99__XY"
    folder.mkdir()
    for suffix in "DK":
        tifffile.imwrite(folder / f"X9901XY{suffix}.tif", np.zeros((8, 8), np.uint8))
    images = adir.find_images(tmp_path)
    assert adir.select(images, "test") == images
    assert adir.split_for(images)["train"] or adir.split_for(images)["test"]


def test_sample_loads_with_matching_shapes():
    dapi, labels = adir.load(adir.find_images(SAMPLES)[0])
    assert dapi.dtype == np.uint8 and labels.shape == dapi.shape
    assert set(np.unique(labels)) <= set(range(25)) | {255}


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(adir.DatasetError, match="not found"):
        adir.find_images(tmp_path / "nowhere")


def test_label_without_dapi_is_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "A0101XYK.tif", np.zeros((8, 8), np.uint8))
    with pytest.raises(adir.DatasetError, match="without its DAPI"):
        adir.find_images(tmp_path)


def test_mismatched_shapes_are_a_clear_error(tmp_path):
    tifffile.imwrite(tmp_path / "A0101XYD.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(tmp_path / "A0101XYK.tif", np.zeros((9, 8), np.uint8))
    with pytest.raises(adir.DatasetError, match="shapes must match"):
        adir.load(adir.find_images(tmp_path)[0])
