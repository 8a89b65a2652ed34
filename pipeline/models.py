"""The two trained stages as the pipeline calls them: plain functions on numpy arrays, so that
tests (and other engines) can pass their own.

``Models.detect(image)``: normalised ``(H, W)`` float32 -> boxes float32 ``(N, 4)`` x0, y0, x1, y1
(full-image pixel edges) and scores ``(N,)``.
``Models.segment(crops)``: ``(N, 88, 88)`` float32 -> class probabilities ``(N, 4, 88, 88)``
float32 (0 background, 1 chromosome A, 2 chromosome B, 3 overlap).
``Models.segment_dark(crops)``: the same for crops of images whose chromosomes were dark
(G-banded brightfield: ``pipeline.normalised`` turned them bright); None: ``segment``.
``Models.margin``: crop margin in pixels (the geometry the segmenter was trained with).
``Models.min_segmenter_score`` / ``min_segmenter_score_dark``: the segmenters' own smallest mean
class probability of a small piece kept (``pipeline.stitch``), where the pipeline config's
``stitch.min_segmenter_score`` is None.
``Models.scale_tolerance`` / ``scale_tolerance_dark``: the segmenters' own tolerance of the
automatic scale (thinner, thicker: ``pipeline.scale.model_scale``) for images of either polarity.
``Models.resegment`` / ``resegment_dark``: the segmenters' own size (times the image's median
chromosome area) from which a chromosome is segmented again alone (``pipeline.resegment``; None:
never).
``Models.info``: what ``run.json`` records about them (folders, sha256 of the weights).
``Models.max_boxes``: the most boxes the detector returns for one image (None: no limit); an image
or tile that gets that many may hold more clusters than were found.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np

from pipeline.config import PipelineConfig
from pipeline.core.errors import ConfigError
from pipeline.core.modelfolder import ModelFolder, describe
from pipeline.scale import TOLERANCE
from pipeline.stitch import MIN_SEGMENTER_SCORE

T = TypeVar("T")  # a setting of either segmenter


@dataclass
class Models:
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    segment: Callable[[np.ndarray], np.ndarray]
    margin: int
    info: dict = field(default_factory=dict)
    max_boxes: int | None = None
    segment_dark: Callable[[np.ndarray], np.ndarray] | None = None
    on_cpu: bool = True  # the networks run on the CPU's cores (not a GPU)
    min_segmenter_score: float = MIN_SEGMENTER_SCORE
    min_segmenter_score_dark: float | None = None  # None: min_segmenter_score
    scale_tolerance: tuple[float, float] = TOLERANCE  # (thinner, thicker)
    scale_tolerance_dark: tuple[float, float] | None = None  # None: scale_tolerance
    resegment: float | None = None
    resegment_dark: float | None = None  # the dark segmenter's own, None included

    def segmenter_for(self, dark: bool) -> Callable[[np.ndarray], np.ndarray]:
        """The segment function for an image whose chromosomes were dark (True) or bright."""
        return self.segment_dark if dark and self.segment_dark is not None else self.segment

    def min_score_for(self, dark: bool, setting: float | None = None) -> float:
        """The smallest score of a small piece kept in an image whose chromosomes were dark
        (True) or bright: ``setting`` (``stitch.min_segmenter_score``), or where it is None the
        segmenter's own."""
        return _own(dark, setting, self.min_segmenter_score, self.min_segmenter_score_dark)

    def scale_tolerance_for(self, dark: bool, setting: float | None = None) -> tuple[float, float]:
        """The automatic scale's tolerance (thinner, thicker: ``pipeline.scale.model_scale``) for
        an image whose chromosomes were dark (True) or bright: ``setting`` both ways (the
        pipeline config's ``scale_tolerance``), or where it is None the segmenter's own."""
        both = None if setting is None else (setting, setting)
        return _own(dark, both, self.scale_tolerance, self.scale_tolerance_dark)

    def resegment_for(self, dark: bool) -> float | None:
        """The size from which a chromosome of an image whose chromosomes were dark (True) or
        bright is segmented again alone: that segmenter's own (None: never)."""
        return self.resegment_dark if dark and self.segment_dark is not None else self.resegment


