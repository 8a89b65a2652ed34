"""Pipeline core: stitching, geometry, measurements, outputs, tiling, evaluation metrics."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import yaml
from test_pipeline_helpers import (
    BRIGHT,
    DIM,
    bar_mask,
    crossing_pair,
    fake_models,
    paint,
    scattered_bars,
    test_config,
)

from pipeline.config import PipelineConfig, load_config
from pipeline.core.config import to_dict
from pipeline.evaluate import image_scores, match, otsu_instances, summarise
from pipeline.imageio import normalise
from pipeline.inputs import ImageJob
from pipeline.measure import column_names, measure, medial_axis_length, orientation_degrees
from pipeline.normalised import NormalisedImage
from pipeline.outputs import coco_annotations, decode_segmentation, label_planes, overlay_rgb
from pipeline.run import detect_image, process_image
from pipeline.stitch import (
    Instance,
    Window,
    instances_from_masks,
    join_cut_pieces,
    mask_iou,
    stitch,
    window_instances,
)
from pipeline.tiling import detect_tiled, tile_starts
from segmenter.crops import background_level, crop_image, window_for_box


def iou(a: np.ndarray, b: np.ndarray) -> float:
    return (a & b).sum() / (a | b).sum()


def write_png(path, image):
    import cv2

    cv2.imwrite(str(path), image)
    return ImageJob(path=path, slide=path.parent.name, image=path.name, key=path.stem)


def test_two_crossing_bars_give_two_instances_sharing_the_crossing(tmp_path):
    shape = (120, 120)
    first, second = crossing_pair(shape, (60, 60), 70, 20)
    job = write_png(tmp_path / "cross.png", paint(shape, [(first, DIM), (second, BRIGHT)]))
    result = process_image(job, fake_models(), test_config())
    assert len(result.instances) == 2
    masks = [instance.full_mask(shape) for instance in result.instances]
    best = sorted(max(iou(mask, truth) for mask in masks) for truth in (first, second))
    assert best[0] > 0.9
    crossing = first & second
    for mask in masks:
        assert (mask & crossing).sum() >= 0.9 * crossing.sum()
    table = result.table
    assert list(table["overlaps_with"]) == ["2", "1"]
    assert (table["overlap_px"] >= 0.9 * crossing.sum()).all()
    assert (table["cluster_id"] == 1).all()


def test_crop_and_back_lands_on_the_same_pixels(tmp_path):
    """A lone bar goes through crop -> 88x88 -> probabilities -> back, at several sizes (the
    window shrinks or is enlarged to 88) and next to the image's edge (padding)."""
    for length, centre in ((20, (50, 50)), (150, (100, 100)), (40, (14, 100))):
        shape = (200, 200)
        truth = bar_mask(shape, centre, length, 9, 90 if centre[0] < 20 else 30)
        job = write_png(tmp_path / f"bar{length}.png", paint(shape, [(truth, 200)]))
        models = fake_models()
        models.segment = lambda crops: np.stack(
            [crops < 0.5, crops >= 0.5, 0 * crops, 0 * crops], axis=1
        ).astype(np.float32)
        result = process_image(job, models, test_config())
        assert len(result.instances) == 1
        assert iou(result.instances[0].full_mask(shape), truth) > 0.93
        assert (
            np.abs(
                np.array(result.instances[0].box)
                - result.table.iloc[0][["bbox_x0", "bbox_y0", "bbox_x1", "bbox_y1"]].to_numpy(int)
            ).max()
            == 0
        )


@pytest.mark.parametrize(
    "length, width, angle", [(40, 7, 0), (60, 8, 30), (80, 9, -45), (100, 6, 72), (30, 5, 90)]
)
def test_bar_of_known_length_and_width_measures_right(length, width, angle):
    shape = (160, 160)
    mask = bar_mask(shape, (80.3, 80.2), length, width, angle)
    instance = instances_from_masks(mask[None])[0]
    row = measure([instance], {"dapi": mask * 100.0}, "slide", "image").iloc[0]
    assert row["length_px"] == pytest.approx(length, rel=0.03)
    stadium_area = (length - width) * width + np.pi * width**2 / 4
    assert row["area_px"] == pytest.approx(stadium_area, rel=0.03)
    assert row["mean_width_px"] == pytest.approx(stadium_area / length, rel=0.05)
    assert abs((row["orientation_deg"] - angle + 90) % 180 - 90) < 1.5
    assert row["dapi_mean"] == 100 and row["dapi_integrated"] == 100 * row["area_px"]
    assert row["centroid_x"] == pytest.approx(80.3, abs=0.3)
    assert row["centroid_y"] == pytest.approx(80.2, abs=0.3)


