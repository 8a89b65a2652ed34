"""Crops of a dim part of an image are brightened before the U-Net (``pipeline.run.brightened``,
pipeline setting ``segmenter.dim_crop_level``)."""

from __future__ import annotations

import dataclasses

import numpy as np
from test_pipeline import write_png
from test_pipeline_helpers import bar_mask, fake_models, paint, test_config

from pipeline.run import DIM_PERCENTILE, brightened, process_image

SHAPE = (200, 260)


def test_dim_crops_are_scaled_to_the_level_and_the_others_kept_to_the_bit():
    bar = bar_mask((88, 88), (44, 44), 60, 10, 30).astype(np.float32)
    crops = np.stack([0.05 + 0.95 * bar, 0.05 + 0.25 * bar, np.zeros((88, 88), np.float32)])
    before = crops.copy()
    found = brightened(crops, 0.8)
    assert np.array_equal(crops, before)  # the input is left alone
    assert np.array_equal(found[0], crops[0]) and np.array_equal(found[2], crops[2])
    assert np.percentile(found[1], DIM_PERCENTILE) == np.float32(0.8)
    assert np.allclose(found[1], crops[1] * 0.8 / 0.3)  # one gain over the whole crop
    assert found.dtype == np.float32
    assert brightened(crops, None) is crops


def test_the_segmenter_sees_the_dim_bars_of_an_image_brightened(tmp_path):
    """An image whose normalisation a bright blob sets: its dim bars reach the segmenter at the
    level; with ``dim_crop_level: null`` as faint as they are in the image, and so do those of
    the same image dark on bright (G-band: crops as cut)."""
    bars = [bar_mask(SHAPE, (60 + 60 * i, 130), 70, 8, 80 + 10 * i) for i in range(3)]
    blob = bar_mask(SHAPE, (230, 40), 20, 18, 0)
    image = paint(SHAPE, [*[(bar, 90) for bar in bars], (blob, 255)])
    bright = write_png(tmp_path / "dim.png", image)
    dark = write_png(tmp_path / "dim_dark.png", 255 - image)
    tops = {}
    for job, level in ((bright, 0.8), (bright, None), (dark, 0.8)):
        seen = []

        def recording(crops, seen=seen):
            seen += [float(np.percentile(crop, DIM_PERCENTILE)) for crop in crops]
            return fake_models().segment(crops)

        models = dataclasses.replace(fake_models(), segment=recording)
        process_image(job, models, test_config(segmenter={"dim_crop_level": level}))
        tops[job.image, level] = seen
    assert len(tops["dim.png", 0.8]) >= 4 and min(tops["dim.png", 0.8]) >= 0.8 - 1e-6
    # the bars' crops (80 of the blob's 245 grey levels above the background), and the blob's
    assert sorted(round(top, 2) for top in tops["dim.png", None]) == [0.33, 0.33, 0.33, 1.0]
    assert sorted(round(top, 2) for top in tops["dim_dark.png", 0.8]) == [0.33, 0.33, 0.33, 1.0]
