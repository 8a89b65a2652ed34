"""The models' scale in the pipeline: images measured and seen at ADIR's chromosome width, large
clusters covered by several windows instead of squashed, and a G-band-style synthetic metaphase
run with the shipped models and no flags."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
from test_pipeline_helpers import BRIGHT, DIM, bar_mask, fake_models, paint, test_config
from test_synth import SMALL, hand_made

from pipeline.config import load_config
from pipeline.evaluate import match, segment_with_truth
from pipeline.inputs import ImageJob
from pipeline.run import build_result, detect_image, load_image, process_image, run_batch
from pipeline.scale import ADIR_WIDTH
from pipeline.stitch import instances_from_masks
from pipeline.synth import draw_metaphase
from segmenter.crops import window_for_box, windows_for_box


def write_png(path, image):
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), image)
    return ImageJob(path=path, slide=path.parent.name, image=path.name, key=path.stem)


def test_a_box_that_fits_is_one_window():
    box = (10, 20, 60, 50)
    assert windows_for_box(box, 4, 132) == [(window_for_box(box, 4), pytest.approx(box))]


def test_a_large_box_is_covered_by_bounded_overlapping_windows():
    box = np.array([5.0, 40.0, 305.0, 140.0])
    windows = windows_for_box(box, 4, 100)
    assert len(windows) == 12  # 6 across (308 px, starts <= 50 apart) x 2 down (108 px)
    covered = np.zeros((200, 320), bool)
    for geometry, core in windows:
        assert geometry.side == 100
        covered[geometry.y0 : geometry.y0 + 100, geometry.x0 : geometry.x0 + 100] = True
        assert box[0] <= core[0] < core[2] <= box[2] and box[1] <= core[1] < core[3] <= box[3]
    assert covered[40:140, 5:305].all()
    lefts = sorted({g.x0 for g, _ in windows})
    assert max(np.diff(lefts)) <= 50
    cores = sorted({(float(c[0]), float(c[2])) for _, c in windows})
    assert cores[0][0] == 5 and cores[-1][1] == 305
    assert all(a[1] >= b[0] for a, b in zip(cores, cores[1:], strict=False))  # no gaps


def ladder(shape=(130, 260)):
    """One cluster 172 px wide: five bright upright bars 60 px long joined by four dim crossbars
    52 px long, each crossing two uprights and ending at their outer edges; all 12 px wide, as
    ADIR's chromosomes."""
    bars = [(bar_mask(shape, (30 + 40 * i, 65), 60, 12, 90), BRIGHT) for i in range(5)]
    bars += [(bar_mask(shape, (50 + 40 * i, 48 + 34 * (i % 2)), 52, 12, 0), DIM) for i in range(4)]
    return paint(shape, bars), [mask for mask, _ in bars]


def test_a_large_cluster_comes_back_whole_from_several_windows(tmp_path):
    """The segmenter is faked by the truth (each window's one-hot target, as ``eval pipeline
    --true-segmentation`` does), so what is tested is the windows and the stitching: every
    chromosome whole, once, although no window holds the whole cluster."""
    image, truth = ladder()
    job = write_png(tmp_path / "ladder.png", image)
    config = test_config(segmenter={"max_window": 132})
    detected = detect_image(load_image(job), fake_models(), config)
    assert len(detected.boxes) == len(detected.geometries) >= 2
    assert all(g.side <= 132 for g in detected.geometries)
    assert set(detected.cluster_ids.tolist()) == {1}
    segment_with_truth(detected, np.array(truth), config.stitch, 0.0)
    result = build_result(detected, config, None)
    pairs = match(result.instances, instances_from_masks(np.array(truth)))
    assert len(result.instances) == len(truth) == len(pairs)
    assert min(score for _, _, score in pairs) > 0.85  # resampled twice: 1 px of edge
    assert set(result.table["cluster_id"]) == {1}