def test_measure_columns_with_channels_and_pixel_size():
    mask = bar_mask((60, 60), (30, 30), 30, 6, 0)
    instance = instances_from_masks(mask[None])[0]
    channels = {"dapi": np.ones((60, 60)), "fish": np.full((60, 60), 3.0)}
    table = measure([instance], channels, "s", "i", pixel_size=0.1)
    assert list(table.columns) == column_names(["fish"], physical=True)
    assert table.loc[0, "fish_mean"] == 3
    assert table.loc[0, "length_um"] == pytest.approx(table.loc[0, "length_px"] * 0.1, abs=1e-3)
    assert table.loc[0, "area_um2"] == pytest.approx(table.loc[0, "area_px"] * 0.01)
    assert list(measure([], {"dapi": np.ones((5, 5))}, "s", "i").columns) == column_names(
        [], physical=False
    )
    assert medial_axis_length(np.zeros((5, 5), bool)) == 0
    vertical = bar_mask((60, 60), (30.5, 30.5), 40, 5, 90)
    assert abs(orientation_degrees(vertical)) == pytest.approx(90, abs=0.5)


def window_from_labels(labels: np.ndarray, row0: int, col0: int, box, cluster_id=1) -> Window:
    probabilities = (labels[None] == np.arange(4)[:, None, None]).astype(np.float32)
    return Window(probabilities, row0, col0, np.float32(box), 0.8, cluster_id)


def test_stitch_merges_duplicates_and_drops_fragments_and_neighbours():
    labels = np.zeros((40, 40), np.uint8)
    labels[10:30, 15:22] = 1  # the chromosome of this box
    labels[2:4, 2:8] = 2  # a 12-pixel fragment: dropped
    labels[30:40, 35:40] = 2  # 50 pixels, all outside the box: a neighbour, dropped
    window = window_from_labels(labels, 100, 200, (212, 107, 225, 133))
    shifted = window_from_labels(np.roll(labels, 1, axis=0), 99, 200, (212, 107, 225, 133), 2)
    instances = stitch([window, shifted], (1000, 1000))
    assert len(instances) == 1
    assert instances[0].box == (215, 110, 222, 130)
    assert instances[0].area == 140
    cut = np.zeros((40, 40), np.uint8)
    cut[0:12, 15:22] = 1  # the top of the same chromosome, cut by a crop's upper edge
    part = window_from_labels(cut, 108, 200, (212, 100, 225, 115), 3)
    [kept] = stitch([part, window], (1000, 1000))
    assert kept.area == 140 and kept.cluster_id == 1
    overlap_only = np.where(labels == 1, 3, 0).astype(np.uint8)
    assert stitch([window_from_labels(overlap_only, 0, 0, (0, 0, 40, 40))], (40, 40)) == []


