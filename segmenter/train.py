"""Training of the segmenter (``chromoseg train segmenter``).

The epochs, checkpoints, resume rules, log and model folder are the training engine's
(``pipeline.core.engine``): run folder ``--out`` with ``train.log``, ``train_log.csv``,
``checkpoint.pt``, ``split.json`` and the model folder ``model/`` (the best validation epoch, or
the last under ``train.keep: last``),
which also gets ``metrics.json`` of the test split. This module gives the engine data, network,
optimiser, loss and validation.

Loss: per crop, cross-entropy (weighted ``1 + contact_weight`` where two chromosomes meet:
``contact_weights``) + ``dice_weight`` x soft Dice of classes A, B and overlap, taken
for the target as labelled and with A/B swapped, keeping the smaller (which chromosome is "A" is
arbitrary); target pixels of 255 (``segmenter.targets.IGNORE``) count in neither. With
``model.distance_head`` and ``train.distance_weight``, plus that weight x the mean absolute error
of the head's two maps against ``distance_targets`` (in the same A/B order as the rest).

Speed: with ``train.bf16`` (``auto``: where ``pipeline.core.device.bf16_available`` says the
device has fast bf16, AMX / AVX-512 BF16 on CPUs) the forward pass runs under bf16 autocast on
channels-last tensors, the loss in float32.

Validation score: mean permutation-invariant IoU of A, B and overlap over the val slides'
clusters of two or more chromosomes plus the synthetic sets of the val slides
(``segmenter.evaluate.SYNTHETIC_SETS``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from pipeline.core import adir, engine
from pipeline.core.device import select_device, use_bf16
from pipeline.core.errors import ConfigError
from pipeline.core.modelfolder import METRICS_FILE, SPLIT_FILE
from segmenter import api, dataset, evaluate, metrics
from segmenter.config import SegmenterConfig, TrainSettings
from segmenter.h5data import load_h5_pairs
from segmenter.model import build_model, count_macs, resolve
from segmenter.targets import IGNORE

CONTACT_RADIUS = 2  # pixels at 88x88 on either side of where two chromosomes meet
DISTANCE_STEPS = 8  # distance targets saturate this many pixels (at 88x88) inside an edge

VALIDATION = (
    "val_real_A",
    "val_real_B",
    "val_real_overlap",
    "val_synthetic_A",
    "val_synthetic_B",
    "val_synthetic_overlap",
)


def contact_weights(target, weight: float, radius: int = CONTACT_RADIUS):
    """Per-pixel cross-entropy weights ``(B, H, W)`` float32 for targets ``(B, H, W)`` int64:
    ``1 + weight`` on chromosome pixels (A, B, overlap) within ``radius`` pixels of another of
    those classes, where two chromosomes meet and a network must put the cut (the border weights
    of Ronneberger et al. 2015, for touching chromosomes instead of touching cells), 1 elsewhere.
    The same for the target with A and B exchanged."""
    import torch
    import torch.nn.functional as F

    classes = torch.stack([target == c for c in (1, 2, 3)], dim=1).float()
    near = F.max_pool2d(classes, 2 * radius + 1, stride=1, padding=radius)
    # chromosome pixels (their own class always near) with another class near as well
    contact = ((near.sum(1) - 1) * classes.sum(1)).clamp(0, 1)
    return 1 + weight * contact


def distance_targets(target, steps: int = DISTANCE_STEPS):
    """``(B, 2, H, W)`` float32 in [0, 1] for targets ``(B, H, W)`` int64: for chromosome A
    (classes A and overlap) and B (B and overlap), each pixel's chessboard distance to the
    chromosome's outside over ``steps`` (an edge pixel: 1 / ``steps``), saturating at 1; 0
    outside. Inside an overlap the two maps differ: each follows its own chromosome beneath the
    other. Ignored pixels are outside both."""
    import torch
    import torch.nn.functional as F

    overlap = target == 3
    inside = torch.stack([(target == 1) | overlap, (target == 2) | overlap], dim=1).float()
    distance = inside.clone()
    for _ in range(steps - 1):  # repeated 3x3 erosion (the crop's border does not erode)
        inside = -F.max_pool2d(-inside, 3, stride=1, padding=1)
        distance += inside
    return distance / steps


def pair_loss(
    logits,
    target,
    dice_weight: float,
    contact_weight: float = 0.0,
    distances=None,
    distance_weight: float = 0.0,
):
    """Permutation-invariant loss of logits ``(B, 4, H, W)`` against targets ``(B, H, W)`` int64
    (0..3, or 255 = ignored: such pixels add nothing); cross-entropy weighted by
    ``contact_weights`` where ``contact_weight`` is set; with ``distances`` (the distance head's
    ``(B, 2, H, W)`` logits), ``distance_weight`` x their sigmoid's mean absolute error against
    ``distance_targets``."""
    import torch
    import torch.nn.functional as F

    weights = contact_weights(target, contact_weight) if contact_weight else 1.0
    swapped = target.clone()
    swapped[target == 1], swapped[target == 2] = 2, 1
    logits = logits.float()
    valid = (target != IGNORE).unsqueeze(1).float()
    pixels = valid.sum((1, 2, 3)).clamp(min=1)
    p = torch.softmax(logits, dim=1)[:, 1:] * valid
    if distances is not None:
        predicted = torch.sigmoid(distances.float())
        wanted = distance_targets(target)  # swapping A and B swaps its two channels

    def per_crop(labels, order):
        cross_entropy = F.cross_entropy(logits, labels, ignore_index=IGNORE, reduction="none")
        onehot = F.one_hot(labels.clamp(max=3), 4).permute(0, 3, 1, 2).float()[:, 1:] * valid
        dice = (2 * (p * onehot).sum((2, 3)) + 1) / (p.sum((2, 3)) + onehot.sum((2, 3)) + 1)
        cross_entropy = (cross_entropy * weights).sum((1, 2)) / pixels
        loss = cross_entropy + dice_weight * (1 - dice).mean(1)
        if distances is not None:
            error = (predicted - wanted[:, order]).abs() * valid
            loss = loss + distance_weight * error.sum((1, 2, 3)) / (2 * pixels)
        return loss

    return torch.minimum(per_crop(target, [0, 1]), per_crop(swapped, [1, 0])).mean()


def loader_arguments(train_config: TrainSettings, device) -> dict:
    """Keyword arguments of the training ``DataLoader`` (shuffled, whole batches only)."""
    return dict(
        batch_size=train_config.batch_size,
        shuffle=True,
        num_workers=train_config.workers,
        drop_last=True,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )


def optimisation(net, train_config: TrainSettings, total_steps: int):
    """AdamW and its one-cycle schedule over ``total_steps`` optimiser steps."""
    import torch

    optimizer = torch.optim.AdamW(
        net.parameters(),
        lr=train_config.lr,
        weight_decay=train_config.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=train_config.lr,
        total_steps=max(1, total_steps),
        pct_start=max(0.1, 2 / max(1, total_steps)),  # >= 2 warm-up steps
    )
    return optimizer, scheduler


def training(net, training_set, config: SegmenterConfig, val_sets: dict, device) -> engine.Training:
    """The segmenter as the engine trains it: ``net`` (on ``device``, channels-last) on
    ``training_set`` (``dataset.TrainingSet``) with the optimiser, loss and loader of
    ``config.train``, validated on ``val_sets`` (``_validate``, predicting as the config's
    ``inference`` section says). DatasetError with less than one batch."""
    import torch
    from torch.utils.data import DataLoader

    train_config, seed = config.train, config.seed
    arguments = loader_arguments(train_config, device)
    steps = len(training_set) // arguments["batch_size"]
    if steps < 1:
        raise adir.DatasetError(
            f"only {len(training_set)} training crops, fewer than one batch "
            f"({arguments['batch_size']}): lower train.batch_size or add data"
        )
    optimizer, scheduler = optimisation(net, train_config, train_config.epochs * steps)
    generator = torch.Generator()
    dice_weight, contact_weight = train_config.dice_weight, train_config.contact_weight
    distance_weight = train_config.distance_weight
    if distance_weight and net.distance_head is None:
        raise ConfigError("train.distance_weight needs model.distance_head: true")
    model = api.Segmenter(net, config, device)

    def batches(epoch: int):
        training_set.epoch = epoch
        generator.manual_seed(seed * 1000 + epoch)
        return DataLoader(training_set, generator=generator, **arguments)

    def losses(batch) -> dict:
        images, targets = batch
        images = images.to(device, non_blocking=True, memory_format=torch.channels_last)
        targets = targets.to(device, non_blocking=True)
        features = net.features(images)
        distances = net.distance_head(features) if distance_weight else None
        loss = pair_loss(
            net.head(features), targets, dice_weight, contact_weight, distances, distance_weight
        )
        return {"loss": loss}

    def validation() -> dict:
        score, ious = _validate(model, val_sets)
        return {"score": score, **{f"val_{name}": value for name, value in ious.items()}}

    return engine.Training(
        stage=api.STAGE,
        network=net,
        optimizer=optimizer,
        scheduler=scheduler,
        batches=batches,
        losses=losses,
        validate=validation,
        columns=("loss", "score", *VALIDATION),
        bf16=use_bf16(train_config.bf16, device),
    )


def _validate(model: api.Segmenter, val_sets: dict) -> tuple[float, dict]:
    """Validation score and the pooled permutation-invariant IoU of A, B, overlap of the real
    clusters (``real_multi``) and of the synthetic sets (the rest). The score is the mean of the
    two halves' mean IoU: real clusters weigh as much as all synthetic ones together."""
    halves = {
        "real": [val_sets["real_multi"]],
        "synthetic": [pair for name, pair in val_sets.items() if name != "real_multi"],
    }
    ious, means = {}, []
    for half, pairs in halves.items():
        images = np.concatenate([images for images, _ in pairs])
        targets = np.concatenate([targets for _, targets in pairs])
        if not len(images):
            continue
        labels, _ = api.segment(model, images)
        iou = metrics.evaluate_labels(labels, targets)["permutation_invariant"]["iou"]
        named = {"A": iou["chromosome_A"], "B": iou["chromosome_B"], "overlap": iou["overlap"]}
        ious.update({f"{half}_{name}": value for name, value in named.items()})
        means.append(np.nanmean(list(named.values())))
    return float(np.mean(means)), ious


