"""Where the networks run: device choice and whether bf16 autocast pays there."""

from __future__ import annotations

from pathlib import Path

from pipeline.core.errors import InputError


def select_device(name: str | None = None):
    """``torch.device``: ``name`` ("cpu", "cuda", "cuda:1"), else cuda when available, else cpu;
    InputError when CUDA is asked for and not there."""
    import torch

    if name is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if str(name).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device {name!r} asked for, but CUDA is not available here")
    try:
        return torch.device(name)
    except RuntimeError as error:
        raise InputError(f"unknown device {name!r}: {error}") from error


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
