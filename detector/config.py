"""The detector's settings: ``DetectorConfig``, whose defaults are the shipped recipe that
``configs/detector.yaml`` spells out with comments (a test keeps the two equal). Read with
``load_config``; a model folder's ``config.yaml`` is the resolved config of its training run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core import config as core_config


@dataclass
class ModelSettings:
    """The Faster R-CNN (``detector.model.build_model``)."""

    backbone: str = "small"  # detector.model.BACKBONES
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])  # small backbone
    out_channels: int = 64  # small backbone: channels of its stride-8 feature map
    anchor_sizes: list[int] = field(default_factory=lambda: [16, 32, 64, 128, 256])
    aspect_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    image_mean: list[float] = field(default_factory=lambda: [0.08])
    image_std: list[float] = field(default_factory=lambda: [0.15])
    input_scale: float = 1.0  # images are rescaled by this before the network
    representation_size: int = 256
    rpn_pre_nms_top_n_train: int = 2000
    rpn_post_nms_top_n_train: int = 600
    rpn_pre_nms_top_n_test: int = 1000
    rpn_post_nms_top_n_test: int = 200
    box_score_thresh: float = 0.05
    box_nms_thresh: float = 0.5
    roi_sampling_ratio: int = 1
    box_detections_per_img: int = 200


@dataclass
class AugmentSettings:
    """Training augmentation (``detector.data.build_augmentation``)."""

    crop_size: int = 512
    scale: tuple[float, float] = (0.5, 2.0)
    scale_p: float = 0.7
    inversion_p: float = 0.3
    brightness: float = 0.2
    contrast: float = 0.3
    gamma: tuple[float, float] = (70, 150)
    noise_std: tuple[float, float] = (0.01, 0.06)
    min_visibility: float = 0.3
    min_box_area: float = 20


@dataclass
class TrainSettings:
    epochs: int = 100
    batch_size: int = 4
    lr: float = 0.002
    weight_decay: float = 0.0001
    warmup_steps: int = 100
    clip_grad_norm: float | None = 10.0
    workers: int = 4
    bf16: bool | Literal["auto"] = "auto"  # bf16 autocast where fast (pipeline.core.device)
    # the weights kept in the model folder: the best validation epoch's, or the last epoch's (a
    # fine-tune for material the validation score does not measure)
    keep: Literal["best", "last"] = "best"
    # chromosomes K leaves unlabelled painted with the background in the training and validation
    # images where Case Info says K is incomplete (detector.data.painted_out)
    paint_out: bool = True
    init: dict[str, str] | None = None  # set by training: the model folder fine-tuned from


@dataclass
class DetectorConfig:
    seed: int = 0
    model: ModelSettings = field(default_factory=ModelSettings)
    augment: AugmentSettings = field(default_factory=AugmentSettings)
    train: TrainSettings = field(default_factory=TrainSettings)


def load_config(path: str | Path | None = None, **overrides) -> DetectorConfig:
    """A detector config: the defaults, the YAML file at ``path``, then ``overrides``;
    ``ConfigError`` naming any unknown or ill-typed setting."""
    return core_config.load(DetectorConfig, path, overrides)
