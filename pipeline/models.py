"""The two trained stages as the pipeline calls them: plain functions on numpy arrays, so that
tests (and other engines) can pass their own.

``Models.detect(image)``: normalised ``(H, W)`` float32 -> boxes float32 ``(N, 4)`` x0, y0, x1, y1
(full-image pixel edges) and scores ``(N,)``.
``Models.segment(crops)``: ``(N, 88, 88)`` float32 -> class probabilities ``(N, 4, 88, 88)``
float32 (0 background, 1 chromosome A, 2 chromosome B, 3 overlap).
``Models.margin``: crop margin in pixels (the geometry the segmenter was trained with).
``Models.info``: what ``run.json`` records about them (folders, sha256 of the weights).
``Models.max_boxes``: the most boxes the detector returns for one image (None: no limit); an image
or tile that gets that many may hold more clusters than were found.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import InputError


@dataclass
class Models:
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    segment: Callable[[np.ndarray], np.ndarray]
    margin: int
    info: dict = field(default_factory=dict)
    max_boxes: int | None = None


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder(folder, pretrained: Path) -> Path:
    path = Path(folder) if folder else pretrained
    if not (path / "weights.pt").is_file():
        raise InputError(f"no trained model in {path} (expected config.yaml and weights.pt)")
    return path


def _describe(path: Path) -> dict:
    return {"folder": str(path), "weights_sha256": sha256(path / "weights.pt")}


def initial_weights(
    folder: str | Path, model_config: dict, resolve=lambda layout: layout
) -> tuple[dict, dict]:
    """Where a fine-tuning run starts, for either stage: the record ``{"folder",
    "weights_sha256"}`` of a model folder (``config.yaml`` + ``weights.pt``) and its state_dict
    (on the CPU). InputError when it is not a model folder, or when its network (``resolve`` of
    its config's ``model`` section) is not ``model_config``."""
    import torch
    import yaml

    folder = Path(folder)
    if not (folder / "weights.pt").is_file() or not (folder / "config.yaml").is_file():
        raise InputError(f"--init: {folder} is not a model folder (config.yaml + weights.pt)")
    theirs = resolve((yaml.safe_load((folder / "config.yaml").read_text()) or {}).get("model"))
    if theirs != model_config:
        raise InputError(
            f"--init: the network of {folder} ({theirs}) is not the config's ({model_config})"
        )
    state = torch.load(folder / "weights.pt", map_location="cpu", weights_only=True)
    return _describe(folder), state


def load_models(config: dict, device: str = "cpu") -> Models:
    """The detector and segmenter named in a pipeline config (None: the shipped ones); the crop
    margin is the segmenter's own unless the config sets ``segmenter.margin``."""
    from detector import api as detector_api
    from segmenter import api as segmenter_api

    detector_folder = _folder(config["detector"]["model"], detector_api.PRETRAINED)
    segmenter_folder = _folder(config["segmenter"]["model"], segmenter_api.PRETRAINED)
    try:
        detector_model = detector_api.load_model(detector_folder, device=device)
        segmenter_model = segmenter_api.load_model(segmenter_folder, device=device)
    except ValueError as error:  # the stages' ModelError: a one-line message
        raise InputError(str(error)) from error
    margin = config["segmenter"]["margin"]
    batch_size = int(config["segmenter"]["batch_size"])

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detector_api.detect(
            detector_model,
            image,
            score_threshold=config["detector"]["score_threshold"],
            input_scale=config["detector"]["input_scale"],
        )

    def segment(crops: np.ndarray) -> np.ndarray:
        return segmenter_api.segment(segmenter_model, crops, batch_size=batch_size)[1]

    return Models(
        detect=detect,
        segment=segment,
        margin=segmenter_model.margin if margin is None else int(margin),
        info={"detector": _describe(detector_folder), "segmenter": _describe(segmenter_folder)},
        max_boxes=detector_model.config["model"].get("box_detections_per_img"),
    )
