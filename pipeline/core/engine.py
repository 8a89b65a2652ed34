"""The training engine of both stages (after torchvision's ``references/detection``: ``engine.py``
runs the epochs, ``train.py``'s resume rule continues them).

A stage gives data, network, optimiser, loss and validation (``Training``); the engine owns the
rest, the same way for both:

- ``start``: the run folder, seeding, the log, and the resume rules. ``--resume`` continues from
  ``checkpoint.pt`` with the run's own config (``--init`` refused; ``--epochs`` refused unless it
  is the run's own number: the learning-rate schedule spans the whole run).
- ``fit``: every epoch one pass over the stage's batches (progress bar, seconds spent waiting for
  data), validation, one row of ``train_log.csv``, a line in ``train.log``, ``checkpoint.pt``
  (``{"model", "optimizer", "scheduler", "epoch": the last finished epoch, 0-based, "config",
  "best_score", "best_epoch"}``, written atomically). Whenever the validation score is the best
  so far the model folder ``model/`` (``pipeline.core.modelfolder``) is written from that epoch,
  so that it always holds the best validation epoch; with ``train.keep: last`` it is written
  every epoch instead, and holds the last (a run of 0 epochs saves the network it starts with).
  At the end it gets the log and the split.

Run folder: ``train.log``, ``train_log.csv``, ``checkpoint.pt``, ``split.json`` (the stage writes
it), ``model/``.
"""

from __future__ import annotations

import csv
import logging
import os
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.core.config import parse, to_dict
from pipeline.core.errors import InputError
from pipeline.core.modelfolder import LOG_FILE, SPLIT_FILE, ModelFolder

CHECKPOINT_FILE, MODEL_FOLDER, TRAIN_LOG = "checkpoint.pt", "model", "train.log"


