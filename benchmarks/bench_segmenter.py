"""Segmenter inference speed on this machine's CPU (batch of crops, median after a warm-up).

    python benchmarks/bench_segmenter.py                       # the shipped model
    python benchmarks/bench_segmenter.py --model runs/segmenter_hu2017/model
    python benchmarks/bench_segmenter.py --config configs/segmenter.yaml   # untrained layout

    python benchmarks/bench_segmenter.py --batch-sizes 16 64 --crops 256  # batch sizes compared

Prints multiply-adds per 88x88 crop, weights file size, and for each batch size (crops per
network call) crops/s: the median of --runs timed runs over --crops crops each, after --warmup
untimed ones, with the machine's load average around the timing, and the largest difference of
the class probabilities from those at the first batch size (0: the same results). --json writes
the same figures. The crops are the real cluster crops of the shipped labelled samples (--data),
cycled to --crops, so that the mirrored passes run on the crops they run on in use (those with two
or more chromosomes); noise crops (--data random) may skip them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core import adir
from pipeline.core.modelfolder import WEIGHTS_FILE
from pipeline.core.resources import resource
from segmenter import api, dataset
from segmenter.config import load_config
from segmenter.model import build_model, count_macs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--config", help="time an untrained model of this config's layout")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[api.BATCH_SIZE])
    parser.add_argument("--crops", type=int, default=64, help="crops per timed run")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument(
        "--data",
        default=str(resource("data", "samples", "adir")),
        help="labelled ADIR-format folder whose cluster crops are timed, cycled to the batch size "
        "(default: the shipped samples); 'random' for noise crops",
    )
    parser.add_argument("--json", help="also write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.config:
        config = load_config(args.config)
        model = api.Segmenter(build_model(config.model).eval(), config, torch.device("cpu"))
        weights_bytes = sum(p.numel() * 4 for p in model.net.state_dict().values())
        source = args.config
    else:
        model = api.load_model(args.model, device="cpu")
        folder = api.PRETRAINED if args.model is None else Path(args.model)
        weights_bytes = (folder / WEIGHTS_FILE).stat().st_size
        source = str(folder)
    if args.data == "random":
        crops = np.random.default_rng(0).random((args.crops, 88, 88)).astype(np.float32)
    else:
        data = model.config.data
        real = dataset.prepare(adir.find_images(args.data), data.margin, data.context).crops.images
        crops = real[np.arange(args.crops) % len(real)]
    load_before = os.getloadavg()[0]
    batch_sizes, first = [], None
    for batch_size in args.batch_sizes:
        for _ in range(max(1, args.warmup)):  # the last warm-up's probabilities are compared
            _, probabilities = api.segment(model, crops, batch_size)
        first = probabilities if first is None else first
        seconds = []
        for _ in range(args.runs):
            start = time.perf_counter()
            api.segment(model, crops, batch_size)
            seconds.append(time.perf_counter() - start)
        batch_sizes.append(
            {
                "batch_size": batch_size,
                "median_seconds_per_run": statistics.median(seconds),
                "crops_per_second_median": args.crops / statistics.median(seconds),
                "crops_per_second_best": args.crops / min(seconds),
                "max_probability_difference": float(np.abs(probabilities - first).max()),
            }
        )
    figures = {
        "model": source,
        "crops": args.data,
        "crops_per_run": args.crops,
        "macs_per_crop": count_macs(model.net),
        "weights_bytes": int(weights_bytes),
        "threads": args.threads,
        "runs": args.runs,
        "batch_sizes": batch_sizes,
        # other processes on the machine slow the timing down: the 1-minute load average
        # before and after says how busy it was (2 cores: above ~2 means shared)
        "load_average_before": load_before,
        "load_average_after": os.getloadavg()[0],
    }
    for key, value in figures.items():
        if key == "batch_sizes":
            for row in value:
                cells = (
                    f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in row.items()
                )
                print("  ".join(cells))
        else:
            print(f"{key:<26} {value:.4g}" if isinstance(value, float) else f"{key:<26} {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
