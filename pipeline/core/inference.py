"""Inference forms of both networks: batch norms folded, conv + ReLU fused, bf16 where asked.

``inference_form(net, bf16)`` returns a copy of ``net`` in eval mode in which every
``nn.Sequential`` that holds a convolution followed by a ``BatchNorm2d`` has the norm folded into
the convolution, and, with ``bf16``, every convolution followed by a ``ReLU`` is one
``ConvReLU`` and the weights are bf16; channels-last throughout. The outputs are the network's
up to float rounding. Fusing the ReLU matters in bf16 on CPU, where a separate bf16 ReLU is a
slow pass over memory (speed of the whole form: ``benchmarks/check_bf16_inference.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class ConvReLU(nn.Module):
    """``relu(conv(x))`` as one oneDNN call on CPU tensors (``torch.ops.mkldnn``'s pointwise
    convolution, the call ``torch.compile`` makes for this pair); conv then ReLU elsewhere. The
    input is cast to the weights' dtype."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = self.conv
        x = x.to(conv.weight.dtype)
        if x.device.type != "cpu" or not torch.backends.mkldnn.is_available():
            return torch.relu(conv(x))
        return torch.ops.mkldnn._convolution_pointwise(
            x,
            conv.weight,
            conv.bias,
            list(conv.padding),
            list(conv.stride),
            list(conv.dilation),
            conv.groups,
            "relu",
            [],
            "",
        )


def _fused(layers: list[nn.Module], fuse_relu: bool) -> list[nn.Module]:
    """``layers`` of a Sequential with each Conv2d + BatchNorm2d folded into one Conv2d and,
    with ``fuse_relu``, each Conv2d + ReLU made one ``ConvReLU``."""
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    kept: list[nn.Module] = []
    for layer in layers:
        previous = kept[-1] if kept else None
        if isinstance(layer, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            kept[-1] = fuse_conv_bn_eval(previous, layer)
        elif fuse_relu and isinstance(layer, nn.ReLU) and type(previous) is nn.Conv2d:
            kept[-1] = ConvReLU(previous)
        else:
            kept.append(layer)
    return kept


def inference_form(net: nn.Module, bf16: bool = False) -> nn.Module:
    """A copy of ``net`` for inference (module docstring)."""
    form = copy.deepcopy(net).eval()
    for module in list(form.modules()):
        if isinstance(module, nn.Sequential):
            layers = _fused(list(module), fuse_relu=bf16)
            module._modules.clear()
            for index, layer in enumerate(layers):
                module.add_module(str(index), layer)
    if bf16:
        form = form.to(torch.bfloat16)
    return form.to(memory_format=torch.channels_last)