def seed_everything(seed: int) -> None:
    """Seed Python's, numpy's and torch's generators."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


@dataclass
class Run:
    """A training run being started or continued: its folder, config (the checkpoint's when
    resuming), the checkpoint (None for a new run) and its logger."""

    out: Path
    config: object  # the stage's config dataclass (``pipeline.core.config``)
    checkpoint: dict | None
    log: logging.Logger


def _logger(stage: str, folder: Path) -> logging.Logger:
    logger = logging.getLogger(f"chromoseg.{stage}.train")
    logger.setLevel(logging.INFO)
    logger.propagate = False
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)
    for handler in (logging.FileHandler(folder / TRAIN_LOG), logging.StreamHandler()):
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
        logger.addHandler(handler)
    return logger


def start(
    stage: str,
    config,
    out: str | Path,
    resume: bool = False,
    epochs: int | None = None,
    init=None,
) -> Run:
    """Open the run folder ``out`` (made if missing) for ``stage`` under the resume rules (module
    doc) and seed everything with the run's ``seed``. ``config``: the stage's config dataclass,
    with ``seed`` and a ``train`` section holding ``epochs`` (``epochs`` replaces it on a new run)
    and ``init``."""
    import torch

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    checkpoint = None
    if resume:
        if init is not None:
            raise InputError("--resume continues a run from its checkpoint: it takes no --init")
        if not (out / CHECKPOINT_FILE).is_file():
            raise InputError(f"--resume: no {CHECKPOINT_FILE} in {out}")
        checkpoint = torch.load(out / CHECKPOINT_FILE, map_location="cpu", weights_only=False)
        config = parse(type(config), checkpoint["config"])
        planned = config.train.epochs
        if epochs is not None and int(epochs) != planned:
            raise InputError(
                f"--resume continues the run's own schedule of {planned} epochs; start a new "
                "run (another --out) to train for a different number"
            )
    elif epochs is not None:
        config.train.epochs = int(epochs)
    seed_everything(config.seed)
    return Run(out, config, checkpoint, _logger(stage, out))


def initialise(run: Run, stage: str, network, init, resolve=lambda layout: layout) -> None:
    """Start a new run's ``network`` from the model folder ``init`` (fine-tuning; None: from
    its own initial weights), recorded with its sha256 as ``train.init`` in the run's config.
    A resumed run keeps its own record and gets its weights from the checkpoint (``fit``)."""
    if run.checkpoint is not None:
        return
    run.config.train.init = None
    if init is not None:
        folder = ModelFolder(init, stage, type(run.config))
        network.load_state_dict(folder.initial_state(run.config.model, resolve))
        run.config.train.init = folder.describe()
        run.log.info("initialised from %s", init)


@dataclass
class Training:
    """What a stage gives the engine.

    ``batches(epoch)``: the batches of one epoch (0-based; the stage seeds its loader and
    augmentation from it). ``losses(batch)``: a dict of scalar tensors, ``"loss"`` the one to
    back-propagate (the others are logged). ``validate()``: figures on the validation data,
    ``"score"`` the one to maximise. ``columns``: the loss and validation names logged, in order
    (each row also has epoch, lr, seconds and data_wait_s). ``model_files(figures)``: extra files
    (name -> text) of the model folder from the best epoch's validation figures. ``bf16``: run
    ``losses`` under bf16 autocast. ``clip_grad_norm``: clip gradients to this norm (None: not).
    """

    stage: str
    network: object  # torch.nn.Module
    optimizer: object
    scheduler: object  # stepped after every optimiser step
    batches: Callable[[int], Iterable]
    losses: Callable[[object], dict]
    validate: Callable[[], dict]
    columns: tuple[str, ...] = ("loss", "score")
    model_files: Callable[[dict], dict[str, str]] = field(default=lambda figures: {})
    bf16: bool = False
    clip_grad_norm: float | None = None


def _device(network):
    return next(network.parameters()).device


def train_one_epoch(training: Training, batches: Iterable, description: str) -> tuple[dict, float]:
    """One pass: the mean of every logged loss, and the seconds spent waiting for batches."""
    import torch
    from tqdm import tqdm

    network, optimizer = training.network, training.optimizer
    network.train()
    sums: dict[str, float] = {}
    count, waited = 0, 0.0
    progress = tqdm(batches, desc=description, leave=False)
    iterator = iter(progress)
    device = _device(network)
    while True:
        asked = time.perf_counter()
        try:
            batch = next(iterator)
        except StopIteration:
            break
        waited += time.perf_counter() - asked
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=training.bf16):
            losses = training.losses(batch)
        loss = losses["loss"]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if training.clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(network.parameters(), training.clip_grad_norm)
        optimizer.step()
        training.scheduler.step()
        for name, value in losses.items():
            sums[name] = sums.get(name, 0.0) + float(value.detach())
        count += 1
        progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return {name: total / max(count, 1) for name, total in sums.items()}, waited


def _save_atomic(state: dict, path: Path) -> None:
    import torch

    partial = path.with_name(path.name + ".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def fit(run: Run, training: Training) -> ModelFolder:
    """Train for the run's remaining epochs (module doc); returns the model folder, holding the
    best validation epoch (``train.keep: last``: the last epoch)."""
    config, out, log = run.config, run.out, run.log
    epochs = config.train.epochs
    keep_last = config.train.keep == "last"
    columns = ("epoch", "lr", *training.columns, "seconds", "data_wait_s")
    first, best_score, best_epoch = 0, -np.inf, 0
    if run.checkpoint is not None:
        training.network.load_state_dict(run.checkpoint["model"])
        training.optimizer.load_state_dict(run.checkpoint["optimizer"])
        training.scheduler.load_state_dict(run.checkpoint["scheduler"])
        first = int(run.checkpoint["epoch"]) + 1
        best_score = float(run.checkpoint["best_score"])
        best_epoch = int(run.checkpoint["best_epoch"])
        log.info("resumed after epoch %d (best validation score %.4f)", first, best_score)
    else:
        with open(out / LOG_FILE, "w", newline="") as handle:
            csv.writer(handle).writerow(columns)
    for epoch in range(first, epochs):
        started = time.perf_counter()
        losses, waited = train_one_epoch(
            training, training.batches(epoch), f"epoch {epoch + 1}/{epochs}"
        )
        training.network.eval()
        figures = training.validate()
        seconds = time.perf_counter() - started
        if figures["score"] > best_score:
            best_score, best_epoch = float(figures["score"]), epoch + 1
        if keep_last or best_epoch == epoch + 1:
            ModelFolder.save(
                out / MODEL_FOLDER,
                training.network,
                config,
                training.stage,
                training.model_files(figures),
            )
        row = {
            "epoch": epoch + 1,
            "lr": training.optimizer.param_groups[0]["lr"],
            **losses,
            **figures,
            "seconds": seconds,
            "data_wait_s": waited,
        }
        with open(out / LOG_FILE, "a", newline="") as handle:
            csv.writer(handle).writerow([_cell(row.get(name, float("nan"))) for name in columns])
        log.info(
            "epoch %d/%d %s (%.1f s, %.1f s waiting for data)%s",
            epoch + 1,
            epochs,
            " ".join(f"{name} {_cell(row.get(name, float('nan')))}" for name in training.columns),
            seconds,
            waited,
            " best" if best_epoch == epoch + 1 else "",
        )
        _save_atomic(
            {
                "model": training.network.state_dict(),
                "optimizer": training.optimizer.state_dict(),
                "scheduler": training.scheduler.state_dict(),
                "epoch": epoch,
                "config": to_dict(config),
                "best_score": best_score,
                "best_epoch": best_epoch,
            },
            out / CHECKPOINT_FILE,
        )
    folder = out / MODEL_FOLDER
    if not folder.is_dir():  # no epoch (fine-tuning for 0 epochs): the network as it stands
        training.network.eval()
        model_files = training.model_files(training.validate())
        ModelFolder.save(folder, training.network, config, training.stage, model_files)
    for name in (LOG_FILE, SPLIT_FILE):
        if (out / name).is_file():
            (folder / name).write_text((out / name).read_text())
    log.info(
        "model folder %s: epoch %d (best validation score %.4f, epoch %d)",
        folder,
        epochs if keep_last else best_epoch,
        best_score,
        best_epoch,
    )
    return ModelFolder(folder, training.stage, type(config))


def _cell(value) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)
