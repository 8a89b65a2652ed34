"""The overlap U-Net family: levels of two 3x3 'same' convolutions (+ ReLU), 2x2 max-pooling
between encoder levels (ceil mode: any input size), 4-class logits at the input's size.

``channels`` gives the width of every level (its length - 1 = number of poolings); ``norm`` is
``batch`` or ``none``; ``skip`` says how the decoder goes up a level and joins the encoder's
features there: ``concat`` (the seed's: a 2x2 stride-2 transposed convolution to the shallower
width, concatenated with the skip, then the two convolutions) or ``add`` (a 1x1 convolution to the
shallower width, nearest upsampling, added to the skip: cheaper, the default's). Any input size
works: the upsampled features are padded or cut to the skip's exact size.

``distance_head`` adds a second 1x1 head on the same features, two channels: each chromosome's
distance to its own edge, under the other one too (``segmenter.train.distance_targets``), an
extra training target that asks the network where each chromosome runs beneath an overlap;
inference reads only the 4-class logits.

Presets (``PRESETS``) name whole layouts; ``hu2017`` is the seed's network (Hu et al. 2017):
64/128/256 channels, two poolings, no normalisation, concatenating skips.
"""

from __future__ import annotations

from dataclasses import asdict

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.core import config as core_config
from segmenter.config import DEFAULT_LAYOUT, Layout

NUM_CLASSES = 4
PRESETS = {
    "hu2017": {
        "channels": [64, 128, 256],
        "norm": "none",
        "skip": "concat",
        "distance_head": False,
    },
}
NORMS = ("batch", "none")
SKIPS = ("concat", "add")


def _conv_block(in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers.append(nn.Conv2d(channels, out_channels, 3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """``(B, 1, H, W)`` float -> ``(B, 4, H, W)`` logits (background, A, B, overlap)."""

    def __init__(
        self, channels: list[int], norm: str = "batch", skip: str = "add", distance_head=False
    ):
        super().__init__()
        if len(channels) < 2 or any(int(c) < 1 for c in channels):
            raise ValueError(f"channels must list at least two positive widths, got {channels}")
        if norm not in NORMS or skip not in SKIPS:
            raise ValueError(f"norm must be one of {NORMS} and skip one of {SKIPS}")
        self.skip = skip
        widths = [int(c) for c in channels]
        self.encoder = nn.ModuleList(
            _conv_block(c_in, c_out, norm)
            for c_in, c_out in zip([1, *widths[:-1]], widths, strict=True)
        )
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for deep, shallow in zip(widths[:0:-1], widths[-2::-1], strict=True):
            if skip == "concat":
                self.up.append(nn.ConvTranspose2d(deep, shallow, 2, stride=2))
                self.decoder.append(_conv_block(2 * shallow, shallow, norm))
            else:
                self.up.append(nn.Conv2d(deep, shallow, 1))
                self.decoder.append(_conv_block(shallow, shallow, norm))
        self.head = nn.Conv2d(widths[0], NUM_CLASSES, 1)
        self.distance_head = nn.Conv2d(widths[0], 2, 1) if distance_head else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 1, H, W)`` -> the last decoder level's ``(B, channels[0], H, W)``, which the
        heads read."""
        skips = []
        for level, block in enumerate(self.encoder):
            if level:
                x = F.max_pool2d(x, 2, ceil_mode=True)
            x = block(x)
            skips.append(x)
        skips.pop()
        for up, block in zip(self.up, self.decoder, strict=True):
            skip = skips.pop()
            if self.skip == "concat":
                x = _fit(up(x), skip)
                x = block(torch.cat([x, skip], dim=1))
            else:
                x = F.interpolate(up(x), size=skip.shape[-2:], mode="nearest")
                x = block(x + skip)
        return x


def _fit(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """``x`` zero-padded or cut at the bottom/right to ``reference``'s height and width."""
    dy = reference.shape[-2] - x.shape[-2]
    dx = reference.shape[-1] - x.shape[-1]
    return F.pad(x, (0, dx, 0, dy)) if dy or dx else x


def resolve(layout: Layout | dict | None) -> Layout:
    """The full layout of a ``model:`` config section (a ``Layout`` or its mapping): its own
    values, the rest from its preset (or ``DEFAULT_LAYOUT``). ValueError for an unknown preset
    or setting."""
    if not isinstance(layout, Layout):
        layout = core_config.parse(Layout, layout, "model.")
    if layout.preset is not None and layout.preset not in PRESETS:
        raise ValueError(f"unknown segmenter preset {layout.preset!r}; known: {sorted(PRESETS)}")
    base = PRESETS[layout.preset] if layout.preset is not None else DEFAULT_LAYOUT
    own = {key: value for key, value in asdict(layout).items() if value is not None}
    return Layout(**{**base, **own})


def build_model(layout: Layout | dict | None) -> UNet:
    """A U-Net from a ``model:`` config section (see ``resolve``)."""
    layout = resolve(layout)
    return UNet(layout.channels, layout.norm, layout.skip, layout.distance_head)


def count_macs(model: nn.Module, size: int = 88) -> int:
    """Multiply-adds of one forward pass on one ``size`` x ``size`` crop (FlopCounterMode / 2)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    parameter = next(model.parameters())
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 1, size, size, device=parameter.device, dtype=parameter.dtype))
    model.train(was_training)
    return int(counter.get_total_flops() // 2)
