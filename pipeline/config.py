"""The pipeline's settings: ``DEFAULTS`` (documented, key by key, in ``configs/pipeline.yaml``,
which a test keeps equal to it) and a user's YAML file merged over them."""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

from pipeline.core.errors import InputError

DEFAULTS = {
    "polarity": "auto",
    "detector": {"model": None, "score_threshold": None, "input_scale": None},
    "segmenter": {"model": None, "batch_size": 64, "margin": None},
    "stitch": {
        "min_fragment_pixels": 20,
        "min_inside_fraction": 0.5,
        "min_segmenter_score": 0.9,
        "uncertain_max_pixels": 200,
        "duplicate_iou": 0.5,
        "duplicate_containment": 0.8,
    },
    "tiling": {"max_side": 1536, "tile": 1024, "overlap": 256},
    "batch": {"images": 8},
}


def merged(base: dict, override: dict, where: str = "") -> dict:
    """``base`` with ``override``'s values; InputError for keys ``base`` does not have."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if key not in base:
            raise InputError(f"unknown pipeline setting {where}{key!r}")
        if isinstance(base[key], dict):
            if not isinstance(value, dict):
                raise InputError(f"pipeline setting {where}{key!r} must be a mapping")
            out[key] = merged(base[key], value, f"{where}{key}.")
        else:
            out[key] = value
    return out


def load_config(path: str | Path | None = None, **overrides) -> dict:
    """The defaults, merged with the YAML file at ``path`` and then with ``overrides``
    (section -> dict of settings)."""
    config = copy.deepcopy(DEFAULTS)
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as error:
            raise InputError(f"cannot read config {path}: {error}") from error
        if not isinstance(data, dict):
            raise InputError(f"config {path} must be a mapping of settings")
        config = merged(config, data)
    return merged(config, overrides)
