"""The one config loader (pipeline.core.config) and the stages' config dataclasses."""

from pathlib import Path

import pytest

from detector.config import DetectorConfig
from detector.config import load_config as load_detector_config
from pipeline.core.config import parse, to_dict
from pipeline.core.errors import ConfigError
from segmenter.config import SegmenterConfig
from segmenter.config import load_config as load_segmenter_config

CONFIGS = Path(__file__).resolve().parent.parent / "configs"


def test_shipped_config_files_spell_out_the_defaults():
    assert load_detector_config(CONFIGS / "detector.yaml") == DetectorConfig()
    assert load_segmenter_config(CONFIGS / "segmenter.yaml") == load_segmenter_config(None)


def test_round_trip_through_plain_types():
    for config in (DetectorConfig(), load_segmenter_config(CONFIGS / "segmenter_hu2017.yaml")):
        assert parse(type(config), to_dict(config)) == config


@pytest.mark.parametrize(
    "text,named",
    [
        ("train:\n  lr: fast\n", "train.lr"),
        ("train:\n  epochs: 2.5\n", "train.epochs"),
        ("train:\n  bf16: sometimes\n", "train.bf16"),
        ("data:\n  synthetic:\n    kinds: {crossing: 1}\n", "data.synthetic"),
        ("data:\n  synthetic:\n    size_range: [0.8]\n", "data.synthetic.size_range"),
        ("modle: {}\n", "modle"),
        ("model:\n  preset: hu2018\n", "hu2018"),
        ("- 1\n- 2\n", "mapping"),
    ],
)
def test_bad_settings_are_named(tmp_path, text, named):
    (tmp_path / "bad.yaml").write_text(text)
    with pytest.raises(ConfigError, match=named) as raised:
        load_segmenter_config(tmp_path / "bad.yaml")
    assert str(tmp_path / "bad.yaml") in str(raised.value)


def test_values_take_their_declared_types(tmp_path):
    (tmp_path / "mine.yaml").write_text(
        "train:\n  lr: 1\n  bf16: false\ndata:\n  singles: [mined]\n  singles_repeat: 20\n"
        "  synthetic:\n    cluster_sizes: {2: 1}\n"
    )
    config = load_segmenter_config(tmp_path / "mine.yaml")
    assert isinstance(config.train.lr, float) and config.train.bf16 is False
    assert config.data.singles == [tmp_path / "mined"]  # relative to the config file
    assert config.data.singles_repeat == 20
    assert config.data.synthetic.cluster_sizes == {2: 1.0}
    assert config.data.margin == SegmenterConfig().data.margin  # the rest: defaults
