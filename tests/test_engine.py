"""The shared training engine (``pipeline.core.engine``): which epoch the model folder keeps."""

import pytest
import torch

from pipeline.core import engine
from pipeline.core.modelfolder import ModelFolder
from segmenter.config import load_config
from segmenter.model import build_model


@pytest.mark.parametrize("keep, kept", [("best", 1), ("last", 3)])
def test_the_model_folder_keeps_the_best_or_the_last_epoch(tmp_path, keep, kept):
    """Three epochs whose validation score falls: ``keep: best`` keeps the first epoch's weights,
    ``keep: last`` the third's."""
    config = load_config(None, model={"channels": [4, 8]}, train={"epochs": 3, "keep": keep})
    run = engine.start("segmenter", config, tmp_path)
    network = build_model(config.model)
    optimizer = torch.optim.SGD(network.parameters(), lr=0.1)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0)
    states, scores = [], iter([0.9, 0.5, 0.1])

    def validate():
        states.append({k: v.clone() for k, v in network.state_dict().items()})
        return {"score": next(scores)}

    training = engine.Training(
        stage="segmenter",
        network=network,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=lambda epoch: [torch.rand(2, 1, 16, 16)],
        losses=lambda batch: {"loss": network(batch).square().mean()},
        validate=validate,
    )
    folder = engine.fit(run, training)
    saved = ModelFolder(folder.path, "segmenter", type(config)).state()
    other = states[2] if kept == 1 else states[0]
    assert all(torch.equal(saved[k], v) for k, v in states[kept - 1].items())
    assert not all(torch.equal(saved[k], v) for k, v in other.items())
