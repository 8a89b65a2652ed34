"""Python API of the segmenter, for notebooks and the pipeline.

>>> from segmenter.api import load_model, segment
>>> model = load_model()                      # the shipped model (segmenter/pretrained/)
>>> labels, probabilities = segment(model, crops)   # crops: (N, 88, 88) float32

Crops are cut with ``segmenter.crops`` (margin ``model.margin``) from an image normalised by
``pipeline.imageio.normalise`` (float32 in [0, 1], chromosomes bright), as in training.
Labels: 0 background, 1 chromosome A, 2 chromosome B, 3 overlap.

A model folder holds ``config.yaml`` (the resolved training config; its ``inference`` section
sets how ``segment`` predicts) and ``weights.pt`` (a state_dict), plus ``metrics.json`` and
``train_log.csv`` from training.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline.core.device import select_device, use_bf16
from pipeline.core.modelfolder import ModelFolder
from segmenter.config import SegmenterConfig

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
# the shipped model for G-banded images (chromosomes dark, inverted by pipeline.imageio.normalise)
PRETRAINED_DARK = Path(__file__).resolve().parent / "pretrained_gband"
# the views averaged after the crop itself, as the (row, column) axes of (N, H, W) flipped (the
# same axes of (N, 4, H, W) probabilities, counted from the end): left-right, upside down, both
MIRRORS = ((-1,), (-2,), (-2, -1))
STAGE = "segmenter"
# crops per network call: on this CPU (2 cores, AMX) 16 crops run about a third faster per crop
# than 64 (bf16: 490 against 370 crops/s; float32 alike), their activations staying in cache;
# the results are the same at 16, 32 and 64 (benchmarks/bench_segmenter.py --batch-sizes)
BATCH_SIZE = 16


@dataclass
class Segmenter:
    """A loaded model: the network (eval mode, on ``device``; from ``load_model`` its inference
    form, ``pipeline.core.inference.inference_form``: bf16 when the config's ``inference.bf16``
    says so) and its resolved config."""

    net: object  # segmenter.model.UNet
    config: SegmenterConfig
    device: object  # torch.device

    @property
    def margin(self) -> int:
        """Crop margin (pixels) the model was trained with: use it for ``crops.window_for_box``."""
        return self.config.data.margin


def load_model(
    folder: str | Path | None = None, device: str | None = None, bf16: bool | str | None = None
) -> Segmenter:
    """Load a model folder (None: the shipped ``segmenter/pretrained``) onto ``device``;
    ``pipeline.core.errors.ModelError`` for a folder that is not a usable segmenter. ``bf16``
    (true, false or ``auto``) replaces the config's ``inference.bf16`` (None: keep it)."""
    from pipeline.core.inference import inference_form
    from segmenter.model import build_model

    model_folder = ModelFolder(PRETRAINED if folder is None else folder, STAGE, SegmenterConfig)
    net = model_folder.network(build_model)
    target = select_device(device)
    config = model_folder.config
    if bf16 is not None:
        config.inference.bf16 = bf16
    form = inference_form(net, use_bf16(config.inference.bf16, target))
    return Segmenter(form.to(target), config, target)


