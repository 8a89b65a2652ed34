"""Training and evaluation data of the detector: normalised images with their cluster boxes.

A ``Sample`` is one metaphase: ``image`` ``(H, W)`` float32 in [0, 1] from
``pipeline.imageio.normalise`` (chromosomes bright), ``boxes`` float32 ``(N, 4)`` x0, y0, x1, y1
(pixel edges) of the clusters of its K image (``pipeline.core.adir.cluster_boxes``: 8-connected
components of K > 0 with >= 20 pixels; nuclei and debris are 0 in K, so they are background).

Augmentation (albumentations, image and boxes together, ``augment`` section of the config): flips,
90-degree rotations, scale, a fixed-size random crop (zero padding where the image is smaller),
brightness, contrast, gamma, Gaussian noise, blur, and ``SimulatedInversion``: what ``normalise``
makes of a dark-on-bright image (brightfield G-banding, inverted DAPI) — the image is inverted,
given uneven illumination and a lifted background, and normalised again with polarity "auto".
"""

from __future__ import annotations

from dataclasses import dataclass

import albumentations as A
import cv2
import numpy as np
import torch

from detector.config import AugmentSettings
from pipeline.core import adir
from pipeline.core.imageio import normalise


@dataclass
class Sample:
    """One metaphase: normalised image (H, W) float32, cluster boxes (N, 4) float32 xyxy."""

    name: str
    image: np.ndarray
    boxes: np.ndarray


def painted_out(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``image`` with the bright chromosome-sized pieces that K leaves unlabelled
    (``adir.unlabelled_pieces``) painted with the background level (the image's median): a
    chromosome K forgot is not taught as background."""
    pieces = adir.unlabelled_pieces(image, labels)
    if not pieces.any():
        return image
    out = image.copy()
    out[pieces] = np.float32(np.median(image))
    return out


def load_samples(
    images: list[adir.AdirImage], min_pixels: int = adir.MIN_PIXELS, paint_out: bool = True
) -> tuple[list[Sample], int]:
    """Normalised DAPI images and their cluster boxes (the images must be labelled). With
    ``paint_out``, where an image's ``Case Info`` says chromosomes are missing from K or not a
    complete karyotype (DESIGN.md, "What K does not say"), its unlabelled pieces are painted out
    (``painted_out``). Returns the samples and how many images were painted."""
    samples, painted = [], 0
    for item in images:
        dapi, labels = adir.load(item)
        if labels is None:
            raise adir.DatasetError(f"{item.dapi_path}: no label image (*K.tif) beside it")
        image = normalise(dapi)
        karyotype = adir.read_karyotype(item)
        if paint_out and karyotype.text is not None and not karyotype.complete:
            cleaned = painted_out(image, labels)
            painted += cleaned is not image
            image = cleaned
        samples.append(Sample(item.name, image, adir.cluster_boxes(labels, min_pixels)))
    return samples, painted


class SimulatedInversion(A.ImageOnlyTransform):
    """The detector's view of a dark-on-bright image: invert a chromosome-bright [0, 1] image,
    add a smooth illumination gradient and a background level, and ``normalise`` it back.
    """

    def __init__(self, background=(0.0, 0.3), gradient=(0.0, 0.3), p: float = 0.5):
        super().__init__(p=p)
        self.background = background
        self.gradient = gradient

    def apply(self, img, **params):
        rng = self.random_generator
        height, width = img.shape[:2]
        rows, cols = np.mgrid[0:height, 0:width].astype(np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        ramp = np.cos(angle) * cols / width + np.sin(angle) * rows / height
        illumination = 1.0 + rng.uniform(*self.gradient) * (ramp - ramp.mean())
        raw = (1.0 - img * (1.0 - rng.uniform(*self.background))) * illumination
        return normalise(raw, polarity="auto").reshape(img.shape)


def build_augmentation(config: AugmentSettings, seed: int) -> A.Compose:
    """The training augmentation of an ``augment`` config section (boxes in pascal_voc)."""
    crop = config.crop_size
    low, high = config.scale
    return A.Compose(
        [
            A.HorizontalFlip(p=0.5),
            A.VerticalFlip(p=0.5),
            A.RandomRotate90(p=0.5),
            A.RandomScale(scale_limit=(low - 1.0, high - 1.0), p=config.scale_p),
            A.PadIfNeeded(crop, crop, position="random", border_mode=cv2.BORDER_CONSTANT, fill=0),
            A.RandomCrop(crop, crop),
            SimulatedInversion(p=config.inversion_p),
            A.RandomBrightnessContrast(
                config.brightness, config.contrast, ensure_safe_range=True, p=0.5
            ),
            A.RandomGamma(gamma_limit=tuple(config.gamma), p=0.5),
            A.GaussNoise(std_range=tuple(config.noise_std), p=0.3),
            A.GaussianBlur(blur_limit=(3, 5), p=0.2),
        ],
        bbox_params=A.BboxParams(
            format="pascal_voc",
            label_fields=["labels"],
            min_visibility=config.min_visibility,
            min_area=config.min_box_area,
            clip=True,
        ),
        seed=seed,
    )


def to_target(boxes: np.ndarray) -> dict[str, torch.Tensor]:
    """torchvision detection target of (N, 4) xyxy boxes, all of class 1 (cluster)."""
    boxes = torch.as_tensor(np.asarray(boxes, np.float32).reshape(-1, 4))
    return {"boxes": boxes, "labels": torch.ones(len(boxes), dtype=torch.int64)}


class DetectionDataset(torch.utils.data.Dataset):
    """(image tensor (1, H, W) float32, target dict) pairs, augmented when ``transform`` is set."""

    def __init__(self, samples: list[Sample], transform: A.Compose | None = None):
        self.samples = samples
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int):
        sample = self.samples[index]
        image, boxes = sample.image, sample.boxes
        if self.transform is not None:
            out = self.transform(image=image, bboxes=boxes, labels=np.ones(len(boxes), np.int64))
            image = np.clip(out["image"], 0.0, 1.0).astype(np.float32)
            boxes = np.asarray(out["bboxes"], np.float32).reshape(-1, 4)
        return torch.from_numpy(np.ascontiguousarray(image))[None], to_target(boxes)


def collate(batch):
    """Detection batches are tuples of images and of targets (sizes may differ)."""
    return tuple(zip(*batch, strict=True))