def test_a_detector_box_keeps_its_only_piece_however_unsure():
    """A small piece the U-Net is unsure of is dropped, unless it is the only piece of a box the
    detector found (score above 0) and lies mostly inside it."""
    labels = np.zeros((40, 40), np.uint8)
    labels[15:25, 17:23] = 2  # a small chromosome, 60 pixels
    box = (215, 113, 225, 127)
    unsure = window_from_labels(labels, 100, 200, box)
    probabilities = 0.4 * unsure.probabilities + 0.15  # the piece's class at 0.55
    unsure = Window(probabilities, 100, 200, unsure.box, 0.8, 1)
    settings = {"min_segmenter_score": 0.9, "uncertain_max_pixels": 200}
    [kept] = stitch([unsure], (1000, 1000), **settings)
    assert kept.area == 60 and kept.segmenter_score == pytest.approx(0.55)
    assert stitch([unsure], (1000, 1000), **settings, keep_sole_piece=False) == []
    rules = (20, 0.5, 0.9, 200, True)  # fragments, inside share, score, unsure size, sole piece
    shown = labels == 2
    assert len(window_instances(unsure, (1000, 1000), *rules, lambda: shown)) == 1
    unseen = np.zeros_like(shown)  # the image's foreground misses it: a faint smudge
    assert window_instances(unsure, (1000, 1000), *rules, lambda: unseen) == []
    added = Window(probabilities, 100, 200, unsure.box, 0.0, 1)  # a box around uncovered foreground
    assert stitch([added], (1000, 1000), **settings) == []
    elsewhere = Window(probabilities, 100, 200, np.float32((200, 100, 210, 110)), 0.8, 1)
    assert stitch([elsewhere], (1000, 1000), **settings) == []  # not in its box
    labels[30:38, 2:38] = 1  # a confident neighbour in the same window: the unsure piece goes
    confident = window_from_labels(labels, 100, 200, box)
    mixed = np.where(labels == 2, probabilities, confident.probabilities)
    [neighbour] = stitch([Window(mixed, 100, 200, confident.box, 0.8, 1)], (1000, 1000), **settings)
    assert neighbour.area == 8 * 36


def test_instances_json_decodes_back_to_the_same_masks():
    shape = (150, 130)
    image, masks = scattered_bars(shape, 4, 3, seed=1)
    instances = instances_from_masks(np.array(masks))
    annotations = coco_annotations(instances, shape, [0.5] * len(instances))
    for annotation, instance, mask in zip(annotations, instances, masks, strict=True):
        decoded = decode_segmentation(annotation)
        assert decoded.shape == shape and (decoded == mask).all()
        assert annotation["area"] == mask.sum()
        x, y, w, h = annotation["bbox"]
        assert (x, y, x + w, y + h) == instance.box
    edge = np.zeros((1, 6, 5), bool)
    edge[0, :, 1:3] = True  # runs that continue from one column into the next
    [instance] = instances_from_masks(edge)
    assert (decode_segmentation(coco_annotations([instance], (6, 5), [1])[0]) == edge[0]).all()


def test_label_planes_mark_overlaps_with_both_ids():
    shape = (120, 120)
    first = bar_mask(shape, (60, 60), 70, 8, 0)
    second = bar_mask(shape, (85, 75), 50, 8, 90)  # crosses the first one near its right end
    lone = bar_mask(shape, (20, 20), 20, 6, 45)
    instances = instances_from_masks(np.array([first, second, lone]))
    planes = label_planes(instances, shape)
    assert planes.dtype == np.uint16 and planes.shape == (2, *shape)
    assert set(np.unique(planes[0])) == {0, 1, 2, 3}
    assert ((planes[1] > 0) == (first & second)).all()
    crossing = first & second
    assert (planes[0][crossing] == 1).all() and (planes[1][crossing] == 2).all()
    assert ((planes[0] == 3) == lone).all()
    overlay = overlay_rgb(np.zeros(shape, np.uint8), instances)
    assert overlay.shape == (*shape, 3)
    assert (overlay[crossing] == 255).all()


def test_tiled_detection_equals_untiled(tmp_path):
    image, _ = scattered_bars((400, 600), 10, 6, seed=2)
    job = write_png(tmp_path / "big.png", image)
    untiled = process_image(job, fake_models(), test_config())
    tiled_config = test_config(tiling={"max_side": 100, "tile": 160, "overlap": 70})
    tiled = process_image(job, fake_models(), tiled_config)
    assert len(untiled.instances) == 22
    assert untiled.table.equals(tiled.table)
    for a, b in zip(untiled.instances, tiled.instances, strict=True):
        assert a.box == b.box and (a.mask == b.mask).all()
    calls = []

    def counting_detect(tile):
        calls.append(tile.shape)
        return fake_models().detect(tile)

    detect_tiled(counting_detect, untiled.normalised, 160, 70)
    assert len(calls) == len(tile_starts(400, 160, 70)) * len(tile_starts(600, 160, 70))
    assert max(max(shape) for shape in calls) == 160


