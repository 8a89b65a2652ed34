"""Training and evaluation data of the segmenter, built from an ADIR-format folder.

Every cluster of a labelled metaphase becomes a crop (``segmenter.crops`` geometry, the config's
``margin``) of the image normalised by ``pipeline.imageio.normalise`` (the pipeline's own input),
with its target from ``segmenter.targets``. Single-chromosome clusters also feed the synthetic
pairs (``segmenter.synthetic``). Splits are by slide (``pipeline.adir``).
"""

from __future__ import annotations

import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import cv2
import numpy as np

from pipeline import adir, imageio
from segmenter import crops, synthetic
from segmenter.targets import cluster_targets


@dataclass
class Crops:
    """Cluster crops: ``images`` float32 ``(N, 88, 88)``, ``targets`` uint8 ``(N, 88, 88)``,
    ``counts`` int16 ``(N,)`` chromosomes per cluster."""

    images: np.ndarray
    targets: np.ndarray
    counts: np.ndarray

    @staticmethod
    def concatenate(parts: list[Crops]) -> Crops:
        if not parts:
            return Crops(
                np.zeros((0, crops.CROP_SIZE, crops.CROP_SIZE), np.float32),
                np.zeros((0, crops.CROP_SIZE, crops.CROP_SIZE), np.uint8),
                np.zeros(0, np.int16),
            )
        return Crops(
            *(
                np.concatenate(arrays)
                for arrays in zip(*((p.images, p.targets, p.counts) for p in parts), strict=True)
            )
        )


@dataclass
class Prepared:
    """Everything one set of metaphases gives: cluster crops, single chromosomes for synthetic
    pairs, and measured overlap intensity ratios."""

    crops: Crops
    singles: list[synthetic.Single] = field(default_factory=list)
    ratios: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32))


def image_crops(image: np.ndarray, labels: np.ndarray, margin: int) -> Crops:
    """Crops of every cluster of one metaphase (``image`` normalised float32, ``labels`` K)."""
    background = crops.background_level(image)
    images, targets, counts = [], [], []
    for box, target, count in cluster_targets(labels):
        geometry = crops.window_for_box(box, margin)
        images.append(crops.crop_image(image, geometry, background))
        targets.append(crops.crop_labels(target, geometry))
        counts.append(count)
    return Crops.concatenate(
        [Crops(np.stack(images), np.stack(targets), np.asarray(counts, np.int16))] if images else []
    )


def _prepare_image(task: tuple[adir.AdirImage, int, int]) -> Prepared:
    item, margin, context = task
    cv2.setNumThreads(1)
    dapi, labels = adir.load(item)
    image = imageio.normalise(dapi)
    return Prepared(
        image_crops(image, labels, margin),
        synthetic.singles_from_image(image, labels, context),
        synthetic.overlap_ratios(image, labels),
    )


def prepare(images: list[adir.AdirImage], margin: int, context: int, workers: int = 1) -> Prepared:
    """Crops, singles and overlap ratios of labelled metaphases (in ``workers`` processes)."""
    tasks = [(item, margin, context) for item in images]
    if workers > 1 and len(tasks) > 1:
        # spawned, not forked: after training the parent has idle thread pools whose locks a
        # forked worker inherits (a CPU run's final test evaluation once hung there for good)
        with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
            parts = list(pool.map(_prepare_image, tasks, chunksize=4))
    else:
        parts = [_prepare_image(task) for task in tasks]
    return Prepared(
        Crops.concatenate([p.crops for p in parts]),
        [single for p in parts for single in p.singles],
        np.concatenate([p.ratios for p in parts]) if parts else np.zeros(0, np.float32),
    )


def augmenter(seed: int):
    """The albumentations pipeline of training crops (image float32 [0, 1], mask uint8)."""
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
            A.RandomBrightnessContrast(brightness_limit=0.15, contrast_limit=0.15, p=0.5),
            A.RandomGamma(gamma_limit=(80, 125), p=0.3),
            A.GaussNoise(std_range=(0.01, 0.05), p=0.3),
            A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 1.0), p=0.2),
        ],
        seed=seed,
    )


class TrainingSet:
    """A map-style dataset for ``torch.utils.data.DataLoader``: real training crops (clusters of
    two or more chromosomes repeated ``multi_repeat`` times) followed by
    ``synthetic_per_epoch`` synthetic pairs made afresh every epoch, all augmented.

    Items are ``(image (1, 88, 88) float32, target (88, 88) int64)`` tensors; item ``i`` of epoch
    ``e`` is the same for the same ``seed`` (set ``epoch`` before each epoch).
    """

    def __init__(self, prepared: Prepared, data_config: dict, seed: int):
        real = prepared.crops
        multi = np.flatnonzero(real.counts >= 2)
        repeat = int(data_config["multi_repeat"])
        self.crops = real
        self.order = np.concatenate([np.arange(len(real.counts))] + [multi] * (repeat - 1))
        self.singles = prepared.singles
        self.ratios = prepared.ratios
        self.synthetic = int(data_config["synthetic_per_epoch"]) if len(self.singles) > 1 else 0
        self.margin = int(data_config["margin"])
        self.touch_fraction = float(data_config["touch_fraction"])
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
            pair = None
            while pair is None:
                first, second = rng.choice(len(self.singles), 2, replace=False)
                pair = synthetic.make_pair(
                    self.singles[first],
                    self.singles[second],
                    float(rng.choice(self.ratios)),
                    rng,
                    self.margin,
                    self.touch_fraction,
                )
            image, target = pair
        if self._augment is None:
            self._augment = augmenter(self.seed)
        self._augment.set_random_seed(int(rng.integers(2**31)))
        out = self._augment(image=image, mask=target)
        image = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
        return torch.from_numpy(image[None]), torch.from_numpy(out["mask"].astype(np.int64))
