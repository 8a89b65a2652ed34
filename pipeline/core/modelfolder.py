"""Model folders, the one on-disk form of a trained stage (after stardist's ``base.py`` and
segmentation_models_pytorch's ``from_pretrained``).

A folder holds ``config.yaml`` (the resolved training config: its ``model`` section builds the
network), ``weights.pt`` (a state_dict, float32, on the CPU) and whatever the stage adds
(``metrics.json``, ``train_log.csv``, ``split.json``, the detector's ``thresholds.json``). Any
folder that cannot be used raises ``ModelError`` with a one-line message.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path

import yaml

from pipeline.core.config import parse, to_dict
from pipeline.core.errors import ConfigError, InputError, ModelError

CONFIG_FILE, WEIGHTS_FILE, METRICS_FILE = "config.yaml", "weights.pt", "metrics.json"
LOG_FILE, SPLIT_FILE = "train_log.csv", "split.json"


def sha256(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(path: str | Path) -> dict:
    """What a run records about a model folder: ``{"folder", "weights_sha256"}``."""
    path = Path(path)
    return {"folder": str(path), "weights_sha256": sha256(path / WEIGHTS_FILE)}


class ModelFolder:
    """A model folder of one stage (``"detector"`` or ``"segmenter"``), checked on opening.

    ``path``: the folder; ``config``: its ``config.yaml`` read as the stage's config dataclass
    ``schema`` (``pipeline.core.config``). ``required``: files the stage needs besides
    ``config.yaml`` and ``weights.pt``.
    """

    def __init__(
        self,
        path: str | Path,
        stage: str,
        schema: type,
        required: tuple[str, ...] = (),
    ):
        self.path, self.stage = Path(path), stage
        missing = [
            name
            for name in (CONFIG_FILE, WEIGHTS_FILE, *required)
            if not (self.path / name).is_file()
        ]
        if missing:
            raise ModelError(
                f"{self.path} is not a {stage} model folder (missing {', '.join(missing)})"
            )
        try:
            raw = yaml.safe_load((self.path / CONFIG_FILE).read_text())
        except (OSError, yaml.YAMLError) as error:
            raise ModelError(f"cannot read {self.path / CONFIG_FILE}: {error}") from error
        if not isinstance(raw, dict) or not isinstance(raw.get("model"), dict):
            raise ModelError(f"{self.path} is not a {stage} model folder (config.yaml lacks model)")
        try:
            self.config = parse(schema, raw)
        except ConfigError as error:
            raise ModelError(f"{self.path} is not a usable {stage} model: {error}") from None

    def state(self) -> dict:
        """The weights: a state_dict on the CPU (``torch.load(..., weights_only=True)``)."""
        import torch

        try:
            return torch.load(self.path / WEIGHTS_FILE, map_location="cpu", weights_only=True)
        except Exception as error:  # a truncated or foreign file: torch raises many kinds
            raise ModelError(f"cannot read {self.path / WEIGHTS_FILE}: {error}") from error

    def network(self, build: Callable[[object], object]):
        """``build(config.model)`` with the folder's weights loaded (a ``torch.nn.Module`` on
        the CPU); ModelError when the config does not build or the weights do not fit it (e.g. a
        segmenter folder given as a detector)."""
        try:
            net = build(self.config.model)
            net.load_state_dict(self.state())
        except ModelError:
            raise
        except (KeyError, TypeError, ValueError, RuntimeError) as error:
            message = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise ModelError(
                f"{self.path} is not a usable {self.stage} model: {message}"
            ) from error
        return net

    def read_json(self, name: str) -> dict:
        """One of the folder's JSON files."""
        try:
            return json.loads((self.path / name).read_text())
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot read {self.path / name}: {error}") from error

    def describe(self) -> dict:
        """What a run records about the model (``describe``)."""
        return describe(self.path)

    def initial_state(self, model_config, resolve=lambda layout: layout) -> dict:
        """Weights a fine-tuning run starts from: the state, after checking that the folder's
        network (``resolve`` of its ``model`` section) is ``model_config``; InputError if not."""
        try:
            theirs = resolve(self.config.model)
        except ValueError as error:
            raise ModelError(f"{self.path}: {error}") from error
        if theirs != model_config:
            raise InputError(
                f"--init: the network of {self.path} ({theirs}) is not the config's "
                f"({model_config})"
            )
        return self.state()

    @staticmethod
    def save(
        path: str | Path, network, config, stage: str, files: dict[str, str] | None = None
    ) -> ModelFolder:
        """Write ``config.yaml`` (the config dataclass ``config``), ``weights.pt``
        (``network``'s state_dict, detached, on the CPU) and ``files`` (name -> text) into
        ``path``; returns the opened folder."""
        import torch

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        (path / CONFIG_FILE).write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        state = {key: value.detach().cpu() for key, value in network.state_dict().items()}
        torch.save(state, path / WEIGHTS_FILE)
        for name, text in (files or {}).items():
            (path / name).write_text(text)
        return ModelFolder(path, stage, type(config))
