"""The pipeline's settings (``chromoseg run`` / ``eval pipeline``): ``PipelineConfig``, whose
defaults ``configs/pipeline.yaml`` spells out key by key (a test keeps the two equal), and
``load_config`` for a user's YAML file over them (``pipeline.core.config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core import config as core_config


@dataclass
class DetectorSettings:
    model: Path | None = None  # model folder; None: the shipped detector/pretrained
    score_threshold: float | None = None  # None: the model's own threshold
    input_scale: float | None = None  # None: the model's own
    fill_uncovered: bool = True  # foreground left without a box gets one (pipeline.coverage)


@dataclass
class SegmenterSettings:
    model: Path | None = None  # model folder; None: the shipped segmenter/pretrained
    # for images whose chromosomes are dark (G-banded brightfield); None: the shipped
    # segmenter/pretrained_gband
    model_dark: Path | None = None
    batch_size: int = 16  # crops per U-Net call (segmenter.api.BATCH_SIZE: the fastest here)
    margin: int | None = None  # None: the model's own
    views: Literal[1, 2, 4] | None = None  # crops of 2+ averaged over views; None: the model's own
    max_window: int = 88  # px at the models' scale: larger clusters get several windows
    second_pass: bool = True  # foreground no chromosome covers gets a box (pipeline.coverage)
    # large chromosomes segmented again alone, at the size the segmenter's config sets
    # (inference.resegment; pipeline.resegment)
    resegment: bool = True
    # crop windows of images whose chromosomes are bright (DAPI) whose 99.5th percentile lies
    # below this are scaled up to it (pipeline.run.brightened); None: crops as cut
    dim_crop_level: float | None = None


@dataclass
class StitchSettings:
    min_fragment_pixels: int = 20
    min_inside_fraction: float = 0.5
    min_segmenter_score: float | None = None  # None: the segmenter model's own
    uncertain_max_pixels: int = 200
    keep_sole_piece: bool = True  # a detector box's only piece is kept however unsure
    duplicate_iou: float = 0.5
    duplicate_containment: float = 0.8
    join_iou: float | None = 0.5
    redundant_coverage: float | None = 0.9  # kept ones this covered by the rest: dropped
    max_thickness: float | None = 1.6  # x the median chromosome's: a nucleus (pipeline.coverage)
    max_surround: float | None = None  # surroundings this bright, of its own: in a nucleus (ditto)


@dataclass
class TilingSettings:
    max_side: int = 1536
    tile: int = 1024
    overlap: int = 256


@dataclass
class BatchSettings:
    images: int = 8
    processes: int | Literal["auto"] = "auto"  # worker processes (pipeline.forked)


@dataclass
class PipelineConfig:
    polarity: Literal["auto", "bright", "dark"] = "auto"
    scale: float | Literal["auto"] = "auto"  # factor both stages see images at (pipeline.scale)
    scale_tolerance: float | None = None  # of the automatic scale; None: each segmenter's own
    bf16: bool | Literal["auto"] = "auto"  # both networks under bf16 autocast where fast
    detector: DetectorSettings = field(default_factory=DetectorSettings)
    segmenter: SegmenterSettings = field(default_factory=SegmenterSettings)
    stitch: StitchSettings = field(default_factory=StitchSettings)
    tiling: TilingSettings = field(default_factory=TilingSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)


def load_config(path: str | Path | None = None, **overrides) -> PipelineConfig:
    """The defaults, then the YAML file at ``path``, then ``overrides`` (section -> dict of
    settings); ``ConfigError`` (an ``InputError``) naming any unknown or ill-typed setting."""
    return core_config.load(PipelineConfig, path, overrides)
