"""pipeline.core.inference: the networks' inference forms keep their outputs."""

import torch
from torch import nn

from detector.model import SmallBackbone
from pipeline.core.inference import ConvReLU, inference_form
from segmenter.model import UNet


def trained_like(net: nn.Module) -> nn.Module:
    """``net`` with batch-norm statistics that are not the identity (as after training)."""
    generator = torch.Generator().manual_seed(0)
    for module in net.modules():
        if isinstance(module, nn.BatchNorm2d):
            channels = module.num_features
            module.running_mean.copy_(torch.randn(channels, generator=generator) * 0.1)
            module.running_var.copy_(torch.rand(channels, generator=generator) + 0.5)
            module.weight.data.copy_(torch.rand(channels, generator=generator) + 0.5)
    return net.eval()


def test_float32_form_folds_the_norms_and_keeps_the_outputs():
    net = trained_like(UNet([8, 16, 16]))
    form = inference_form(net, bf16=False)
    assert not any(isinstance(m, nn.BatchNorm2d | ConvReLU) for m in form.modules())
    x = torch.rand(2, 1, 88, 88)
    with torch.no_grad():
        assert torch.allclose(form(x), net(x), atol=1e-4)


def test_bf16_form_fuses_conv_and_relu_and_stays_close():
    for net, x in (
        (trained_like(UNet([8, 16, 16])), torch.rand(2, 1, 88, 88)),
        (trained_like(SmallBackbone([8, 16, 16], 16)), torch.rand(1, 1, 96, 120)),
    ):
        form = inference_form(net, bf16=True)
        assert any(isinstance(m, ConvReLU) for m in form.modules())
        assert not any(isinstance(m, nn.BatchNorm2d) for m in form.modules())
        assert all(p.dtype == torch.bfloat16 for p in form.parameters())
        with torch.no_grad():
            expected, found = net(x), form(x).float()
        assert found.shape == expected.shape
        assert (found - expected).abs().max() < 0.05 * expected.abs().max()


def test_conv_relu_is_relu_of_conv_on_and_off_onednn(monkeypatch):
    conv = nn.Conv2d(3, 5, 3, padding=1)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        expected = torch.relu(conv(x))
        assert torch.allclose(ConvReLU(conv)(x), expected, atol=1e-5)
        monkeypatch.setattr(torch.backends.mkldnn, "is_available", lambda: False)
        assert torch.allclose(ConvReLU(conv)(x), expected, atol=1e-5)
