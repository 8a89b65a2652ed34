"""The two trained stages as the pipeline calls them: plain functions on numpy arrays, so that
tests (and other engines) can pass their own.

``Models.detect(image)``: normalised ``(H, W)`` float32 -> boxes float32 ``(N, 4)`` x0, y0, x1, y1
(full-image pixel edges) and scores ``(N,)``.
``Models.segment(crops)``: ``(N, 88, 88)`` float32 -> class probabilities ``(N, 4, 88, 88)``
float32 (0 background, 1 chromosome A, 2 chromosome B, 3 overlap).
``Models.margin``: crop margin in pixels (the geometry the segmenter was trained with).
``Models.info``: what ``run.json`` records about them (folders, sha256 of the weights).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from pipeline import InputError


@dataclass
class Models:
    detect: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]
    segment: Callable[[np.ndarray], np.ndarray]
    margin: int
    info: dict = field(default_factory=dict)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _folder(stage, folder) -> Path:
    path = Path(folder) if folder else Path(stage.__file__).resolve().parent / "pretrained"
    if not (path / "weights.pt").is_file():
        raise InputError(f"no trained model in {path} (expected config.yaml and weights.pt)")
    return path


def _describe(path: Path) -> dict:
    return {"folder": str(path), "weights_sha256": sha256(path / "weights.pt")}


def crop_margin(segmenter_folder: Path) -> int:
    """The crop margin a segmenter model folder was trained with (its config.yaml)."""
    config = yaml.safe_load((segmenter_folder / "config.yaml").read_text()) or {}
    for section in ("crops", "crop", "data"):
        value = (config.get(section) or {}).get("margin")
        if value is not None:
            return int(value)
    if "margin" in config:
        return int(config["margin"])
    raise InputError(f"{segmenter_folder}/config.yaml gives no crop margin: set segmenter.margin")


def load_models(config: dict, device: str = "cpu") -> Models:
    """The detector and segmenter named in a pipeline config (None: the shipped ones)."""
    import detector
    import segmenter

    detector_folder = _folder(detector, config["detector"]["model"])
    segmenter_folder = _folder(segmenter, config["segmenter"]["model"])
    detector_model = detector.load_model(detector_folder, device=device)
    segmenter_model = segmenter.load_model(segmenter_folder, device=device)
    margin = config["segmenter"]["margin"]

    def detect(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return detector.detect(detector_model, image)

    def segment(crops: np.ndarray) -> np.ndarray:
        return segmenter.segment(segmenter_model, crops)[1]

    return Models(
        detect=detect,
        segment=segment,
        margin=int(margin) if margin is not None else crop_margin(segmenter_folder),
        info={"detector": _describe(detector_folder), "segmenter": _describe(segmenter_folder)},
    )
