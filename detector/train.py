"""Training of the detector: ``train(config, data, out, ...)`` writes a run folder and a model.

The epochs, checkpoints, resume rules, log and model folder are the training engine's
(``pipeline.core.engine``); this module gives it the data, network, optimiser, losses and
validation. Validation: AP50, F1, recall and precision on the validation slides at the threshold
with the highest F1; the score kept is that F1. The model folder ``out/model`` (``detector.api``)
gets the best validation epoch's weights (``train.keep: last``: the last epoch's), that epoch's
threshold in ``thresholds.json``, the log, the split and ``metrics.json`` of the test slides
(``detector.evaluate``).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from detector import data as detdata
from detector.api import STAGE, THRESHOLDS_FILE, Detector
from detector.config import DetectorConfig, TrainSettings
from detector.evaluate import evaluate, pooled, predict, summarise
from detector.metrics import best_f1_threshold
from detector.model import build_model
from pipeline.core import adir, engine
from pipeline.core.device import select_device, use_bf16
from pipeline.core.modelfolder import METRICS_FILE, SPLIT_FILE

LOSSES = ("loss_classifier", "loss_box_reg", "loss_objectness", "loss_rpn_box_reg")
VALIDATION = ("ap50", "f1", "recall", "precision", "threshold")


def _seed_worker(worker_id: int) -> None:
    info = torch.utils.data.get_worker_info()
    info.dataset.transform.set_random_seed(info.seed % 2**31)


def schedule(config: TrainSettings, steps_per_epoch: int):
    """Learning-rate factor per step: linear warm-up, then cosine decay to 0 at the last step."""
    total = config.epochs * steps_per_epoch
    warmup = min(config.warmup_steps, total // 2)

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
    return {name: figures[name] for name in VALIDATION[:-1]} | {"threshold": threshold}


def train(
    config: DetectorConfig,
    data_dir: str | Path,
    out: str | Path,
    epochs: int | None = None,
    resume: bool = False,
    device: str | None = None,
    init: str | Path | None = None,
    synthetic: list[str | Path] = (),
    synthetic_val: list[str | Path] = (),
) -> Path:
    """Train on the ADIR-format folder ``data_dir``; returns the finished model folder.

    ``init``: a model folder whose weights the network starts from (fine-tuning; its ``model``
    config must be this config's), recorded with its sha256 as ``train.init`` in the saved
    config. ``synthetic``: folders of ``chromoseg synth`` metaphases (any ADIR-format folders)
    whose every image joins the training images; ``synthetic_val``: likewise, the validation
    images (the threshold and the best epoch are chosen on both)."""
    run = engine.start(STAGE, config, out, resume, epochs, init)
    config, out, log = run.config, run.out, run.log
    settings = config.train
    device = select_device(device)

    items = adir.find_images(data_dir)
    split = adir.split_for(items)
    (out / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")
    parts = {part: adir.select(items, part, split) for part in ("train", "val", "test")}
    for part, chosen in parts.items():
        if not chosen:
            raise adir.DatasetError(f"no labelled images in the {part} slides of {data_dir}")
    extra_train = [item for folder in synthetic for item in adir.find_images(folder)]
    extra_val = [item for folder in synthetic_val for item in adir.find_images(folder)]
    log.info(
        "images: %s; synthetic: %d train, %d val",
        {part: len(chosen) for part, chosen in parts.items()},
        len(extra_train),
        len(extra_val),
    )
    train_samples, painted = detdata.load_samples(
        parts["train"] + extra_train, paint_out=settings.paint_out
    )
    val_samples, painted_val = detdata.load_samples(
        parts["val"] + extra_val, paint_out=settings.paint_out
    )
    log.info("unlabelled pieces painted out in %d train and %d val images", painted, painted_val)

    network = build_model(config.model).to(device)
    engine.initialise(run, STAGE, network, init)
    optimizer = torch.optim.AdamW(
        network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay
    )
    dataset = detdata.DetectionDataset(
        train_samples, detdata.build_augmentation(config.augment, config.seed)
    )
    steps_per_epoch = math.ceil(len(dataset) / settings.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule(settings, steps_per_epoch))

    def batches(epoch: int):
        dataset.transform.set_random_seed(config.seed + epoch)
        return torch.utils.data.DataLoader(
            dataset,
            batch_size=settings.batch_size,
            shuffle=True,
            num_workers=settings.workers,
            collate_fn=detdata.collate,
            worker_init_fn=_seed_worker if settings.workers else None,
            generator=torch.Generator().manual_seed(config.seed + epoch),
        )

    def losses(batch) -> dict:
        images, targets = batch
        images = [image.to(device) for image in images]
        targets = [{key: value.to(device) for key, value in t.items()} for t in targets]
        parts = network(images, targets)
        return {"loss": sum(parts.values()), **parts}

    detector = Detector(network, config, 0.5, device)

    def validation() -> dict:
        figures = validate(detector, val_samples)
        return {"score": figures["f1"], **{f"val_{k}": v for k, v in figures.items()}}

    def thresholds(figures: dict) -> dict[str, str]:
        chosen = {
            "score_threshold": figures["val_threshold"],
            "chosen_on": "validation slides, highest pooled F1 at IoU 0.5",
            "val_slides": split["val"],
            "val": {name: figures[f"val_{name}"] for name in VALIDATION},
        }
        return {THRESHOLDS_FILE: json.dumps(chosen, indent=2) + "\n"}

    training = engine.Training(
        stage=STAGE,
        network=network,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batches,
        losses=losses,
        validate=validation,
        columns=("loss", *LOSSES, *(f"val_{name}" for name in VALIDATION)),
        model_files=thresholds,
        clip_grad_norm=settings.clip_grad_norm,
        bf16=use_bf16(settings.bf16, device),
    )
    log.info("bf16 autocast: %s", "on" if training.bf16 else "off")
    folder = engine.fit(run, training)
    from detector.api import load_model

    metrics, _ = evaluate(load_model(folder.path, str(device)), parts["test"], "test")
    (folder.path / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n")
    log.info("test %s", json.dumps(metrics))
    return folder.path