@pytest.mark.parametrize("join_iou", [0.5, None])
def test_a_chromosome_longer_than_a_window_is_joined_from_its_parts(tmp_path, join_iou):
    """A bar 150 px long, windows of at most 88 px: no window holds it whole. Its parts, found
    by the truth standing in for the U-Net, agree where two windows both see it, and are joined
    into one chromosome; with ``join_iou: null`` they stay apart."""
    bars = [bar_mask((120, 200), (100, 60), 150, 12, 10)]
    job = write_png(tmp_path / "long.png", paint((120, 200), [(bars[0], BRIGHT)]))
    config = test_config(segmenter={"max_window": 88}, stitch={"join_iou": join_iou})
    detected = detect_image(load_image(job), fake_models(), config)
    assert len(detected.geometries) >= 3
    segment_with_truth(detected, np.array(bars), config.stitch, 0.0)
    result = build_result(detected, config, None)
    if join_iou is None:
        assert len(result.instances) > 1
    else:
        [(_, _, iou)] = match(result.instances, instances_from_masks(np.array(bars)))
        assert len(result.instances) == 1 and iou > 0.9 and result.instances[0].complete


def test_auto_scale_sees_wide_chromosomes_at_the_models_width(tmp_path):
    """A metaphase drawn at 2.5 times ADIR's width: measured, the detector sees it shrunk to
    about ADIR's width, and the boxes and chromosomes come back in the input's pixels."""
    options = replace(SMALL, scale=(2.5, 2.5), cross_share=0.0, touch_share=0.0, nuclei=(0, 0))
    metaphase = draw_metaphase(hand_made(), "dapi", np.random.default_rng(2), options)
    job = write_png(tmp_path / "wide" / "m.png", metaphase.image)
    seen = []

    def detect(image):
        seen.append(image.shape)
        return fake_models().detect(image)

    models = replace(fake_models(), detect=detect)
    auto = test_config(scale="auto")
    detected = detect_image(load_image(job), models, auto)
    assert detected.scale == pytest.approx(1 / 2.5, rel=0.2)
    assert detected.chromosome_width == pytest.approx(2.5 * ADIR_WIDTH, rel=0.3)
    assert seen[0][0] == pytest.approx(metaphase.image.shape[0] * detected.scale, abs=1)
    assert detected.boxes[:, 2].max() > 0.8 * metaphase.image.shape[1] / 2  # input pixels
    run_batch([job], models, auto, tmp_path / "out", quiet=True)
    record = json.loads((tmp_path / "out" / "run.json").read_text())["images"][0]
    assert record["scale"] == pytest.approx(detected.scale, abs=1e-3)
    assert record["chromosome_width_px"] == pytest.approx(detected.chromosome_width, abs=0.01)
    fixed = detect_image(load_image(job), models, test_config(scale=0.5))
    assert fixed.scale == 0.5 and fixed.chromosome_width is None


def test_a_gband_synthetic_metaphase_is_found_with_no_flags(tmp_path):
    """Dark banded chromosomes on a bright background, twice ADIR's width, run with the shipped
    models and the default config (seen at about half their size, their crops segmented by the
    G-band segmenter): most chromosomes come back, few extra. Three draws pooled: one draw of
    about 20 chromosomes moves by a few between draws."""
    options = replace(
        SMALL,
        scale=(2.0, 2.0),
        chromosomes=(20, 24),
        cross_share=0.05,
        touch_share=0.05,
        jpeg_share=0.0,
    )
    from pipeline.models import load_models

    config = load_config(None)
    models = load_models(config, "cpu")
    true = found = matched = 0
    for seed in (4, 5, 6):
        metaphase = draw_metaphase(hand_made(16), "gband", np.random.default_rng(seed), options)
        job = write_png(tmp_path / f"gband{seed}" / "m.png", metaphase.image)
        result = process_image(job, models, config)
        assert result.scale == pytest.approx(0.5, rel=0.2)
        true, found = true + len(metaphase.masks), found + len(result.instances)
        matched += len(match(result.instances, instances_from_masks(metaphase.masks)))
    assert matched / true >= 0.85 and matched / found >= 0.8, (matched, true, found)
