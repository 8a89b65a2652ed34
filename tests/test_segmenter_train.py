"""Training on tiny synthetic data, the CLI end to end, and clear errors for bad input."""

import json
import shutil

import h5py
import numpy as np
import pytest
import tifffile
import torch
import yaml

from pipeline.cli import main
from pipeline.core.config import to_dict
from pipeline.core.errors import ConfigError
from pipeline.core.modelfolder import ModelFolder
from segmenter import train as train_module
from segmenter.config import load_config
from segmenter.metrics import swap_ab
from segmenter.model import build_model
from segmenter.targets import IGNORE
from segmenter.train import contact_weights, distance_targets, pair_loss

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _bars(size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Two crossing bars: image (2, 1, size, size) float32 and target (2, size, size) int64."""
    target = np.zeros((2, size, size), np.int64)
    target[:, 14:18, 4:28] = 1
    target[:, 4:28, 14:18] = 2
    target[:, 14:18, 14:18] = 3
    target[1] = target[1].T
    image = np.where(target > 0, 0.6, 0.05) + (target == 3) * 0.3
    return torch.tensor(image[:, None], dtype=torch.float32), torch.from_numpy(target)


@pytest.mark.parametrize("contact_weight, distance_weight", [(0.0, 0.0), (4.0, 0.0), (4.0, 1.0)])
def test_loss_is_permutation_invariant_and_falls_in_a_few_steps(contact_weight, distance_weight):
    torch.manual_seed(0)
    images, targets = _bars()
    layout = {"channels": [4, 8], "norm": "batch", "skip": "add"}
    net = build_model({**layout, "distance_head": bool(distance_weight)})
    optimizer = torch.optim.Adam(net.parameters(), lr=0.01)

    def loss_of(target):
        features = net.features(images)
        distances = net.distance_head(features) if distance_weight else None
        return pair_loss(
            net.head(features), target, 1.0, contact_weight, distances, distance_weight
        )

    swapped = torch.from_numpy(swap_ab(targets.numpy()))
    assert float(loss_of(targets).detach()) == pytest.approx(float(loss_of(swapped).detach()))
    losses = []
    for _ in range(30):
        loss = loss_of(targets)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.7 * losses[0]


def test_distance_targets_follow_each_chromosome_beneath_the_other():
    target = torch.zeros(1, 30, 30, dtype=torch.int64)
    target[0, 11:19, 2:28] = 1  # A: a bar 8 px thick
    target[0, 2:28, 14:16] = 2  # B: a bar 2 px thick across it
    target[0, 11:19, 14:16] = 3
    target[0, 0, 0] = IGNORE
    distances = distance_targets(target, steps=8).numpy()[0]
    assert distances.shape == (2, 30, 30) and distances.min() >= 0 and distances.max() <= 1
    assert distances[0, 15, 15] == pytest.approx(4 / 8)  # A's middle, beneath B
    assert distances[1, 15, 15] == pytest.approx(1 / 8)  # B's middle, on top of A
    assert distances[0, 5, 15] == 0 and distances[1, 15, 5] == 0  # each only inside its own
    assert distances[:, 0, 0].tolist() == [0, 0]
    assert distances[0, 15, 5] == distances[0, 15, 15]  # A's map does not see B at all
    swapped = distance_targets(torch.from_numpy(swap_ab(target.numpy())), steps=8).numpy()[0]
    np.testing.assert_array_equal(swapped, distances[::-1])  # pair_loss relies on this


def test_distance_weight_needs_the_head():
    config = load_config(None, model={"channels": [4, 8]}, train={"distance_weight": 1.0})
    with pytest.raises(ConfigError, match="distance_head"):
        train_module.training(
            build_model(config.model), list(range(64)), config, {}, torch.device("cpu")
        )


def test_contact_weights_where_two_chromosomes_meet():
    target = torch.zeros(1, 20, 30, dtype=torch.int64)
    target[0, 8:12, 2:15] = 1  # two chromosomes end to end, touching at column 14/15
    target[0, 8:12, 15:28] = 2
    target[0, 0:2, 0:2] = IGNORE
    weights = contact_weights(target, 4.0, radius=2)[0]
    assert torch.all(weights[8:12, 13:17] == 5)  # within 2 px of the other chromosome
    assert torch.all(weights[8:12, 2:12] == 1) and torch.all(weights[8:12, 18:28] == 1)
    assert torch.all(weights[0:8] == 1)  # background and ignored pixels: no extra weight
    lone = torch.zeros_like(target)
    lone[0, 8:12, 2:28] = 1
    assert torch.all(contact_weights(lone, 4.0) == 1)


def _metaphase(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A 96x96 DAPI-like image and its K labels: a crossing pair and two single chromosomes."""
    labels = np.zeros((96, 96), np.uint8)
    labels[20:26, 8:44] = 1
    labels[6:40, 22:28] = 2
    labels[20:26, 22:28] = 255
    labels[60:90, 10:16] = 3
    labels[55:62, 50:88] = 4
    image = rng.normal(12, 3, labels.shape) + (labels > 0) * 120 + (labels == 255) * 40
    return np.clip(image, 0, 255).astype(np.uint8), labels


@pytest.fixture
def adir_folder(tmp_path):
    rng = np.random.default_rng(0)
    for slide in ("X01", "X02", "X03", "X04"):
        folder = tmp_path / "data" / f"{slide}__XY"
        folder.mkdir(parents=True)
        image, labels = _metaphase(rng)
        tifffile.imwrite(folder / f"{slide}01XYD.tif", image)
        tifffile.imwrite(folder / f"{slide}01XYK.tif", labels)
    return tmp_path / "data"


@pytest.fixture
def tiny_config(tmp_path):
    config = load_config(
        "configs/segmenter.yaml",
        model={"channels": [4, 8], "norm": "batch", "skip": "add"},
        data=dict(synthetic_per_epoch=8, val_synthetic=4, test_synthetic=4),
        train=dict(epochs=2, batch_size=4, workers=0),
    )
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(to_dict(config)))
    return path


