"""Seconds per training epoch of the segmenter, with and without bf16 autocast, in one invocation.

    python benchmarks/bench_segmenter_train.py --data ../shared/data/adir_mfish/MFISH_TIFF \
        [--config configs/segmenter.yaml] [--repeats 1] [--batches N] [--json OUT]

The training set of the config (the ADIR training slides' crops and the config's synthetic
clusters, augmented, through the config's data loader) is built once; then epochs run in
alternation, bf16 autocast (channels-last) then float32 (channels-last), ``--repeats`` times,
each from a fresh network and optimiser. Per epoch: wall seconds of the optimisation steps (no
validation), seconds spent waiting for the data loader and their share. ``--batches`` times only
the first N batches of each epoch (a quick look; the JSON says so).
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import platform
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core import adir, engine
from pipeline.core.config import to_dict
from pipeline.core.device import bf16_available
from pipeline.core.files import write_json
from segmenter import dataset
from segmenter.config import SegmenterConfig, load_config
from segmenter.model import build_model
from segmenter.train import training


def time_epoch(config: SegmenterConfig, training_set, bf16: bool, batches: int | None) -> dict:
    torch.manual_seed(0)
    device = torch.device("cpu")
    net = build_model(config.model).to(device, memory_format=torch.channels_last)
    stage = dataclasses.replace(training(net, training_set, config, {}, device), bf16=bf16)
    loader = stage.batches(0)
    chosen = loader if batches is None else itertools.islice(loader, batches)
    started = time.perf_counter()
    losses, waited = engine.train_one_epoch(stage, chosen, f"bf16 {bf16}")
    seconds = time.perf_counter() - started
    return {
        "bf16": bf16,
        "batches": len(loader) if batches is None else min(batches, len(loader)),
        "seconds": seconds,
        "data_wait_seconds": waited,
        "data_wait_share": waited / seconds,
        "mean_loss": losses["loss"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--config", default="configs/segmenter.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--batches", type=int, help="time only the first N batches per epoch")
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    config = load_config(args.config)
    images = adir.find_images(args.data)
    split = adir.split_for(images)
    data = config.data
    started = time.perf_counter()
    prepared = dataset.prepare(
        adir.select(images, "train", split),
        data.margin,
        data.context,
        config.train.workers,
    )
    training_set = dataset.TrainingSet(prepared, data, config.seed)
    print(f"{len(training_set)} training items prepared in {time.perf_counter() - started:.1f} s")
    epochs = []
    for _ in range(args.repeats):
        for bf16 in (True, False):
            result = time_epoch(config, training_set, bf16, args.batches)
            epochs.append(result)
            print(
                f"bf16 {'on ' if bf16 else 'off'}: {result['batches']} batches in "
                f"{result['seconds']:.1f} s, waiting for data {result['data_wait_seconds']:.1f} s "
                f"({100 * result['data_wait_share']:.1f} %)"
            )
    medians = {
        name: float(np.median([e["seconds"] for e in epochs if e["bf16"] == flag]))
        for name, flag in (("bf16", True), ("fp32", False))
    }
    summary = {
        "command": "python benchmarks/bench_segmenter_train.py "
        + " ".join(f"--{key} {value}" for key, value in vars(args).items() if value is not None),
        "machine": platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
        "bf16_available": bf16_available(torch.device("cpu")),
        "config": to_dict(config.train),
        "whole_epoch": args.batches is None,
        "epochs": epochs,
        "median_seconds": medians,
        "speed_up": medians["fp32"] / medians["bf16"],
    }
    print(
        f"median: bf16 {medians['bf16']:.1f} s, fp32 {medians['fp32']:.1f} s "
        f"({summary['speed_up']:.2f}x)"
    )
    if args.json:
        write_json(args.json, summary)


if __name__ == "__main__":
    main()
