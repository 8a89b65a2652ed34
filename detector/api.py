"""Python API of the detector: load a model folder, find cluster boxes in normalised images.

A model folder (``pipeline.core.modelfolder``) holds ``config.yaml`` (the resolved training
config), ``weights.pt`` (state_dict only), ``thresholds.json`` (``score_threshold`` chosen on the
validation slides), and ``metrics.json`` (what ``chromoseg eval detector`` printed on its test
split).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from detector.config import DetectorConfig
from detector.model import Bf16Backbone, build_model
from pipeline.core.device import select_device, use_bf16
from pipeline.core.errors import ModelError
from pipeline.core.modelfolder import ModelFolder

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
STAGE, THRESHOLDS_FILE = "detector", "thresholds.json"
RED, GREEN, YELLOW = (0, 0, 255), (0, 200, 0), (0, 220, 255)  # BGR, for draw_boxes


@dataclass
class Detector:
    """A loaded detector: the network (eval mode), its config and its score threshold."""

    network: torch.nn.Module
    config: DetectorConfig
    score_threshold: float
    device: torch.device


def load_model(
    folder: str | Path | None = None, device: str | None = "cpu", bf16: bool | str = False
) -> Detector:
    """Load a model folder (None: the shipped ``detector/pretrained``) onto ``device`` (None:
    cuda when available); ``pipeline.core.errors.ModelError`` for a folder that is not a usable
    detector. ``bf16`` (true, false or ``auto``: where ``pipeline.core.device.bf16_available``):
    the backbone runs under bf16 autocast (``detector.model.Bf16Backbone``)."""
    model_folder = ModelFolder(
        PRETRAINED if folder is None else folder, STAGE, DetectorConfig, (THRESHOLDS_FILE,)
    )
    network = model_folder.network(build_model)
    threshold = model_folder.read_json(THRESHOLDS_FILE).get("score_threshold")
    if not isinstance(threshold, int | float):
        raise ModelError(f"{model_folder.path / THRESHOLDS_FILE} has no score_threshold")
    device = select_device(device)
    network.to(device).eval()
    if use_bf16(bf16, device):
        network.backbone = Bf16Backbone(network.backbone)
    return Detector(network, model_folder.config, float(threshold), device)


def detect_batch(
    model: Detector,
    images: list[np.ndarray],
    score_threshold: float | None = None,
    input_scale: float | None = None,
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Cluster boxes of several images in one forward pass.

    ``images``: ``(H, W)`` float32 in [0, 1], chromosomes bright (``pipeline.imageio.normalise``);
    sizes may differ. Returns per image ``(boxes float32 (N, 4) x0, y0, x1, y1 in that image's
    pixels, scores float32 (N,))``, sorted by falling score, keeping scores >= ``score_threshold``
    (default: the model's threshold; 0 keeps everything the network returns).

    ``input_scale`` (default: the config's ``model.input_scale``, 1.0 for the shipped model)
    resizes the images before the network; boxes come back in the original pixels. The shipped
    model was trained on chromosomes about 6-10 px wide (ADIR, 645x517): images whose
    chromosomes are much wider (e.g. G-banded brightfield at high resolution) work better at
    0.5 or so.
    """
    threshold = model.score_threshold if score_threshold is None else score_threshold
    scale = float(model.config.model.input_scale if input_scale is None else input_scale)
    if scale <= 0:
        raise ValueError(f"input_scale must be positive, not {scale}")
    tensors = []
    for image in images:
        image = np.asarray(image, np.float32)
        if image.ndim != 2:
            raise ValueError(f"detect takes (H, W) grey images, not shape {image.shape}")
        if scale != 1.0:
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
        tensors.append(torch.from_numpy(np.ascontiguousarray(image))[None].to(model.device))
    with torch.inference_mode():
        outputs = model.network(tensors)
    results = []
    for image, output in zip(images, outputs, strict=True):
        boxes = output["boxes"].cpu().numpy().astype(np.float32) / scale
        scores = output["scores"].cpu().numpy().astype(np.float32)
        height, width = np.asarray(image).shape
        boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
        keep = scores >= threshold
        results.append((boxes[keep], scores[keep]))
    return results


def detect(
    model: Detector,
    image: np.ndarray,
    score_threshold: float | None = None,
    input_scale: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Cluster boxes of one ``(H, W)`` float32 normalised image: ``(boxes (N, 4), scores (N,))``.

    See ``detect_batch``.
    """
    return detect_batch(model, [image], score_threshold, input_scale)[0]


def draw_boxes(image: np.ndarray, *box_sets: tuple[np.ndarray, tuple[int, int, int]]) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)`` picture of a normalised ``(H, W)`` float32 image with boxes drawn.

    Each box set is ``(boxes (N, 4) x0, y0, x1, y1 in image pixels, (blue, green, red))``; later
    sets are drawn over earlier ones. Lines are 1 px, thicker on images over 1,200 px.
    """
    grey = np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)
    picture = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    thickness = max(1, round(max(image.shape) / 800))
    for boxes, colour in box_sets:
        for x0, y0, x1, y1 in np.round(boxes).astype(int):
            cv2.rectangle(picture, (x0, y0), (x1 - 1, y1 - 1), colour, thickness)
    return picture
