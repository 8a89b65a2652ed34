"""Detector: data, model, training steps, save/load, API and CLI, on tiny synthetic images."""

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import tifffile
import torch
import yaml

from detector import data as detdata
from detector.api import PRETRAINED, detect, detect_batch, load_model
from detector.baseline import boxes_on_nuclei, nucleus_mask, otsu_boxes
from detector.config import DetectorConfig, load_config
from detector.model import Bf16Backbone, build_model
from pipeline.cli import main
from pipeline.core import adir
from pipeline.core.config import to_dict
from pipeline.core.errors import ModelError
from pipeline.core.modelfolder import ModelFolder

CONFIG_FILE = Path(__file__).resolve().parent.parent / "configs" / "detector.yaml"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


def tiny_config() -> DetectorConfig:
    """The shipped config with a smaller network and crops (fast tests)."""
    return load_config(
        CONFIG_FILE,
        model=dict(
            widths=[8, 8, 16], out_channels=16, representation_size=32, anchor_sizes=[8, 16, 32]
        ),
        augment={"crop_size": 64},
        train=dict(epochs=1, batch_size=2, workers=0, warmup_steps=2),
    )


def bars_image(seed: int, size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Bright bars on dark noise (H, W) float32 in [0, 1] and their boxes (N, 4) xyxy."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0.05, 0.02, (size, size))
    boxes = []
    for row in (8, 28, 48):
        x0 = int(rng.integers(4, 24))
        length = int(rng.integers(14, 30))
        image[row : row + 5, x0 : x0 + length] = 0.9
        boxes.append([x0, row, x0 + length, row + 5])
    return np.clip(image, 0, 1).astype(np.float32), np.asarray(boxes, np.float32)


def label_image() -> np.ndarray:
    """Hand-made K image (40, 50): a lone chromosome, two touching ones joined by an overlap,
    a diagonal pair touching at a corner (one 8-connected cluster), and 19-pixel debris."""
    k = np.zeros((40, 50), np.uint8)
    k[2:6, 2:12] = 1  # lone: box (2, 2, 12, 6)
    k[10:14, 2:10] = 3  # chromosome 3 ...
    k[10:14, 10:12] = 255  # ... overlaps ...
    k[10:14, 12:20] = 7  # ... chromosome 7: box (2, 10, 20, 14)
    k[20:25, 30:35] = 5  # corner-touching pair: box (30, 20, 40, 30)
    k[25:30, 35:40] = 5
    k[35:36, 20:39] = 9  # 19 px: below MIN_PIXELS, not a cluster
    return k


def write_adir(folder: Path, slides: list[str]) -> Path:
    """An ADIR-format folder: one labelled image per slide, each with the label_image layout."""
    k = label_image()
    for slide in slides:
        sub = folder / f"{slide}__XY"
        sub.mkdir(parents=True)
        dapi = np.where(k > 0, 200, 10).astype(np.uint8)
        tifffile.imwrite(sub / f"{slide}01XYD.tif", dapi)
        tifffile.imwrite(sub / f"{slide}01XYK.tif", k)
    return folder


def test_cluster_boxes_of_a_hand_made_label_image(tmp_path):
    samples, painted = detdata.load_samples(adir.find_images(write_adir(tmp_path, ["A01"])))
    assert painted == 0
    expected = np.array([[2, 2, 12, 6], [2, 10, 20, 14], [30, 20, 40, 30]], np.float32)
    found = samples[0].boxes[np.lexsort(samples[0].boxes.T[::-1])]
    assert samples[0].boxes.dtype == np.float32
    np.testing.assert_array_equal(found, expected)
    image = samples[0].image
    assert image.dtype == np.float32 and image.shape == (40, 50)
    assert image[3, 5] > 0.9 and image[38, 5] < 0.1


def test_augmentation_keeps_boxes_on_the_bars():
    image, boxes = bars_image(0, 96)
    config = replace(load_config(CONFIG_FILE).augment, crop_size=64, inversion_p=1.0)
    dataset = detdata.DetectionDataset(
        [detdata.Sample("a", image, boxes)], detdata.build_augmentation(config, seed=3)
    )
    for _ in range(5):
        tensor, target = dataset[0]
        assert tensor.shape == (1, 64, 64) and tensor.dtype == torch.float32
        assert 0 <= tensor.min() and tensor.max() <= 1
        for x0, y0, x1, y1 in target["boxes"].round().int().tolist():
            assert 0 <= x0 < x1 <= 64 and 0 <= y0 < y1 <= 64
            inside = tensor[0, y0:y1, x0:x1].mean()
            assert inside > tensor[0].mean()  # boxes sit on the bright bars
    assert target["labels"].dtype == torch.int64


def test_simulated_inversion_keeps_chromosomes_bright():
    image, boxes = bars_image(1)
    out = detdata.SimulatedInversion(p=1.0).apply(image)
    x0, y0, x1, y1 = boxes[0].astype(int)
    assert out[y0:y1, x0:x1].mean() > 0.8 and np.median(out) < 0.4


@pytest.mark.parametrize("backbone", ["small", "mobilenet_v3_large_fpn"])
def test_empty_targets_give_zero_box_losses(backbone):
    torch.manual_seed(0)
    config = replace(tiny_config().model, backbone=backbone)
    network = build_model(config).train()
    image, _ = bars_image(0)
    empty = {"boxes": torch.zeros((0, 4)), "labels": torch.zeros(0, dtype=torch.int64)}
    losses = network([torch.from_numpy(image)[None]], [empty])
    assert losses["loss_box_reg"].item() == 0.0
    assert losses["loss_rpn_box_reg"].item() == 0.0
    assert losses["loss_objectness"].item() > 0.0


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    network = build_model(tiny_config().model).train()
    pairs = [bars_image(seed) for seed in range(4)]
    images = [torch.from_numpy(image)[None] for image, _ in pairs]
    targets = [detdata.to_target(boxes) for _, boxes in pairs]
    optimizer = torch.optim.AdamW(network.parameters(), lr=0.003)
    history = []
    for _ in range(25):
        loss = sum(network(images, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history.append(loss.item())
    assert np.mean(history[-3:]) < 0.7 * np.mean(history[:3])


def test_stock_backbones_build_and_run():
    for backbone in ("mobilenet_v3_large_fpn", "resnet50_fpn"):
        network = build_model(replace(tiny_config().model, backbone=backbone)).eval()
        with torch.inference_mode():
            out = network([torch.rand(1, 64, 64)])[0]
        assert out["boxes"].shape[1] == 4
    with pytest.raises(ValueError, match="unknown detector backbone"):
        build_model(replace(tiny_config().model, backbone="vgg"))


def test_save_load_round_trip_and_detect_api(tmp_path):
    torch.manual_seed(0)
    config = tiny_config()
    network = build_model(config.model).eval()
    thresholds = {"thresholds.json": json.dumps({"score_threshold": 0.0})}
    ModelFolder.save(tmp_path / "model", network, config, "detector", thresholds)
    model = load_model(tmp_path / "model")
    image, _ = bars_image(0)
    boxes, scores = detect(model, image)
    with torch.inference_mode():
        reference = network([torch.from_numpy(image)[None]])[0]
    np.testing.assert_allclose(boxes, reference["boxes"].numpy(), atol=1e-5)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32 and boxes.shape[1] == 4
    assert np.all(np.diff(scores) <= 0)
    assert np.all(boxes[:, 2] <= 64) and np.all(boxes[:, 0] >= 0)
    batch = detect_batch(model, [image, image[:48]])
    np.testing.assert_allclose(batch[0][0], boxes, atol=1e-4)
    high = detect(model, image, score_threshold=float(np.median(scores)) if len(scores) else 1.0)
    scaled, _ = detect(model, image, input_scale=2.0)
    assert scaled.shape[1] == 4 and (len(scaled) == 0 or scaled.max() <= 64)
    assert len(high[0]) <= len(boxes)
    with pytest.raises(ValueError, match="grey"):
        detect(model, np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ModelError, match="not a detector model folder"):
        load_model(tmp_path / "nothing")
    segmenter_folder = Path(__file__).resolve().parents[1] / "segmenter" / "pretrained"
    (tmp_path / "model" / "weights.pt").write_bytes((segmenter_folder / "weights.pt").read_bytes())
    with pytest.raises(ModelError, match="not a usable detector model") as raised:
        load_model(tmp_path / "model")
    assert "\n" not in str(raised.value)  # one line for the user


def test_otsu_baseline_and_nuclei():
    image, boxes = bars_image(2)
    found, scores = otsu_boxes(image)
    assert len(found) == 3 and np.all(scores == 1.0)
    np.testing.assert_array_equal(found[np.argsort(found[:, 1])], boxes)
    blob = np.zeros((80, 80), np.float32)
    blob[10:50, 10:50] = 1.0  # 1600 px, unlabelled: a nucleus
    blob[60:65, 10:60] = 1.0  # labelled chromosome
    labels = np.zeros((80, 80), np.uint8)
    labels[60:65, 10:60] = 4
    nuclei = nucleus_mask(blob, labels)
    assert nuclei[20, 20] and not nuclei[62, 30]
    on = boxes_on_nuclei(np.array([[10, 10, 50, 50], [10, 60, 60, 65]], np.float32), nuclei)
    assert on.tolist() == [True, False]


def test_train_eval_detect_commands(tmp_path, capsys):
    data = write_adir(tmp_path / "data", ["Z01", "Z02", "Z03", "Z04"])  # unknown to the split
    config_path = tmp_path / "tiny.yaml"
    config_path.write_text(yaml.safe_dump(to_dict(tiny_config())))
    run = tmp_path / "run"
    args = [
        "train",
        "detector",
        "--config",
        str(config_path),
        "--data",
        str(data),
        "--out",
        str(run),
        "--device",
        "cpu",
    ]
    assert main(args) == 0
    for name in (
        "config.yaml",
        "weights.pt",
        "thresholds.json",
        "metrics.json",
        "train_log.csv",
        "split.json",
    ):
        assert (run / "model" / name).is_file()
    assert (run / "checkpoint.pt").is_file() and (run / "train.log").is_file()
    # the same resume rules as the segmenter's: the schedule spans the run's own epochs
    assert main([*args, "--resume", "--epochs", "2"]) == 2
    assert "own schedule of 1 epochs" in capsys.readouterr().err
    assert main([*args, "--resume"]) == 0  # a finished run: nothing left to do
    assert len((run / "train_log.csv").read_text().splitlines()) == 2  # header + 1 epoch

    # fine-tuning for 0 epochs gives back the weights it started from, and records them
    tuned = [*args[:-3], str(tmp_path / "tuned"), "--init", str(run / "model"), "--epochs", "0"]
    assert main(tuned) == 0
    start = torch.load(run / "model" / "weights.pt")
    for name, value in torch.load(tmp_path / "tuned" / "model" / "weights.pt").items():
        assert torch.equal(value, start[name]), name
    saved = yaml.safe_load((tmp_path / "tuned" / "model" / "config.yaml").read_text())
    assert saved["train"]["init"]["folder"] == str(run / "model")
    other = tiny_config()
    other.model.out_channels += 8
    config_path.write_text(yaml.safe_dump(to_dict(other)))
    assert main(tuned) == 2  # another network: a clear error
    capsys.readouterr()
    assert main([*args, "--resume", "--init", str(run / "model")]) == 2
    assert "takes no --init" in capsys.readouterr().err

    metrics_path, predictions_path = tmp_path / "m.json", tmp_path / "p.json"
    assert (
        main(
            [
                "eval",
                "detector",
                "--model",
                str(run / "model"),
                "--data",
                str(data),
                "--json",
                str(metrics_path),
                "--predictions",
                str(predictions_path),
                "--overlays",
                str(tmp_path / "errors"),
            ]
        )
        == 0
    )
    metrics = json.loads(metrics_path.read_text())
    pictures = sorted(path.name for path in (tmp_path / "errors").iterdir())
    assert len(pictures) == metrics["images"] and pictures[0].endswith(".errors.png")
    assert metrics["true_clusters"] == 3 * metrics["images"]
    assert metrics["baseline_otsu"]["recall"] == 1.0
    per_slide = metrics["per_slide"]
    assert sorted(per_slide) == metrics["slides"]
    for count in ("images", "true_clusters"):
        assert sum(slide[count] for slide in per_slide.values()) == metrics[count]
    for count in ("tp", "fp", "fn"):
        assert sum(slide[count] for slide in per_slide.values()) == metrics["detector"][count]
    for entry in json.loads(predictions_path.read_text()):
        assert set(entry) >= {"file_name", "bbox", "score"} and len(entry["bbox"]) == 4

    import cv2

    image, _ = bars_image(0)
    cv2.imwrite(str(tmp_path / "bars.png"), np.round(255 - image * 255).astype(np.uint8))
    (tmp_path / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "detected"
    code = main(
        [
            "detect",
            str(tmp_path / "bars.png"),
            str(tmp_path / "broken.png"),
            "--model",
            str(run / "model"),
            "--out",
            str(out),
        ]
    )
    assert code == 2  # one unreadable input: reported, the other image still done
    assert "broken.png: not a readable image" in capsys.readouterr().err
    record = json.loads((out / "bars.boxes.json").read_text())
    assert record["width"] == 64 and (out / "bars.overlay.png").is_file()
    assert record["chromosome_width_px"] > 0 and record["input_scale"] > 0  # measured
    assert (
        main(
            [
                "eval",
                "detector",
                "--model",
                str(tmp_path),
                "--data",
                str(data),
                "--json",
                str(metrics_path),
            ]
        )
        == 2
    )


def test_shipped_model_loads_and_finds_bars():
    model = load_model()
    assert 0.0 < model.score_threshold < 1.0
    image = np.full((200, 240), 0.03, np.float32)
    for row, col in ((40, 40), (100, 120), (150, 60)):
        image[row : row + 8, col : col + 40] = 0.8  # chromosome-like bars, ADIR scale
    boxes, scores = detect(model, image)
    assert boxes.dtype == np.float32 and scores.dtype == np.float32
    assert len(boxes) >= 3
    metrics = json.loads((PRETRAINED / "metrics.json").read_text())
    assert {"detector", "baseline_otsu", "score_threshold"} <= set(metrics)


def test_bf16_inference_runs_the_backbone_only_in_bf16_and_keeps_the_boxes(monkeypatch):
    from pipeline.core import device

    image = np.full((200, 240), 0.03, np.float32)
    for row, col in ((40, 40), (100, 120), (150, 60)):
        image[row : row + 8, col : col + 40] = 0.8
    plain, fast = load_model(bf16=False), load_model(bf16=True)
    assert not isinstance(plain.network.backbone, Bf16Backbone)
    assert isinstance(fast.network.backbone, Bf16Backbone)
    features = fast.network.backbone(torch.from_numpy(image)[None, None])
    assert features.dtype == torch.float32  # the heads decode boxes in float32
    (boxes, scores), (fast_boxes, fast_scores) = detect(plain, image), detect(fast, image)
    assert len(fast_boxes) == len(boxes) >= 3
    nearest = np.abs(boxes[:, None] - fast_boxes[None]).max(axis=2).min(axis=1)
    assert nearest.max() < 2.0  # px
    assert np.abs(np.sort(fast_scores) - np.sort(scores)).max() < 0.05
    monkeypatch.setattr(device, "bf16_available", lambda _: False)
    assert not isinstance(load_model(bf16="auto").network.backbone, Bf16Backbone)  # fp32 there


def test_a_chromosome_that_k_leaves_out_is_painted_out_where_the_karyotype_says_so(tmp_path):
    """A bright chromosome-sized bar at 0 in K: painted with the background in an image whose
    Case Info says a chromosome is missing (45,XY,-2), left as it is in a complete one."""
    images = {}
    for karyotype in ("45,XY,-2", "46,XY"):
        folder = tmp_path / karyotype / f"A01__{karyotype}"
        folder.mkdir(parents=True)
        k = np.zeros((60, 80), np.uint8)
        k[10:16, 10:40] = 1
        dapi = np.full(k.shape, 10, np.uint8)
        dapi[k > 0] = 200
        dapi[40:46, 30:65] = 190  # unlabelled
        tifffile.imwrite(folder / "A0101XYD.tif", dapi)
        tifffile.imwrite(folder / "A0101XYK.tif", k)
        (folder / adir.CASE_INFO).write_text(karyotype + "\n")
        samples, painted = detdata.load_samples(adir.find_images(tmp_path / karyotype))
        images[karyotype] = (samples[0].image, painted)
    missing, painted = images["45,XY,-2"]
    assert painted == 1 and missing[40:46, 30:65].max() < 0.1 and missing[12, 20] > 0.9
    complete, painted = images["46,XY"]
    assert painted == 0 and complete[40:46, 30:65].min() > 0.8
    kept, painted = detdata.load_samples(adir.find_images(tmp_path / "45,XY,-2"), paint_out=False)
    assert painted == 0 and kept[0].image[40:46, 30:65].min() > 0.8  # train.paint_out: false
