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
import yaml

from pipeline import InputError

PRETRAINED = Path(__file__).resolve().parent / "pretrained"
CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.yaml", "weights.pt", "metrics.json"
LOG_FILE, SPLIT_FILE = "train_log.csv", "split.json"


class ModelError(InputError):
    """A model folder that cannot be loaded, with a one-line message for the user."""


@dataclass
class Segmenter:
    """A loaded model: the network (eval mode, on ``device``; from ``load_model`` its inference
    form, see ``segmenter.model.for_inference``) and its resolved config."""

    net: object  # segmenter.model.UNet
    config: dict
    device: object  # torch.device

    @property
    def margin(self) -> int:
        """Crop margin (pixels) the model was trained with: use it for ``crops.window_for_box``."""
        return int(self.config["data"]["margin"])


def select_device(name: str | None = None):
    """``torch.device``: ``name`` ("cpu", "cuda", "cuda:1"), else cuda when available, else cpu."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError(f"device {name!r} asked for, but CUDA is not available here")
    return torch.device(name)


def bf16_available(device) -> bool:
    """Whether bf16 autocast is fast on ``device`` (a ``torch.device``): CUDA with bf16 support,
    or a CPU with AMX or AVX-512 BF16 (read from ``/proc/cpuinfo``; elsewhere, False)."""
    import torch

    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type != "cpu":
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(flag in flags.split() for flag in ("amx_bf16", "avx512_bf16"))


def use_bf16(setting, device) -> bool:
    """A config's ``bf16`` setting (``auto``, true or false) resolved for ``device``."""
    if setting in (None, "auto"):
        return bf16_available(device)
    return bool(setting)


def save_model(net, config: dict, folder: str | Path) -> Path:
    """Write ``config.yaml`` and ``weights.pt`` (state_dict, float32, on CPU) into ``folder``."""
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / CONFIG_FILE).write_text(yaml.safe_dump(config, sort_keys=False))
    state = {key: value.detach().cpu() for key, value in net.state_dict().items()}
    torch.save(state, folder / WEIGHTS_FILE)
    return folder


def load_model(folder: str | Path | None = None, device: str | None = None) -> Segmenter:
    """Load a model folder (None: the shipped ``segmenter/pretrained``) onto ``device``."""
    import torch

    from segmenter.model import build_model, for_inference

    folder = PRETRAINED if folder is None else Path(folder)
    for name in (CONFIG_FILE, WEIGHTS_FILE):
        if not (folder / name).is_file():
            raise ModelError(f"not a segmenter model folder: {folder} (no {name})")
    config = yaml.safe_load((folder / CONFIG_FILE).read_text())
    try:
        net = build_model(config["model"])
        net.load_state_dict(torch.load(folder / WEIGHTS_FILE, map_location="cpu"))
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise ModelError(f"cannot load the segmenter model in {folder}: {error}") from error
    target = select_device(device)
    return Segmenter(for_inference(net).to(target), config, target)


def segment(
    model: Segmenter, crops: np.ndarray, batch_size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Segment crops ``(N, H, W)`` float32 (normalised, normally 88x88).

    Returns labels ``(N, H, W)`` uint8 (argmax) and per-class probabilities ``(N, 4, H, W)``
    float32 (softmax). Runs under ``torch.no_grad``; every call of the network gets exactly
    ``batch_size`` crops (the last one padded with blank crops), so that a crop's result does not
    depend on which other crops it is segmented with (the CPU kernels differ by batch size).

    With ``inference.bf16`` in the model's config (``auto``: where ``bf16_available``) the
    network runs under bf16 autocast (off when the setting is absent).

    With ``inference.flip_average`` in the model's config (the shipped model has it), every crop
    whose labels hold any chromosome-B or overlap pixel (two or more chromosomes: on ADIR about a
    quarter of the crops) is segmented once more, mirrored left-right, and the two predictions are
    averaged, the mirrored one's A and B exchanged where that matches the first one better.
    """
    crops = np.asarray(crops, np.float32)
    if crops.ndim != 3 or min(crops.shape[1:], default=0) < 1:
        raise ValueError(f"crops must be (N, H, W), got shape {crops.shape}")
    probabilities = _probabilities(model, crops, batch_size)
    if (model.config.get("inference") or {}).get("flip_average", False):
        labels = probabilities.argmax(axis=1)
        several = ((labels == 2) | (labels == 3)).any(axis=(1, 2))
        if several.any():
            first = probabilities[several]
            mirrored = crops[several][:, :, ::-1]
            # a quarter of the batch: about as many crops as need the second pass
            mirrored = _probabilities(model, mirrored, max(1, batch_size // 4))[..., ::-1]
            probabilities[several] = (first + _aligned(mirrored, first)) / 2
    return probabilities.argmax(axis=1).astype(np.uint8), probabilities


def _probabilities(model: Segmenter, crops: np.ndarray, batch_size: int) -> np.ndarray:
    """Softmax ``(N, 4, H, W)`` float32 of the network for crops ``(N, H, W)`` float32, in calls
    of exactly ``batch_size`` crops."""
    import torch

    probabilities = np.zeros((len(crops), 4, *crops.shape[1:]), np.float32)
    batch = np.zeros((batch_size, 1, *crops.shape[1:]), np.float32)
    model.net.eval()
    bf16 = use_bf16((model.config.get("inference") or {}).get("bf16", False), model.device)
    with torch.no_grad(), torch.autocast(model.device.type, torch.bfloat16, enabled=bf16):
        for start in range(0, len(crops), batch_size):
            count = min(batch_size, len(crops) - start)
            batch[:count, 0] = crops[start : start + count]
            batch[count:] = 0
            tensor = torch.from_numpy(batch).to(model.device)
            tensor = tensor.contiguous(memory_format=torch.channels_last)
            output = torch.softmax(model.net(tensor).float(), dim=1).cpu().numpy()
            probabilities[start : start + count] = output[:count]
    return probabilities


def _aligned(probabilities: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """``probabilities (N, 4, H, W)`` with A and B exchanged in the crops where the exchanged
    A/B maps agree better (summed products) with ``reference``'s."""

    def agreement(mine: int, theirs: int) -> np.ndarray:
        return (probabilities[:, mine] * reference[:, theirs]).sum(axis=(1, 2))

    swap = agreement(1, 2) + agreement(2, 1) > agreement(1, 1) + agreement(2, 2)
    aligned = probabilities.copy()
    aligned[swap, 1], aligned[swap, 2] = probabilities[swap, 2], probabilities[swap, 1]
    return aligned