def test_tile_starts_cover_the_image():
    assert tile_starts(100, 160, 70) == [0]
    starts = tile_starts(1000, 300, 100)
    assert starts[0] == 0 and starts[-1] == 700
    assert all(b - a <= 200 for a, b in zip(starts, starts[1:], strict=False))


def test_detect_image_orders_boxes(tmp_path):
    image, _ = scattered_bars((200, 200), 3, 1, seed=3)
    job = write_png(tmp_path / "a.png", image)
    from pipeline.run import load_image

    detected = detect_image(load_image(job), fake_models(), test_config())
    tops = detected.boxes[:, 1]
    assert (np.diff(tops) >= 0).all()
    assert len(detected.geometries) == 4 and detected.crop(3).shape == (88, 88)


def test_parts_join_where_both_windows_agree_and_crossings_do_not():
    def piece(rows, cols, seen, complete=False):
        mask = np.zeros((100, 200), bool)
        mask[rows[0] : rows[1], cols[0] : cols[1]] = True
        [instance] = instances_from_masks(mask[None])
        return replace(instance, complete=complete, seen=seen)

    first, second = (0, 0, 90, 100), (50, 0, 140, 100)  # two windows, seeing x 50-90 both
    left = piece((40, 50), (10, 89), first)  # one horizontal chromosome, cut by each window
    right = piece((40, 50), (51, 130), second)
    crossing = piece((5, 95), (60, 70), second)  # another crossing it, seen by the second
    whole = piece((70, 80), (10, 40), first, complete=True)
    joined = join_cut_pieces([left, right, crossing, whole])
    assert joined[:2] == [crossing, whole]
    [chromosome] = joined[2:]
    assert chromosome.box == (10, 40, 130, 50) and chromosome.area == 120 * 10
    assert chromosome.complete  # every pixel seen by one of the windows, away from its edges
    assert len(join_cut_pieces([left, right], join_iou=1.01)) == 2


def test_matching_and_summary_on_known_masks():
    shape = (50, 50)
    a = np.zeros(shape, bool)
    a[10:20, 10:20] = True
    b = np.zeros(shape, bool)
    b[30:40, 30:40] = True
    shifted = np.roll(a, 3, axis=1)  # IoU 70/130
    true = instances_from_masks(np.array([a, b]))
    predicted = instances_from_masks(np.array([shifted, np.roll(b, 8, axis=0)]))
    matches = match(predicted, true)
    assert [(i, j) for i, j, _ in matches] == [(0, 0)]
    assert matches[0][2] == pytest.approx(70 / 130)
    assert mask_iou(predicted[0], true[0]) == pytest.approx(70 / 130)
    first = image_scores(predicted, true)
    assert (first["predicted"], first["true"], first["matched"]) == (2, 2, 1)
    second = {**first, "predicted": 4, "true": 2, "matched": 2, "iou_sum": 1.8}
    summary = summarise([{**first, "iou_sum": 0.5}, second])
    assert summary["precision"] == pytest.approx(0.5)
    assert summary["recall"] == pytest.approx(0.75)
    assert summary["f1"] == pytest.approx(0.6)
    assert summary["mean_matched_iou"] == pytest.approx(2.3 / 3)
    assert summary["count_error"]["histogram"] == {"0": 1, "2": 1}
    assert summary["count_error"]["within_1"] == 0.5


