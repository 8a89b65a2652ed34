"""Detector speed on this machine: ms per 645x517 ADIR image on the CPU, model loaded once.

    python benchmarks/bench_detector.py [--model DIR | --backbone NAME] [--image FILE] [--runs 20]
        [--threads 2]

Reads one image (default: the first sample in data/samples, else a synthetic 517x645 metaphase),
normalises it, runs ``detector.api.detect`` ``--warmup`` times, then ``--runs`` times, and prints
the median, the quartiles and the minimum of the wall time, the median CPU time of the process
(all threads; less sensitive to other programs on the machine than the wall time), the load
average, and the weights' size. Timings cover ``detect`` only (reading and normalising the image
are timed once, separately).

``--backbone`` times an untrained network of that backbone instead (``configs/detector.yaml``
otherwise), to see what a design would cost before training it; its weights' size is that of its
state_dict in float32. Random weights return other boxes than trained ones, so the time of the
box stages differs somewhat.
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
import yaml

from detector.api import PRETRAINED, WEIGHTS_FILE, Detector, detect, load_model
from detector.model import BACKBONES, build_model
from pipeline.core.imageio import normalise, read_image

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "data" / "samples"


def untrained(backbone: str) -> tuple[Detector, float]:
    """An untrained detector of ``backbone`` with the default config, and its weights in MB."""
    config = yaml.safe_load((ROOT / "configs" / "detector.yaml").read_text())
    config["model"]["backbone"] = backbone
    network = build_model(config["model"]).eval()
    size = sum(t.numel() * t.element_size() for t in network.state_dict().values())
    return Detector(network, config, 0.5, torch.device("cpu")), size / 1e6


def synthetic_metaphase(seed: int = 0) -> np.ndarray:
    """517x645 uint8: dark background with 46 bright bars, for when no sample is at hand."""
    rng = np.random.default_rng(seed)
    image = rng.normal(8, 2, (517, 645))
    for _ in range(46):
        y, x = rng.integers(60, 450), rng.integers(60, 580)
        image[y : y + 8, x : x + rng.integers(15, 60)] = 150
    return np.clip(image, 0, 255).astype(np.uint8)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--model", type=Path, default=PRETRAINED)
    chosen.add_argument("--backbone", choices=BACKBONES, help="time an untrained network")
    parser.add_argument("--image", type=Path)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    samples = sorted(SAMPLES.glob("*D.tif")) if SAMPLES.is_dir() else []
    path = args.image or (samples[0] if samples else None)
    started = time.perf_counter()
    raw = read_image(path) if path else synthetic_metaphase()
    image = normalise(raw)
    read_ms = (time.perf_counter() - started) * 1000
    if args.backbone:
        model, weights_mb = untrained(args.backbone)
    else:
        model, weights_mb = load_model(args.model), (args.model / WEIGHTS_FILE).stat().st_size / 1e6
    for _ in range(args.warmup):
        detect(model, image)
    times, cpu_times = [], []
    for _ in range(args.runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        boxes, _ = detect(model, image)
        times.append((time.perf_counter() - started) * 1000)
        cpu_times.append((time.process_time() - cpu_started) * 1000)
    quartiles = statistics.quantiles(times, n=4)
    print(
        json.dumps(
            {
                "model": f"untrained {args.backbone}" if args.backbone else str(args.model),
                "image": str(path) if path else "synthetic 517x645",
                "shape": list(image.shape),
                "boxes": len(boxes),
                "threads": args.threads,
                "runs": args.runs,
                "detect_ms_median": round(statistics.median(times), 1),
                "detect_ms_q1_q3": [round(quartiles[0], 1), round(quartiles[2], 1)],
                "detect_ms_min": round(min(times), 1),
                "detect_cpu_ms_median": round(statistics.median(cpu_times), 1),
                "load_average_1min": round(os.getloadavg()[0], 2),
                "read_and_normalise_ms": round(read_ms, 1),
                "weights_mb": round(weights_mb, 2),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
