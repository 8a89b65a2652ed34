"""Whole-pipeline speed of ``chromoseg run`` (in-process engine) on a batch of metaphases.

    .venv/bin/python benchmarks/bench_pipeline.py [--data DIR] [--images 24] [--runs 3]

Takes ``--images`` DAPI metaphases (``*D.tif`` under ``--data``, sorted; default: the ADIR
samples in data/samples, repeated to fill the batch), runs the whole pipeline on them once to
warm up and then ``--runs`` times, each into a fresh output folder (reading, detection,
segmentation, stitching, measuring and writing every output), and prints the median wall time,
metaphases per second, the median CPU time (a figure that other programs running on the machine
disturb less than wall time; the load average is printed beside it), the median per-image time of
each step (from run.json) and the peak memory of this process and its worker processes
(``pipeline.forked``; ``benchmarks/process_memory.py``: models, images and outputs included).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

from process_memory import TreeMemory

from pipeline.config import load_config
from pipeline.core.imageio import read_image
from pipeline.inputs import find_jobs
from pipeline.models import load_models
from pipeline.run import run_batch

ROOT = Path(__file__).resolve().parent.parent


def cpu_seconds() -> float:
    """User + system CPU time of this process, its threads and its ended worker processes
    (``pipeline.forked``) so far."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def batch_folder(data: Path, count: int, folder: Path) -> None:
    """Copy ``count`` metaphases from ``data`` into ``folder`` (repeating them when fewer)."""
    sources = sorted(data.rglob("*D.tif"))
    if not sources:
        raise SystemExit(f"no *D.tif metaphase under {data}")
    folder.mkdir(parents=True)
    for index in range(count):
        source = sources[index % len(sources)]
        shutil.copyfile(source, folder / f"{index:03d}_{source.name}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "samples" / "adir")
    parser.add_argument("--images", type=int, default=24)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--config", help="pipeline YAML (default: configs/pipeline.yaml)")
    parser.add_argument("--json", type=Path, help="write the figures to this file")
    args = parser.parse_args()

    import torch

    config = load_config(args.config)
    models = load_models(config, args.device)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        batch_folder(args.data, args.images, scratch / "in")
        jobs = find_jobs([str(scratch / "in")])
        height, width = read_image(jobs[0].path).shape[:2]
        walls, cpus, steps = [], [], {}
        load_before = os.getloadavg()[0]
        with TreeMemory(os.getpid()) as memory:
            for run in range(args.runs + 1):
                out = scratch / f"out{run}"
                started, cpu_started = time.perf_counter(), cpu_seconds()
                summary = run_batch(jobs, models, config, out, quiet=True, workers=args.workers)
                wall = time.perf_counter() - started
                cpu = cpu_seconds() - cpu_started
                if summary.failed:
                    raise SystemExit(f"{summary.failed} images failed: {summary.errors[:3]}")
                if run == 0:
                    continue  # warm-up
                walls.append(wall)
                cpus.append(cpu)
                for entry in json.loads((out / "run.json").read_text())["images"]:
                    for step, seconds in entry["seconds"].items():
                        steps.setdefault(step, []).append(seconds)
                shutil.rmtree(out)
        chromosomes = summary.chromosomes
    peak_mib = max(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, memory.peak_rss_mib)
    median = statistics.median(walls)
    median_cpu = statistics.median(cpus)
    cores = os.cpu_count() or 1
    figures = {
        "images": len(jobs),
        "image_width_height": [width, height],
        "runs": args.runs,
        "workers": args.workers,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "wall_seconds": [round(w, 3) for w in walls],
        "median_wall_seconds": round(median, 3),
        "metaphases_per_second": round(len(jobs) / median, 3),
        "cpu_seconds": [round(c, 3) for c in cpus],
        "metaphases_per_cpu_second": round(len(jobs) / median_cpu, 3),
        "cores": cores,
        "load_average_before_after": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "median_seconds_per_image": {
            step: round(statistics.median(values), 4) for step, values in steps.items()
        },
        "chromosomes_per_run": chromosomes,
        "peak_rss_mib": round(peak_mib, 1),
        "peak_pss_mib": round(memory.peak_pss_mib, 1),
        "machine": f"{platform.machine()}, {platform.processor() or '?'}",
    }
    print(
        f"{len(jobs)} metaphases {width}x{height}, {args.runs} runs after a warm-up, "
        f"device {args.device}, {torch.get_num_threads()} torch threads, workers {args.workers}"
    )
    print(f"  median wall time: {median:.2f} s  ->  {len(jobs) / median:.2f} metaphases/s")
    print(f"  all runs: {', '.join(f'{w:.2f}' for w in walls)} s")
    print(
        f"  CPU time (user+sys) per run, median: {median_cpu:.2f} s -> {len(jobs) / median_cpu:.2f}"
        f" metaphases per CPU-second ({cores} cores; other load on the machine: load average "
        f"{figures['load_average_before_after'][0]:.1f} before, "
        f"{figures['load_average_before_after'][1]:.1f} after)"
    )
    print(
        "  median per image: "
        + ", ".join(
            f"{step} {seconds * 1000:.0f} ms"
            for step, seconds in figures["median_seconds_per_image"].items()
        )
    )
    print(f"  chromosomes per run: {chromosomes}")
    print(
        f"  peak memory, this process and its workers: {peak_mib:.0f} MiB resident (shared pages"
        f" counted in each), {memory.peak_pss_mib:.0f} MiB proportional (PSS)"
    )
    if args.json:
        args.json.write_text(json.dumps(figures, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