def _own(dark: bool, setting: T | None, bright_value: T, dark_value: T | None) -> T:
    """``setting`` where the pipeline config sets one, else the value of the segmenter that an
    image of this polarity goes to (the bright one's where the dark one has none)."""
    if setting is not None:
        return setting
    return dark_value if dark and dark_value is not None else bright_value


def scale_tolerance_of(inference) -> tuple[float, float]:
    """A segmenter's automatic-scale tolerance (thinner, thicker) from its inference settings."""
    thick = inference.scale_tolerance_thick
    return inference.scale_tolerance, inference.scale_tolerance if thick is None else thick


def load_models(config: PipelineConfig, device: str | None = "cpu") -> Models:
    """The detector and segmenters named in a pipeline config (None: the shipped ones), all under
    bf16 autocast as ``config.bf16`` says; the crop margin and the views averaged
    (``segmenter.api.segment``) are the segmenter's own unless the config sets
    ``segmenter.margin`` / ``segmenter.views``. The segmenter for dark-chromosome images
    (``segmenter.model_dark``) is loaded when the first such image comes. ``device``: as
    ``pipeline.core.device.select_device`` takes it (None: cuda where available)."""
    from detector import api as detector_api
    from segmenter import api as segmenter_api
    from segmenter.config import SegmenterConfig

    detector_folder = config.detector.model or detector_api.PRETRAINED
    segmenter_folder = config.segmenter.model or segmenter_api.PRETRAINED
    dark_folder = config.segmenter.model_dark or segmenter_api.PRETRAINED_DARK
    detector_model = detector_api.load_model(detector_folder, device, config.bf16)
    margin = config.segmenter.margin
    batch_size = config.segmenter.batch_size

    def load_segmenter(folder):
        model = segmenter_api.load_model(folder, device, config.bf16)
        if config.segmenter.views is not None:
            model.config.inference.views = config.segmenter.views
        return model

    segmenter_model = load_segmenter(segmenter_folder)
    dark = ModelFolder(dark_folder, segmenter_api.STAGE, SegmenterConfig)  # checked now
    if margin is None and dark.config.data.margin != segmenter_model.margin:
        raise ConfigError(
            f"segmenter.model_dark ({dark_folder}) was trained with crop margin "
            f"{dark.config.data.margin}, segmenter.model with {segmenter_model.margin}: "
            "set segmenter.margin"
        )
    dark_models = []  # loaded on first use: most batches have no dark-chromosome image

    def segment_dark(crops: np.ndarray) -> np.ndarray:
        if not dark_models:
            dark_models.append(load_segmenter(dark_folder))
        return segmenter_api.segment(dark_models[0], crops, batch_size=batch_size)[1]

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detector_api.detect(
            detector_model,
            image,
            score_threshold=config.detector.score_threshold,
            input_scale=config.detector.input_scale,
        )

    def segment(crops: np.ndarray) -> np.ndarray:
        return segmenter_api.segment(segmenter_model, crops, batch_size=batch_size)[1]

    return Models(
        detect=detect,
        segment=segment,
        margin=segmenter_model.margin if margin is None else int(margin),
        info={
            "detector": describe(detector_folder),
            "segmenter": describe(segmenter_folder),
            "segmenter_dark": dark.describe(),
        },
        max_boxes=detector_model.config.model.box_detections_per_img,
        segment_dark=segment_dark,
        on_cpu=segmenter_model.device.type == "cpu",
        min_segmenter_score=segmenter_model.config.inference.min_segmenter_score,
        min_segmenter_score_dark=dark.config.inference.min_segmenter_score,
        scale_tolerance=scale_tolerance_of(segmenter_model.config.inference),
        scale_tolerance_dark=scale_tolerance_of(dark.config.inference),
        resegment=segmenter_model.config.inference.resegment,
        resegment_dark=dark.config.inference.resegment,
    )