def train(
    config: SegmenterConfig,
    data_dir: str | Path,
    out: str | Path,
    resume: bool = False,
    epochs: int | None = None,
    device: str | None = None,
    h5_path: str | Path | None = None,
    init: str | Path | None = None,
    singles: list[str | Path] = (),
) -> dict:
    """Train, keep the best validation epoch (or the last), evaluate it on the test split; returns
    the test metrics (also written to ``out/model/metrics.json``).

    ``init``: a model folder whose weights the network starts from (fine-tuning; its layout
    must be the config's), recorded with its sha256 as ``train.init`` in the saved config.
    ``singles``: more ADIR-format folders (``chromoseg mine-singles``) whose single chromosomes
    join the training singles of the synthetic clusters (each ``data.singles_repeat`` times),
    recorded as ``data.singles``."""
    import torch

    run = engine.start(api.STAGE, config, out, resume, epochs, init)
    config, out, log = run.config, run.out, run.log
    data_config, train_config = config.data, config.train
    target_device = select_device(device)

    images = adir.find_images(data_dir)
    split = adir.split_for(images)
    (out / SPLIT_FILE).write_text(json.dumps(split, indent=2) + "\n")
    workers = train_config.workers
    margin, context = data_config.margin, data_config.context
    max_window = data_config.max_window
    train_data = dataset.prepare(
        adir.select(images, "train", split), margin, context, workers, max_window
    )
    if run.checkpoint is None:
        data_config.singles = [Path(folder) for folder in singles]
    for folder in data_config.singles:
        extra = dataset.prepare(adir.find_images(folder), margin, context, workers)
        # a few mined singles among thousands of labelled ones: repeated, so that they count
        train_data.singles += extra.singles * data_config.singles_repeat
        log.info(
            "%d singles from %s (each %dx)", len(extra.singles), folder, data_config.singles_repeat
        )
    if not len(train_data.ratios):
        train_data.ratios = np.asarray([data_config.default_overlap_ratio], np.float32)
    if h5_path is not None:
        h5_images, h5_targets = load_h5_pairs(h5_path)["train"]
        train_data.crops = dataset.Crops.concatenate(
            [
                train_data.crops,
                dataset.Crops(
                    h5_images,
                    h5_targets,
                    np.full(len(h5_images), 2, np.int16),
                    np.ones(len(h5_images), bool),
                ),
            ]
        )
    val_data = dataset.prepare(
        adir.select(images, "val", split), margin, context, workers, max_window
    )
    multi = val_data.crops.counts >= 2
    val_sets = {
        "real_multi": (val_data.crops.images[multi], val_data.crops.targets[multi]),
        **evaluate.synthetic_sets(
            val_data,
            data_config,
            data_config.val_synthetic // len(evaluate.SYNTHETIC_SETS),
            evaluate.SYNTHETIC_SEEDS["val"],
        ),
    }
    log.info(
        "data: %d train crops (%d of 2+ chromosomes), %d singles, overlap ratio median %.3f "
        "(%d regions); val: %d real 2+ crops, %d synthetic; label cleaning (train): %s",
        len(train_data.crops.counts),
        int((train_data.crops.counts >= 2).sum()),
        len(train_data.singles),
        float(np.median(train_data.ratios)),
        len(train_data.ratios),
        int(multi.sum()),
        sum(len(images) for name, (images, _) in val_sets.items() if name != "real_multi"),
        train_data.cleaning,
    )

    # channels-last: faster convolutions on CPU (the inference form uses it too)
    net = build_model(config.model).to(target_device, memory_format=torch.channels_last)
    engine.initialise(run, api.STAGE, net, init, resolve)
    log.info(
        "model %s: %d parameters, %.1f M multiply-adds per 88x88 crop",
        config.model,
        sum(p.numel() for p in net.parameters()),
        count_macs(net) / 1e6,
    )
    training_set = dataset.TrainingSet(train_data, data_config, config.seed)
    stage = training(net, training_set, config, val_sets, target_device)
    log.info("bf16 autocast: %s", "on" if stage.bf16 else "off")
    folder = engine.fit(run, stage)
    best = api.load_model(folder.path, str(target_device))
    sets = evaluate.held_out_sets(data_dir, split, data_config, h5_path, workers)
    results = evaluate.evaluate(best, sets)
    (folder.path / METRICS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    log.info("test metrics (the kept epoch):\n%s", evaluate.format_table(results))
    return results