def segment(
    model: Segmenter, crops: np.ndarray, batch_size: int = BATCH_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Segment crops ``(N, H, W)`` float32 (normalised, normally 88x88).

    Returns labels ``(N, H, W)`` uint8 (argmax) and per-class probabilities ``(N, 4, H, W)``
    float32 (softmax). Runs under ``torch.no_grad``; every call of the network gets exactly
    ``batch_size`` crops (the last one padded with blank crops), so that a crop's result does not
    depend on which other crops it is segmented with (the CPU kernels differ by batch size).

    With ``inference.bf16`` in the model's config (``auto``: where
    ``pipeline.core.device.bf16_available``) the network runs in bf16 (``load_model`` made its
    bf16 form; a network given otherwise runs under bf16 autocast).

    With ``inference.views`` 2 or 4 in the model's config (the shipped model has 4), every crop
    whose labels hold any chromosome-B or overlap pixel (two or more chromosomes: on ADIR about a
    quarter of the crops) is segmented again mirrored (2: left-right; 4: also upside down and
    both, i.e. turned half; 1: not at all) and the predictions are averaged,
    each mirrored one's A and B exchanged where that matches the average so far better.
    """
    crops = np.asarray(crops, np.float32)
    if crops.ndim != 3 or min(crops.shape[1:], default=0) < 1:
        raise ValueError(f"crops must be (N, H, W), got shape {crops.shape}")
    probabilities, labels = _probabilities(model, crops, batch_size, with_labels=True)
    views = model.config.inference.views
    if views > 1:
        several = ((labels == 2) | (labels == 3)).any(axis=(1, 2))
        if several.any():
            chosen = crops[several]
            mirrors = MIRRORS[: views - 1]
            # every mirror image in one run of calls, so that one call at most is padded
            mirrored = np.concatenate([np.flip(chosen, axes) for axes in mirrors])
            mirrored, _ = _probabilities(model, mirrored, batch_size)
            total = probabilities[several]
            for view, axes in zip(np.split(mirrored, len(mirrors)), mirrors, strict=True):
                total = total + _aligned(np.flip(view, axes), total)
            probabilities[several] = total / views
            labels[several] = class_labels(probabilities[several])
    return labels, probabilities


def class_labels(probabilities: np.ndarray) -> np.ndarray:
    """``probabilities.argmax(axis=1)`` as uint8 ``(N, H, W)`` for ``(N, C, H, W)`` float
    probabilities (ties: the lower class), by one comparison per class: numpy's argmax along a
    middle axis walks the array with strides and takes about twice as long."""
    best = probabilities[:, 0].copy()
    labels = np.zeros(best.shape, np.uint8)
    for index in range(1, probabilities.shape[1]):
        scores = probabilities[:, index]
        labels[scores > best] = index
        np.maximum(best, scores, out=best)
    return labels


def _probabilities(
    model: Segmenter, crops: np.ndarray, batch_size: int, with_labels: bool = False
) -> tuple[np.ndarray, np.ndarray | None]:
    """Softmax ``(N, 4, H, W)`` float32 of the network for crops ``(N, H, W)`` float32, in calls
    of exactly ``batch_size`` crops, and (``with_labels``; else None) its ``class_labels``
    ``(N, H, W)`` uint8, taken call by call while the call's output is still in the cache."""
    import torch

    probabilities = np.zeros((len(crops), 4, *crops.shape[1:]), np.float32)
    labels = np.zeros((len(crops), *crops.shape[1:]), np.uint8) if with_labels else None
    batch = np.zeros((batch_size, 1, *crops.shape[1:]), np.float32)
    model.net.eval()
    bf16 = use_bf16(model.config.inference.bf16, model.device)
    with torch.no_grad(), torch.autocast(model.device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, len(crops), batch_size):
            count = min(batch_size, len(crops) - start)
            batch[:count, 0] = crops[start : start + count]
            batch[count:] = 0
            tensor = torch.from_numpy(batch).to(model.device)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
            output = torch.softmax(model.net(tensor).float(), dim=1).cpu().numpy()[:count]
            probabilities[start : start + count] = output
            if with_labels:
                labels[start : start + count] = class_labels(output)
    return probabilities, labels


def _aligned(probabilities: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``probabilities (N, 4, H, W)`` with A and B exchanged in the crops where the exchanged
    A/B maps agree better (summed products) with ``reference``'s."""

    def agreement(mine: int, theirs: int) -> np.ndarray:
        return (probabilities[:, mine] * reference[:, theirs]).sum(axis=(1, 2))

    swap = agreement(1, 2) + agreement(2, 1) > agreement(1, 1) + agreement(2, 2)
    aligned = probabilities.copy()
    aligned[swap, 1], aligned[swap, 2] = probabilities[swap, 2], probabilities[swap, 1]
    return aligned
