"""Training and evaluation data of the segmenter, built from an ADIR-format folder.

Every cluster of a labelled metaphase becomes a crop (``segmenter.crops`` geometry, the config's
``margin``) of the image normalised by ``pipeline.imageio.normalise`` (the pipeline's own input),
with its target from ``segmenter.targets``. Single-chromosome clusters also feed the synthetic
pairs (``segmenter.synthetic``). Splits are by slide (``pipeline.core.adir``).
"""

from __future__ import annotations

import math
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline.core import adir, imageio
from segmenter import crops, synthetic
from segmenter.config import DataSettings
from segmenter.targets import IGNORE, cluster_chromosomes, meet_end_to_end, target_from_instances


@dataclass
class Crops:
    """Cluster crops: ``images`` float32 ``(N, 88, 88)``, ``targets`` uint8 ``(N, 88, 88)`` (255
    = ignored pixels), ``counts`` int16 ``(N,)`` chromosomes per cluster, ``complete`` bool
    ``(N,)`` whether the crop comes from a complete karyotype (46,XX / 46,XY)."""

    images: np.ndarray
    targets: np.ndarray
    counts: np.ndarray
    complete: np.ndarray

    @staticmethod
    def concatenate(parts: list[Crops]) -> Crops:
        if not parts:
            return Crops(
                np.zeros((0, crops.CROP_SIZE, crops.CROP_SIZE), np.float32),
                np.zeros((0, crops.CROP_SIZE, crops.CROP_SIZE), np.uint8),
                np.zeros(0, np.int16),
                np.zeros(0, bool),
            )
        return Crops(
            *(
                np.concatenate(arrays)
                for arrays in zip(
                    *((p.images, p.targets, p.counts, p.complete) for p in parts), strict=True
                )
            )
        )


CLEANING_COUNTS = ("unlabelled_pieces", "crops_with_ignored_pixels", "end_to_end_clusters_left_out")


@dataclass
class Prepared:
    """Everything one set of metaphases gives: cluster crops, single chromosomes for synthetic
    clusters, measured overlap intensity ratios, and how often the labels were cleaned
    (``cleaning``: counts named in ``CLEANING_COUNTS``)."""

    crops: Crops
    singles: list[synthetic.Single] = field(default_factory=list)
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))
    cleaning: dict = field(default_factory=lambda: dict.fromkeys(CLEANING_COUNTS, 0))


def image_crops(
    image: np.ndarray,
    labels: np.ndarray,
    margin: int,
    ignore: np.ndarray | None = None,
    leave_out_end_to_end: bool = False,
    complete: bool = False,
    max_window: int | None = None,
) -> tuple[Crops, int]:
    """Crops of the clusters of one metaphase (``image`` normalised float32, ``labels`` K), and
    how many clusters were left out.

    ``ignore`` bool ``(H, W)``: pixels marked 255 (ignored) in the targets where they are
    background. ``leave_out_end_to_end``: leave out clusters in which two chromosomes touch
    without overlapping (in a translocation metaphase, possibly one chromosome with two classes).
    ``max_window``: a cluster whose window is wider is cut into windows of at most this side
    (``crops.windows_for_box``, as the pipeline cuts it); each window counts the chromosomes of
    the cluster that reach into it.
    """
    background = crops.background_level(image)
    images, targets, counts, left_out = [], [], [], 0
    for box, masks in cluster_chromosomes(labels):
        if leave_out_end_to_end and len(masks) >= 2 and meet_end_to_end(masks):
            left_out += 1
            continue
        target = target_from_instances(masks)
        if ignore is not None:
            target[ignore & (target == 0)] = IGNORE
        for geometry, _ in crops.windows_for_box(box, margin, max_window or math.inf):
            images.append(crops.crop_image(image, geometry, background))
            targets.append(crops.crop_labels(target, geometry))
            counts.append(_reaching(masks, geometry))
    if not images:
        return Crops.concatenate([]), left_out
    return (
        Crops(
            np.stack(images),
            np.stack(targets),
            np.asarray(counts, np.int16),
            np.full(len(images), complete, bool),
        ),
        left_out,
    )


def _reaching(masks: list[np.ndarray], geometry: crops.CropGeometry) -> int:
    """How many of the masks (bool ``(H, W)``) have pixels inside the window."""
    y0, x0 = max(geometry.y0, 0), max(geometry.x0, 0)
    y1, x1 = geometry.y0 + geometry.side, geometry.x0 + geometry.side
    return sum(bool(mask[y0:y1, x0:x1].any()) for mask in masks)


def _prepare_image(task: tuple[adir.AdirImage, int, int, int | None]) -> Prepared:
    """One metaphase's crops, singles and ratios, its labels cleaned as its karyotype says
    (DESIGN.md, "What K does not say"): where the karyotype is known and not complete,
    unlabelled bright pieces are ignored; where it has rearrangements, clusters whose
    chromosomes meet end to end are left out."""
    item, margin, context, max_window = task
    dapi, labels = adir.load(item)
    image = imageio.normalise(dapi)
    karyotype = adir.read_karyotype(item)
    suspect = karyotype.text is not None and not karyotype.complete
    ignore = adir.unlabelled_pieces(image, labels) if suspect else None
    cluster_crops, left_out = image_crops(
        image, labels, margin, ignore, karyotype.rearranged, karyotype.complete, max_window
    )
    touched = 0 if ignore is None else int((cluster_crops.targets == IGNORE).any(axis=(1, 2)).sum())
    pieces = 0 if ignore is None else cv2.connectedComponents(ignore.astype(np.uint8))[0] - 1
    return Prepared(
        cluster_crops,
        synthetic.singles_from_image(image, labels, context, ignore),
        synthetic.overlap_ratios(image, labels),
        dict(zip(CLEANING_COUNTS, (pieces, touched, left_out), strict=True)),
    )


