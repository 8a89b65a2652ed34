"""Training of the detector: ``train(config, data, out, ...)`` writes a run folder and a model.

Run folder ``out``: ``checkpoint.pt`` (dict: model, optimizer, scheduler, epoch, config; written
every epoch, ``resume=True`` continues from it), ``train_log.csv`` (one row per epoch: losses,
learning rate, validation AP50/F1/recall/precision at the best-F1 threshold, seconds),
``train.log``, ``split.json`` (the slide split trained on), and ``model/``, the finished model
folder (``detector.api``): config, weights, the score threshold with the highest F1 on the
validation slides, the log, and ``metrics.json`` of the test slides (``detector.evaluate``).
"""

from __future__ import annotations

import csv
import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from detector import data as detdata
from detector.api import Detector, save_model
from detector.evaluate import evaluate, pooled, predict, summarise
from detector.metrics import best_f1_threshold
from detector.model import build_model
from pipeline import InputError, adir
from pipeline.models import initial_weights

LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
LOG_FIELDS = (
    "epoch",
    "lr",
    "loss",
    *LOSSES,
    "val_ap50",
    "val_f1",
    "val_recall",
    "val_precision",
    "val_threshold",
    "seconds",
)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**31)


def schedule(config: dict, steps_per_epoch: int):
    """Learning-rate factor per step: linear warm-up, then cosine decay to 0 at the last step."""
    total = config["epochs"] * steps_per_epoch
    warmup = min(config["warmup_steps"], total // 2)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))

    return factor


def validate(detector: Detector, samples: list[detdata.Sample]) -> dict:
    """Validation figures at the best-F1 threshold: ap50, f1, recall, precision, threshold."""
    predictions = predict(detector, [s.image for s in samples])
    truths = [s.boxes for s in samples]
    threshold = best_f1_threshold(*pooled(predictions, truths))
    figures = summarise(predictions, truths, threshold)
    return {
        "ap50": figures["ap50"],
        "f1": figures["f1"],
        "recall": figures["recall"],
        "precision": figures["precision"],
        "threshold": threshold,
    }


def _logger(path: Path) -> logging.Logger:
    logger = logging.getLogger("chromoseg.detector.train")
    logger.setLevel(logging.INFO)
    logger.handlers.clear()
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    return logger


def train(
    config: dict,
    data_dir: str | Path,
    out: str | Path,
    epochs: int | None = None,
    resume: bool = False,
    device: str | None = None,
    init: str | Path | None = None,
) -> Path:
    """Train on the ADIR-format folder ``data_dir``; returns the finished model folder.

    ``init``: a model folder whose weights the network starts from (fine-tuning; its ``model``
    config must be this config's), recorded with its sha256 as ``train.init`` in the saved
    config."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint_path = out / "checkpoint.pt"
    checkpoint = None
    if resume:
        if init is not None:
            raise InputError("--resume continues a run from its checkpoint: it takes no --init")
        if not checkpoint_path.is_file():
            raise adir.DatasetError(f"--resume: no checkpoint in {out}")
        checkpoint = torch.load(checkpoint_path, map_location="cpu", weights_only=False)
        config = checkpoint["config"]
    if epochs is not None:
        config["train"]["epochs"] = epochs
    settings = config["train"]
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    log = _logger(out / "train.log")
    seed_everything(config["seed"])

    items = adir.find_images(data_dir)
    split = adir.split_for(items)
    (out / "split.json").write_text(json.dumps(split, indent=2) + "\n")
    parts = {part: adir.select(items, part, split) for part in ("train", "val", "test")}
    for part, chosen in parts.items():
        if not chosen:
            raise adir.DatasetError(f"no labelled images in the {part} slides of {data_dir}")
    log.info("images: %s", {part: len(chosen) for part, chosen in parts.items()})
    train_samples = detdata.load_samples(parts["train"])
    val_samples = detdata.load_samples(parts["val"])

    network = build_model(config["model"]).to(device)
    if checkpoint is None:  # a resumed run keeps its own record
        config["train"].pop("init", None)
        if init is not None:
            config["train"]["init"], initial_state = initial_weights(init, config["model"])
            network.load_state_dict(initial_state)
            log.info("initialised from %s", init)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings["lr"], weight_decay=settings["weight_decay"]
    )
    dataset = detdata.DetectionDataset(
        train_samples, detdata.build_augmentation(config["augment"], config["seed"])
    )
    steps_per_epoch = math.ceil(len(dataset) / settings["batch_size"])
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(settings, steps_per_epoch))
    first_epoch = 0
    if checkpoint is not None:
        network.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        first_epoch = checkpoint["epoch"] + 1
    log_path = out / "train_log.csv"
    if first_epoch == 0:
        with log_path.open("w", newline="") as handle:
            csv.writer(handle).writerow(LOG_FIELDS)

    detector = Detector(network, config, 0.5, device)
    for epoch in range(first_epoch, settings["epochs"]):
        started = time.perf_counter()
        dataset.transform.set_random_seed(config["seed"] + epoch)
        loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=settings["batch_size"],
            shuffle=True,
            num_workers=settings["workers"],
            collate_fn=detdata.collate,
            worker_init_fn=_seed_worker if settings["workers"] else None,
            generator=torch.Generator().manual_seed(config["seed"] + epoch),
        )
        network.train()
        sums = dict.fromkeys(("loss", *LOSSES), 0.0)
        progress = tqdm(loader, desc=f"epoch {epoch + 1}/{settings['epochs']}", leave=False)
        for images, targets in progress:
            images = [image.to(device) for image in images]
            targets = [{key: value.to(device) for key, value in t.items()} for t in targets]
            losses = network(images, targets)
            loss = sum(losses.values())
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(network.parameters(), settings["clip_grad_norm"])
            optimizer.step()
            scheduler.step()
            sums["loss"] += loss.item() / len(loader)
            for key in LOSSES:
                sums[key] += losses[key].item() / len(loader)
            progress.set_postfix(loss=f"{loss.item():.3f}")
        network.eval()
        figures = validate(detector, val_samples)
        row = {
            "epoch": epoch + 1,
            "lr": optimizer.param_groups[0]["lr"],
            **sums,
            **{f"val_{key}": value for key, value in figures.items()},
            "seconds": time.perf_counter() - started,
        }
        with log_path.open("a", newline="") as handle:
            csv.writer(handle).writerow(
                [f"{row[f]:.5g}" if isinstance(row[f], float) else row[f] for f in LOG_FIELDS]
            )
        message = " ".join(f"{f}={row[f]:.4g}" for f in LOG_FIELDS)
        log.info(message)
        tqdm.write(message)
        torch.save(
            {
                "model": network.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "epoch": epoch,
                "config": config,
            },
            checkpoint_path,
        )

    network.eval()
    figures = validate(detector, val_samples)
    thresholds = {
        "score_threshold": figures["threshold"],
        "chosen_on": "validation slides, highest pooled F1 at IoU 0.5",
        "val_slides": split["val"],
        "val": figures,
    }
    folder = save_model(network, config, out / "model", thresholds)
    (folder / "train_log.csv").write_text(log_path.read_text())
    (folder / "split.json").write_text((out / "split.json").read_text())
    detector.score_threshold = figures["threshold"]
    metrics, _ = evaluate(detector, parts["test"], "test")
    (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("model folder %s; test %s", folder, json.dumps(metrics))
    return folder
