"""The U-Net family: shapes, presets, save/load round trip, cost."""

from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from pipeline.core.config import to_dict
from pipeline.core.errors import ModelError
from pipeline.core.modelfolder import ModelFolder
from segmenter import api
from segmenter.config import Layout, load_config
from segmenter.model import PRESETS, build_model, count_macs, resolve

CONFIGS = Path(__file__).resolve().parent.parent / "configs"
PRESET_FILES = ["segmenter.yaml", "segmenter_hu2017.yaml"]


def _model_config(name: str) -> Layout:
    return load_config(CONFIGS / name).model


@pytest.mark.parametrize("name", PRESET_FILES)
@pytest.mark.parametrize("height,width", [(88, 88), (87, 93), (31, 45), (1, 1)])
def test_output_has_four_classes_at_input_size(name, height, width):
    net = build_model(_model_config(name)).eval()
    with torch.no_grad():
        assert net(torch.zeros(2, 1, height, width)).shape == (2, 4, height, width)


def test_hu2017_is_the_seeds_layout():
    layout = resolve({"preset": "hu2017"})
    assert layout.channels == [64, 128, 256] and layout.skip == "concat"
    assert resolve({"preset": "hu2017", "channels": [8, 16]}).channels == [8, 16]
    assert set(PRESETS) >= {"hu2017"}
    with pytest.raises(ValueError, match="unknown segmenter preset"):
        resolve({"preset": "nope"})
    # without a preset, what a section leaves out is the default layout's
    assert resolve({"channels": [8, 16]}) == Layout(None, [8, 16], "batch", "add", False)
    with pytest.raises(ValueError, match="unknown setting model.width"):
        resolve({"width": [8, 16]})


def test_default_costs_at_most_an_eighth_of_hu2017():
    with torch.device("meta"):  # counting needs shapes only
        default = count_macs(build_model(_model_config("segmenter.yaml")))
        seed = count_macs(build_model(_model_config("segmenter_hu2017.yaml")))
    assert 0 < 8 * default <= seed


@pytest.mark.parametrize("name", PRESET_FILES)
def test_save_load_round_trip(tmp_path, name):
    torch.manual_seed(0)
    config = load_config(CONFIGS / name)
    config.inference.views = 1  # the network's own output, compared below
    net = build_model(config.model)
    for parameter in net.parameters():  # make weights and batchnorm statistics non-trivial
        parameter.data.normal_(0, 0.1)
    for name, buffer in net.named_buffers():
        if name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
        elif name.endswith("running_var"):
            buffer.uniform_(0.5, 2.0)
    net.eval()
    ModelFolder.save(tmp_path, net, config, "segmenter")
    model = api.load_model(tmp_path, device="cpu")
    saved = torch.load(tmp_path / "weights.pt")
    assert saved.keys() == net.state_dict().keys()
    assert all(torch.equal(saved[key], value) for key, value in net.state_dict().items())
    crops = np.random.default_rng(0).random((3, 40, 40)).astype(np.float32)
    labels, probabilities = api.segment(model, crops, batch_size=3)
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(crops[:, None])), 1).numpy()
    np.testing.assert_allclose(probabilities, expected, atol=2e-3)  # fused BN, channels-last
    assert labels.dtype == np.uint8 and labels.shape == (3, 40, 40)
    assert (labels == expected.argmax(1)).mean() > 0.999
    assert model.margin == config.data.margin


def test_bad_model_folder_and_crop_shapes(tmp_path):
    with pytest.raises(ModelError, match="missing config.yaml"):
        api.load_model(tmp_path)
    config = load_config(None, model={"channels": [4, 8], "norm": "batch", "skip": "add"})
    ModelFolder.save(tmp_path, build_model(config.model), config, "segmenter")
    model = api.load_model(tmp_path, device="cpu")
    with pytest.raises(ValueError, match=r"\(N, H, W\)"):
        api.segment(model, np.zeros((88, 88), np.float32))
    config.model.channels = [4, 16]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(to_dict(config)))
    with pytest.raises(ModelError, match="not a usable segmenter model"):
        api.load_model(tmp_path)