def prepare(
    images: list[adir.AdirImage],
    margin: int,
    context: int,
    workers: int = 1,
    max_window: int | None = None,
) -> Prepared:
    """Crops, singles and overlap ratios of labelled metaphases (in ``workers`` processes);
    ``max_window`` as for ``image_crops``."""
    tasks = [(item, margin, context, max_window) for item in images]
    if workers > 1 and len(tasks) > 1:
        # spawned, not forked: after training the parent has idle thread pools whose locks a
        # forked worker inherits (a CPU run's final test evaluation once hung there for good)
        spawn = multiprocessing.get_context("spawn")
        # one OpenCV thread per worker: the workers share the cores
        with ProcessPoolExecutor(workers, spawn, cv2.setNumThreads, (1,)) as pool:
            parts = list(pool.map(_prepare_image, tasks, chunksize=4))
    else:
        parts = [_prepare_image(task) for task in tasks]
    return Prepared(
        Crops.concatenate([p.crops for p in parts]),
        [single for p in parts for single in p.singles],
        np.concatenate([p.ratios for p in parts]) if parts else np.zeros(0, np.float32),
        {key: sum(p.cleaning[key] for p in parts) for key in CLEANING_COUNTS},
    )


def augmenter(seed: int):
    """The albumentations pipeline of training crops (image float32 [0, 1], mask uint8): flips,
    rotations, small affine moves, and gain, contrast, gamma, noise and blur ranges meant to span
    other microscopes than ADIR's."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # no network check in every worker
    import albumentations as A

    return A.Compose(
        [
            A.HorizontalFlip(),
            A.VerticalFlip(),
            A.RandomRotate90(),
            A.Affine(
                scale=(0.9, 1.1),
                translate_percent=(-0.05, 0.05),
                rotate=(-20, 20),
                interpolation=cv2.INTER_LINEAR,
                mask_interpolation=cv2.INTER_NEAREST,
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                fill_mask=0,
                p=0.5,
            ),
            A.RandomBrightnessContrast(brightness_limit=0.25, contrast_limit=0.3, p=0.6),
            A.RandomGamma(gamma_limit=(50, 200), p=0.4),
            A.GaussNoise(std_range=(0.01, 0.08), p=0.4),
            A.GaussianBlur(blur_limit=(3, 7), sigma_limit=(0.3, 1.6), p=0.3),
        ],
        seed=seed,
    )


class TrainingSet:
    """A map-style dataset for ``torch.utils.data.DataLoader``: real training crops (clusters of
    two or more chromosomes repeated ``multi_repeat`` times) followed by
    ``synthetic_per_epoch`` synthetic clusters (``segmenter.synthetic``, settings from the data
    config's ``synthetic`` section) made afresh every epoch, all augmented.

    Items are ``(image (1, 88, 88) float32, target (88, 88) int64)`` tensors (255 = ignored);
    item ``i`` of epoch ``e`` is the same for the same ``seed`` (set ``epoch`` before each epoch).
    """

    def __init__(self, prepared: Prepared, data_config: DataSettings, seed: int):
        real = prepared.crops
        multi = np.flatnonzero(real.counts >= 2)
        repeat = data_config.multi_repeat
        self.crops = real
        self.order = np.concatenate([np.arange(len(real.counts))] + [multi] * (repeat - 1))
        self.singles = prepared.singles
        self.ratios = prepared.ratios
        enough = len(self.singles) >= 2
        self.synthetic = data_config.synthetic_per_epoch if enough else 0
        self.options = data_config.synthetic
        self.margin = data_config.margin
        self.seed = seed
        self.epoch = 0
        self._augment = None

    def __len__(self) -> int:
        return len(self.order) + self.synthetic

    def __getitem__(self, index: int):
        import torch

        rng = np.random.default_rng([self.seed, self.epoch, index])
        if index < len(self.order):
            image = self.crops.images[self.order[index]]
            target = self.crops.targets[self.order[index]]
        else:
            cluster = None
            while cluster is None:
                kinds = synthetic.draw_kinds(rng, self.options)[: len(self.singles) - 1]
                picks = rng.choice(len(self.singles), len(kinds) + 1, replace=False)
                cluster = synthetic.make_cluster(
                    [self.singles[i] for i in picks],
                    float(rng.choice(self.ratios)),
                    rng,
                    self.margin,
                    kinds,
                    self.options,
                )
            image, target = cluster
        if self._augment is None:
            self._augment = augmenter(self.seed)
        self._augment.set_random_seed(int(rng.integers(2**31)))
        out = self._augment(image=image, mask=target)
        image = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
        return torch.from_numpy(image[None]), torch.from_numpy(out["mask"].astype(np.int64))
