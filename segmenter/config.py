"""The segmenter's settings: ``SegmenterConfig``, whose defaults are the shipped recipe that
``configs/segmenter.yaml`` spells out with comments (a test keeps the two equal). Read with
``load_config``; a model folder's ``config.yaml`` is the resolved config of its training run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pipeline.core import config as core_config

KINDS = ("cross", "touch", "side_by_side", "end_to_end", "parallel")  # segmenter.synthetic
DEFAULT_LAYOUT = {  # no preset
    "channels": [16, 32, 64, 128, 128],
    "norm": "batch",
    "skip": "add",
    "distance_head": False,
}


@dataclass
class Layout:
    """The network (``segmenter.model``): ``channels`` (the width of every level; length - 1
    poolings), ``norm``, ``skip`` and ``distance_head`` (an extra training output); those left
    None come from the ``preset``, or without one from ``DEFAULT_LAYOUT``
    (``segmenter.model.resolve`` fills them in)."""

    preset: str | None = None
    channels: list[int] | None = None
    norm: Literal["batch", "none"] | None = None
    skip: Literal["concat", "add"] | None = None
    distance_head: bool | None = None


@dataclass
class SyntheticOptions:
    """How synthetic clusters are made (``segmenter.synthetic``): how each added chromosome
    meets one already there (``kinds``, relative weights), chromosomes per cluster, the overlap
    brightness models, banding (dark and bright bands), the pasted chromosomes' scale, whether
    the first chromosome is cut out and pasted back too (``exact_edges``), the blur of the
    drawn cluster (``edge_blur``, Gaussian sigma range in source pixels) and the share of
    chromosomes bent along their length (``bend_share``, by ``bend_angle`` radians)."""

    kinds: dict[str, float] = field(
        default_factory=lambda: {
            "cross": 0.5,
            "touch": 0.2,
            "side_by_side": 0.15,
            "end_to_end": 0.05,
            "parallel": 0.1,
        }
    )
    cluster_sizes: dict[int, float] = field(
        default_factory=lambda: {1: 0.08, 2: 0.67, 3: 0.13, 4: 0.08, 5: 0.04}
    )
    additive_share: float = 0.5
    additive_gain: tuple[float, float] = (0.6, 1.0)
    band_fraction: float = 0.3
    band_depth: tuple[float, float] = (0.2, 0.6)
    bright_bands: float = 0.0  # share of the bands that brighten instead of darken
    band_width: tuple[float, float] = (1.5, 4.0)  # px, across the long axis
    size_range: tuple[float, float] = (0.8, 1.25)
    exact_edges: bool = True
    edge_blur: tuple[float, float] = (0.0, 1.0)
    bend_share: float = 0.0  # share of the chromosomes drawn bent (``synthetic.bent``)
    bend_angle: tuple[float, float] = (0.4, 1.9)  # radians the far arm turns by, either way

    def __post_init__(self):
        unknown = sorted(set(self.kinds) - set(KINDS))
        if unknown:
            raise ValueError(f"unknown kinds {unknown}; known: {list(KINDS)}")
        if not self.kinds or not self.cluster_sizes or min(self.cluster_sizes) < 1:
            raise ValueError("kinds and cluster_sizes need at least one entry, sizes from 1")


@dataclass
class DataSettings:
    margin: int = 4  # pixels around the cluster box before squaring (crop geometry)
    context: int = 40  # pixels kept around single chromosomes used for synthetic clusters
    multi_repeat: int = 8  # real clusters of 2+ chromosomes appear this many times per epoch
    synthetic_per_epoch: int = 5000
    synthetic: SyntheticOptions = field(default_factory=SyntheticOptions)
    default_overlap_ratio: float = 1.19  # only when the training data has no overlap to measure
    val_synthetic: int = 1000
    test_synthetic: int = 2000
    singles: list[Path] = field(default_factory=list)  # more single-chromosome folders
    singles_repeat: int = 1  # each chromosome of those folders is this many training singles
    # px: a cluster whose window is wider is cut into overlapping windows of this size, as the
    # pipeline cuts it (segmenter.max_window); None: one window, however large
    max_window: int | None = None


@dataclass
class TrainSettings:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.002
    weight_decay: float = 0.0001
    dice_weight: float = 1.0
    contact_weight: float = 4.0
    distance_weight: float = 0.0  # needs model.distance_head
    workers: int = 2
    bf16: bool | Literal["auto"] = "auto"
    # the weights kept in the model folder: the best validation epoch's, or the last epoch's (a
    # fine-tune for material the validation score does not measure)
    keep: Literal["best", "last"] = "best"
    init: dict[str, str] | None = None  # set by training: the model folder fine-tuned from


@dataclass
class InferenceSettings:
    views: Literal[1, 2, 4] = 4  # crops of 2+ chromosomes: the crop and its mirror images averaged
    bf16: bool | Literal["auto"] = False
    # the pipeline drops a small piece (stitch.uncertain_max_pixels) whose mean class probability
    # is below this: how sure of a fragment a model is depends on the model (pipeline.stitch)
    min_segmenter_score: float = 0.7
    # with the pipeline's automatic scale, images whose measured chromosome width is within this
    # factor of ADIR's are seen as they are, others resized to it (pipeline.scale); 1.0: all
    # resized. The images this model is for decide it (chosen on val material)
    scale_tolerance: float = 1.3  # pipeline.scale.TOLERANCE's, which a stage may not import
    # the same for images whose chromosomes are thicker than ADIR's median (None: as
    # scale_tolerance): shrinking such an image loses the gaps between touching chromosomes
    scale_tolerance_thick: float | None = 1.7
    # the pipeline segments again, alone, chromosomes at least this many times the image's median
    # area, and keeps the pieces they split into (pipeline.resegment); None: never. A model that
    # cuts single chromosomes apart (at G-bands) must not (chosen on val material)
    resegment: float | None = 1.2

    @staticmethod
    def upgrade(settings: dict) -> dict:
        """Configs before ``views`` said it all: ``flip_average: false`` is ``views: 1``."""
        if settings.pop("flip_average", True) is False:
            settings["views"] = 1
        return settings


@dataclass
class SegmenterConfig:
    seed: int = 0
    model: Layout = field(default_factory=Layout)
    data: DataSettings = field(default_factory=DataSettings)
    train: TrainSettings = field(default_factory=TrainSettings)
    inference: InferenceSettings = field(default_factory=InferenceSettings)


def load_config(path: str | Path | None = None, **overrides) -> SegmenterConfig:
    """A segmenter config: the defaults, the YAML file at ``path``, then ``overrides``; its
    ``model`` section resolved (``segmenter.model.resolve``); ``ConfigError`` if unusable."""
    from pipeline.core.errors import ConfigError
    from segmenter.model import resolve

    config = core_config.load(SegmenterConfig, path, overrides)
    try:
        config.model = resolve(config.model)
    except ValueError as error:
        raise ConfigError(f"{path}: {error}") from None
    return config
