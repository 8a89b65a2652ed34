"""segmenter.api.segment: fixed-size network calls and the mirrored second pass."""

from argparse import Namespace
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.core.modelfolder import ModelFolder
from segmenter import api, cli
from segmenter.config import load_config
from segmenter.model import build_model

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


class HalvesNet(torch.nn.Module):
    """Background where the crop is dark; where it is bright, chromosome A on the left half and
    B on the right half, or A everywhere (``one_label``). Counts its calls and batch sizes."""

    def __init__(self, one_label: bool = False):
        super().__init__()
        self.one_label, self.batches = one_label, []

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        self.batches.append(len(crops))
        bright = (crops[:, 0] > 0.5).float()
        left = torch.zeros_like(bright)
        left[..., : crops.shape[-1] // 2] = 1
        if self.one_label:
            left[:] = 1
        logits = torch.stack([1 - bright, bright * left, bright * (1 - left), 0 * bright], 1)
        return 8 * logits


def model_with(net, views: int) -> api.Segmenter:
    config = load_config(None, inference={"views": views})
    return api.Segmenter(net, config, torch.device("cpu"))


def crops(count: int = 5) -> np.ndarray:
    return np.random.default_rng(1).random((count, 88, 88)).astype(np.float32)


def test_every_network_call_gets_the_batch_size():
    net = HalvesNet()
    labels, probabilities = api.segment(model_with(net, 1), crops(5), batch_size=4)
    assert net.batches == [4, 4]
    assert labels.shape == (5, 88, 88) and probabilities.shape == (5, 4, 88, 88)


def test_mirrored_pass_agrees_after_exchanging_a_and_b():
    # mirrored, this network's A and B change sides: aligned, the mirrored pass says the same
    images = crops()
    plain = api.segment(model_with(HalvesNet(), 1), images)
    averaged = api.segment(model_with(HalvesNet(), 4), images)
    np.testing.assert_allclose(averaged[1], plain[1], atol=1e-6)
    np.testing.assert_array_equal(averaged[0], plain[0])


def test_crops_of_one_label_get_no_second_pass():
    net = HalvesNet(one_label=True)
    api.segment(model_with(net, 4), crops(), batch_size=8)
    assert net.batches == [8]


@pytest.mark.parametrize("views", [1, 2, 4])
def test_crops_of_two_labels_get_every_mirrored_view(views):
    net = HalvesNet()
    api.segment(model_with(net, views), crops(5), batch_size=8)
    # the 5 crops, then their mirror images, all views together, in calls of the batch size
    assert net.batches == [8] * (1 + -(-5 * (views - 1) // 8))


def test_class_labels_are_the_argmax_with_ties_to_the_lower_class():
    probabilities = np.random.default_rng(2).random((3, 4, 9, 7)).astype(np.float32)
    probabilities[:, 2, :4] = probabilities[:, 1, :4]  # ties
    probabilities[0, :, 0, 0] = 0.25  # all four equal
    labels = api.class_labels(probabilities)
    assert labels.dtype == np.uint8
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))


@pytest.mark.parametrize("views", [1, 4])
def test_labels_are_the_argmax_of_the_averaged_probabilities(views):
    config = load_config(CONFIGS / "segmenter.yaml")
    torch.manual_seed(0)
    model = model_with(build_model(config.model).eval(), views)
    labels, probabilities = api.segment(model, crops(6), batch_size=4)
    np.testing.assert_array_equal(labels, probabilities.argmax(axis=1))


@pytest.mark.parametrize("axis", [-1, -2])
def test_flip_average_is_mirror_symmetric(axis):
    # a mirrored crop (left-right or upside down) gives the mirrored result, up to which
    # chromosome is called A
    config = load_config(CONFIGS / "segmenter.yaml")
    torch.manual_seed(0)
    net = build_model(config.model).eval()
    model = model_with(net, 4)
    images = crops(4)
    _, straight = api.segment(model, images, batch_size=4)
    _, mirrored = api.segment(model, np.ascontiguousarray(np.flip(images, axis)), batch_size=4)
    mirrored = np.flip(mirrored, axis)
    exchanged = mirrored[:, [0, 2, 1, 3]]
    for one, other, swapped in zip(straight, mirrored, exchanged, strict=True):
        assert np.allclose(one, other, atol=1e-4) or np.allclose(one, swapped, atol=1e-4)


def test_no_flip_average_option_turns_the_second_pass_off(tmp_path):
    config = load_config(CONFIGS / "segmenter.yaml", model={"channels": [4, 8]})
    ModelFolder.save(tmp_path, build_model(config.model), config, "segmenter")
    options = {"model": str(tmp_path), "device": "cpu"}
    assert cli._load_model(Namespace(**options, no_flip_average=False)).config.inference.views == 4
    single = cli._load_model(Namespace(**options, no_flip_average=True))
    assert single.config.inference.views == 1


@pytest.mark.parametrize("flip_average, views", [(True, 4), (False, 1)])
def test_a_model_config_from_before_views_loads(tmp_path, flip_average, views):
    """Model folders written when ``inference.flip_average`` was a setting of its own."""
    config = load_config(CONFIGS / "segmenter.yaml", model={"channels": [4, 8]})
    ModelFolder.save(tmp_path, build_model(config.model), config, "segmenter")
    written = yaml.safe_load((tmp_path / "config.yaml").read_text())
    written["inference"] = {"flip_average": flip_average, "views": 4}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(written))
    assert api.load_model(tmp_path, "cpu").config.inference.views == views


def test_load_model_bf16_setting_replaces_the_configs():
    shipped = api.load_model(device="cpu")
    assert shipped.config.inference.bf16 is False  # the shipped config: float32
    fast = api.load_model(device="cpu", bf16=True)
    assert fast.config.inference.bf16 is True
    bars = np.full((4, 88, 88), 0.05, np.float32)
    bars[:, 30:40, 10:80] = 0.8
    bars[:, 10:80, 50:58] = 0.8  # a crossing
    labels, probabilities = api.segment(shipped, bars)
    fast_labels, fast_probabilities = api.segment(fast, bars)
    assert fast_probabilities.shape == probabilities.shape
    assert np.abs(fast_probabilities - probabilities).mean() < 0.01
    assert (fast_labels != labels).mean() < 0.01


@pytest.mark.parametrize("views, calls", [(None, 4), (2, 2), (1, 1)])
def test_pipeline_config_chooses_the_views(monkeypatch, views, calls):
    from pipeline.config import load_config as pipeline_config
    from pipeline.models import load_models

    net = HalvesNet()  # two labels in every crop: every view runs
    monkeypatch.setattr(api, "load_model", lambda *args, **kwargs: model_with(net, 4))
    config = pipeline_config(None, segmenter={"views": views, "batch_size": 2})
    load_models(config, "cpu").segment(crops(2))
    assert len(net.batches) == calls  # the two crops, then one call per further view