def test_cli_train_resume_eval_segment(tmp_path, adir_folder, tiny_config, monkeypatch):
    out = tmp_path / "run"
    with h5py.File(tmp_path / "pairs.h5", "w") as h5:
        h5.create_dataset("dataset_1", data=np.ones((5, 94, 93, 2), np.uint8))
    common = ["--config", str(tiny_config), "--data", str(adir_folder), "--out", str(out)]
    common += ["--h5", str(tmp_path / "pairs.h5")]  # its first 80 % joins the training crops
    validate, calls = train_module._validate, []

    def interrupted_in_epoch_2(*args):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return validate(*args)

    monkeypatch.setattr(train_module, "_validate", interrupted_in_epoch_2)
    assert main(["train", "segmenter", *common, "--device", "cpu"]) == 130
    # the checkpoint names the last finished epoch, 0-based (torchvision's rule)
    assert torch.load(out / "checkpoint.pt", weights_only=False)["epoch"] == 0
    monkeypatch.setattr(train_module, "_validate", validate)
    assert main(["train", "segmenter", *common, "--resume", "--epochs", "3"]) == 2
    assert main(["train", "segmenter", *common, "--resume"]) == 0
    log = (out / "train_log.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in log[1:]] == ["1", "2"]
    model = out / "model"
    for name in ("config.yaml", "weights.pt", "metrics.json", "train_log.csv", "split.json"):
        assert (model / name).is_file(), name
    for name in ("train_log.csv", "split.json", "checkpoint.pt", "train.log"):
        assert (out / name).is_file(), name

    assert "10 train crops (6 of 2+ chromosomes)" in (out / "train.log").read_text()
    report = tmp_path / "eval.json"
    args = ["eval", "segmenter", "--model", str(model), "--data", str(adir_folder)]
    args += ["--h5", str(tmp_path / "pairs.h5")]
    assert main([*args, "--json", str(report), "--device", "cpu"]) == 0
    results = json.loads(report.read_text())
    # no Case Info in these folders: no complete karyotypes, so no "_complete" sets
    synthetic_sets = {"synthetic_crossing", "synthetic_touching", "synthetic_clusters"}
    assert set(results) == {"real_pairs", "real_multi", "real_all", "h5_pairs"} | synthetic_sets | {
        "synthetic_banded"
    }
    assert results["h5_pairs"]["crops"] == 1
    assert results["real_pairs"]["crops"] == 1  # one test slide, one crossing pair
    assert set(results["real_pairs"]["permutation_invariant"]["iou"]) == {
        "background",
        "chromosome_A",
        "chromosome_B",
        "overlap",
    }

    # fine-tuning starts from the model's weights and records them; another layout is refused
    tuned = tmp_path / "tuned"
    init = ["--config", str(tiny_config), "--data", str(adir_folder), "--init", str(model)]
    assert main(["train", "segmenter", *init, "--out", str(tuned), "--epochs", "1"]) == 0
    recorded = yaml.safe_load((tuned / "model" / "config.yaml").read_text())["train"]["init"]
    assert recorded["folder"] == str(model) and len(recorded["weights_sha256"]) == 64
    assert "initialised from" in (tuned / "train.log").read_text()
    other = yaml.safe_load(tiny_config.read_text())
    other["model"]["channels"] = [4, 4]
    (tmp_path / "other.yaml").write_text(yaml.safe_dump(other))
    init[1] = str(tmp_path / "other.yaml")
    assert main(["train", "segmenter", *init, "--out", str(tmp_path / "refused")]) == 2

    # --part val evaluates the val slide of the model's split: without it, no real crops
    val_slide = json.loads((out / "split.json").read_text())["val"][0]
    shutil.rmtree(adir_folder / f"{val_slide}__XY")
    assert main([*args, "--json", str(report), "--device", "cpu", "--part", "val"]) == 0
    assert set(json.loads(report.read_text())) == {"h5_pairs"}

    crops = np.random.default_rng(1).random((3, 88, 88)).astype(np.float32)
    np.save(tmp_path / "crops.npy", crops)
    segmented = tmp_path / "segmented"
    assert (
        main(
            [
                "segment",
                str(tmp_path / "crops.npy"),
                "--model",
                str(model),
                "--out",
                str(segmented),
                "--format",
                "both",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    labels = np.load(segmented / "labels.npy")
    assert labels.shape == (3, 88, 88) and labels.dtype == np.uint8
    assert len(list(segmented.glob("labels_*.png"))) == 3


def test_bad_input_gives_one_line_errors(tmp_path, adir_folder, tiny_config, capsys):
    def fails(argv, message):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.startswith("chromoseg: error:") and message in err, err
        assert "Traceback" not in err

    fails(
        ["train", "segmenter", "--config", str(tiny_config), "--data", str(tmp_path / "missing")],
        "dataset folder not found",
    )
    fails(
        ["train", "segmenter", "--config", str(tmp_path / "none.yaml"), "--data", str(adir_folder)],
        "config file not found",
    )
    orphan = tmp_path / "orphan" / "Y01__XY"
    orphan.mkdir(parents=True)
    tifffile.imwrite(orphan / "Y0101XYK.tif", np.zeros((8, 8), np.uint8))
    tifffile.imwrite(orphan / "Y0102XYD.tif", np.zeros((8, 8), np.uint8))
    fails(
        ["train", "segmenter", "--config", str(tiny_config), "--data", str(tmp_path / "orphan")],
        "label image without its DAPI image",
    )
    fails(
        ["eval", "segmenter", "--model", str(tmp_path / "nomodel"), "--data", str(adir_folder)],
        "not a segmenter model folder",
    )
    config = load_config(tiny_config)
    ModelFolder.save(tmp_path / "model", build_model(config.model), config, "segmenter")
    with h5py.File(tmp_path / "other.h5", "w") as h5:
        h5.create_dataset("images", data=np.zeros((2, 94, 93, 2), np.uint8))
    fails(
        [
            "eval",
            "segmenter",
            "--model",
            str(tmp_path / "model"),
            "--h5",
            str(tmp_path / "other.h5"),
        ],
        "no 'dataset_1'",
    )
    np.save(tmp_path / "bad.npy", np.zeros((2, 3, 88, 88), np.float32))
    fails(["segment", str(tmp_path / "bad.npy")], "crops must be (N, H, W)")