def test_error_kinds_say_why_each_chromosome_is_unmatched():
    def box(rows, cols):
        mask = np.zeros((100, 100), bool)
        mask[rows[0] : rows[1], cols[0] : cols[1]] = True
        return mask

    true = [
        # three meeting end to end, returned as one: merged (of two, the larger would match)
        box((5, 10), (5, 25)),
        box((5, 10), (25, 45)),
        box((5, 10), (45, 65)),
        box((30, 35), (5, 65)),  # in three pieces: split
        box((50, 55), (5, 40)),  # nothing there: missed
        box((70, 80), (5, 25)),  # inside a prediction three times its size: inexact
    ]
    predicted = [
        true[0] | true[1] | true[2],
        box((30, 35), (5, 25)),
        box((30, 35), (25, 45)),
        box((30, 35), (45, 65)),
        box((65, 85), (5, 35)),
        box((90, 95), (60, 90)),  # on the background: extra
    ]
    scores = image_scores(
        instances_from_masks(np.array(predicted)), instances_from_masks(np.array(true))
    )
    assert scores["matched"] == 0
    assert scores["errors"] == {
        "true": {"missed": 1, "merged": 3, "split": 1, "inexact": 1},
        "predicted": {"extra": 2, "merge": 1, "piece": 3, "inexact": 0},
    }
    unlabelled = box((88, 97), (55, 95))
    scores = image_scores(
        instances_from_masks(np.array(predicted)), instances_from_masks(np.array(true)), unlabelled
    )
    assert scores["not_counted"] == 1 and scores["predicted"] == 5
    assert scores["errors"]["predicted"]["extra"] == 1
    assert summarise([scores, scores])["errors"]["true"]["merged"] == 6


def test_otsu_baseline_takes_each_component_as_one_chromosome():
    shape = (120, 120)
    image = paint(shape, [(mask, DIM) for mask in crossing_pair(shape, (60, 60), 70, 0)])
    instances = otsu_instances(image / 255.0)
    assert len(instances) == 1
    assert isinstance(instances[0], Instance)


@pytest.mark.parametrize("polarity", ["auto", "bright", "dark"])
def test_normalised_view_equals_normalise(polarity):
    rng = np.random.default_rng(0)
    bright = paint((90, 70), [(bar_mask((90, 70), (35, 45), 40, 7, 30), 200)])
    for image in (
        bright,
        255 - bright,  # dark on bright: flipped under "auto"
        bright.astype(np.uint16) * 257,
        bright + rng.normal(0, 3, bright.shape),
        np.full((20, 30), 7, np.uint8),  # blank
    ):
        view = NormalisedImage(image, polarity)
        expected = normalise(image, polarity)
        computed = NormalisedImage(image.astype(np.float64), polarity)  # no table of levels
        assert np.array_equal(view.full(), computed.full())
        assert np.array_equal(view.to_uint8(), computed.to_uint8())
        np.testing.assert_allclose(view.full(), expected, atol=1e-6)
        np.testing.assert_allclose(view[5:17, 3:29], expected[5:17, 3:29], atol=1e-6)
        assert view.blank == (not expected.any())
        assert view.background() == pytest.approx(background_level(expected), abs=1e-6)
        assert (view.to_uint8() == (expected * 255).astype(np.uint8)).mean() > 0.999
        for geometry in (window_for_box((10, 20, 30, 50), 4), window_for_box((-5, 60, 20, 95), 4)):
            np.testing.assert_allclose(
                view.crop(geometry, 0.1), crop_image(expected, geometry, 0.1), atol=1e-5
            )


def test_config_file_matches_defaults():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "configs" / "pipeline.yaml"
    assert yaml.safe_load(path.read_text()) == to_dict(PipelineConfig())


def test_config_errors_name_the_setting(tmp_path):
    from pipeline.core.errors import ConfigError

    for text, named in (
        ("stitch:\n  min_fragment_pixel: 3\n", "stitch.min_fragment_pixel"),
        ("tiling:\n  tile: big\n", "tiling.tile"),
        ("polarity: upside-down\n", "polarity"),
        ("batch: 8\n", "batch"),
    ):
        (tmp_path / "bad.yaml").write_text(text)
        with pytest.raises(ConfigError, match=named):
            load_config(tmp_path / "bad.yaml")


def test_config_paths_are_relative_to_the_config_file(tmp_path, monkeypatch):
    (tmp_path / "configs").mkdir()
    (tmp_path / "configs" / "mine.yaml").write_text("segmenter:\n  model: ../models/seg\n")
    monkeypatch.chdir("/")
    config = load_config(tmp_path / "configs" / "mine.yaml", detector={"model": "det"})
    assert config.segmenter.model == tmp_path / "configs" / ".." / "models" / "seg"
    assert str(config.detector.model) == "det"  # a command-line override: the working directory's
    assert config.stitch.min_fragment_pixels == PipelineConfig().stitch.min_fragment_pixels
