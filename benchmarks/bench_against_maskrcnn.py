"""The whole ``chromoseg run`` process against a Mask R-CNN process, on the same images.

    python benchmarks/bench_against_maskrcnn.py --data ADIR --counts 1 20 100 --repeats 3 \
        --json benchmarks/results/against_maskrcnn.json

For each N in ``--counts``: the first N metaphases (``*D.tif`` under ``--data``, sorted; cycled
when there are fewer), and, ``--repeats`` times, alternating which goes first (``--programs``:
one of them alone, e.g. chromoseg at N = 100 without Mask R-CNN's minutes):

- ``chromoseg``: ``python -m pipeline.cli run IMAGES --out DIR --quiet`` in a fresh process, with
  the shipped models and configs/pipeline.yaml's defaults (every output written, the report too);
- ``maskrcnn``: a fresh process (this script with ``--maskrcnn``) that imports torch and
  torchvision, builds torchvision's ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None,
  num_classes=2)`` (random weights, two classes as a chromosome model has: with 91 random classes
  no box passes the score threshold and the mask head never runs), eval mode, its default resize
  (min_size 800, max_size 1333), reads each image (normalised as chromoseg does, grey repeated to
  three channels), runs it under ``torch.inference_mode`` one image at a time and writes its
  instance masks (mask > 0.5) as a 16-bit label PNG.

Both processes run with ``--threads`` torch threads (default 2, this machine's cores). Each time is
the wall time from starting the process to its exit; peak memory is the largest sum of resident
memory over the process and its worker processes (``chromoseg run`` forks one per core,
``pipeline.forked``; sampled every 50 ms, ``benchmarks/process_memory.py``: shared pages counted in
each process), or the process's ``ru_maxrss`` (``os.wait4``) where that is larger; and the largest
sum of their proportional set sizes (PSS: each shared page divided among the processes sharing it).
``chromoseg``'s ``run.json`` gives the seconds from process start to its first image
(``startup_seconds``). Steady state: (N_max - N_min) / (median time at N_max - at N_min), per
process. Prints a table and writes everything as JSON (``--json``). Python's bytecode cache is on
for both (``PYTHONDONTWRITEBYTECODE``, which this development machine sets, is dropped from their
environment) and chromoseg's packages are byte-compiled before the first timed process, as an
installed package is after its first run: otherwise every chromoseg process compiled its own modules
again (about 0.1 s of start-up here; torch, torchvision and the rest come compiled from pip).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from process_memory import TreeMemory

from pipeline.core.files import write_json

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("pipeline", "detector", "segmenter")  # chromoseg's own, byte-compiled before timing


def images_for(data: Path, count: int) -> list[Path]:
    """The first ``count`` ``*D.tif`` under ``data`` (sorted), cycled when there are fewer, each
    copy under its own name so that every one gets its own outputs."""
    sources = sorted(data.rglob("*D.tif"))
    if not sources:
        raise SystemExit(f"no *D.tif metaphase under {data}")
    return [sources[index % len(sources)] for index in range(count)]


def stage(paths: list[Path], folder: Path) -> list[Path]:
    """Symbolic links to ``paths`` in ``folder``, numbered (repeats get distinct names)."""
    folder.mkdir(parents=True)
    links = []
    for index, path in enumerate(paths):
        link = folder / f"{index:03d}_{path.name}"
        link.symlink_to(path.resolve())
        links.append(link)
    return links


def timed_process(command: list[str], threads: int) -> dict:
    """Run ``command``: its wall seconds from start to exit, and the peak memory (MiB) of the
    process and its worker processes together, resident and proportional (module docstring)."""
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(threads),
        "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # module docstring: cached bytecode, as installed
    started = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    with TreeMemory(process.pid, interval=0.05) as memory:
        _, status, usage = os.wait4(process.pid, 0)
    wall = time.perf_counter() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(f"{command[:4]} ... failed with exit status {process.returncode}")
    return {
        "seconds": wall,
        "peak_mib": max(usage.ru_maxrss / 1024, memory.peak_rss_mib),
        "peak_pss_mib": memory.peak_pss_mib,
    }


def run_chromoseg(images: list[Path], out: Path, threads: int) -> dict:
    command = [sys.executable, "-m", "pipeline.cli", "run", *map(str, images)]
    timed = timed_process([*command, "--out", str(out), "--quiet"], threads)
    manifest = json.loads((out / "run.json").read_text())
    return {**timed, "startup_seconds": manifest["startup_seconds"]}


def run_maskrcnn(images: list[Path], out: Path, threads: int) -> dict:
    command = [sys.executable, __file__, "--maskrcnn", "--out", str(out), *map(str, images)]
    return timed_process(command, threads)


def maskrcnn_main(paths: list[str], out: Path) -> int:
    """The Mask R-CNN process (module docstring)."""
    import cv2
    import numpy as np
    import torch
    import torchvision

    from pipeline.core.imageio import normalise, read_image

    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None, num_classes=2
    ).eval()
    out.mkdir(parents=True, exist_ok=True)
    for path in paths:
        grey = normalise(read_image(path))
        image = torch.from_numpy(grey)[None].expand(3, -1, -1)
        with torch.inference_mode():
            masks = model([image])[0]["masks"][:, 0].numpy() > 0.5
        labels = np.zeros(grey.shape, np.uint16)
        for index, mask in enumerate(masks):
            labels[mask] = index + 1
        cv2.imwrite(str(out / f"{Path(path).stem}.labels.png"), labels)
    return 0


def summarise(runs: list[dict]) -> dict:
    seconds = [run["seconds"] for run in runs]
    summary = {
        "seconds": seconds,
        "median_seconds": statistics.median(seconds),
        "peak_mib": max(run["peak_mib"] for run in runs),
        "peak_pss_mib": max(run["peak_pss_mib"] for run in runs),
    }
    if "startup_seconds" in runs[0]:
        startup = [run["startup_seconds"] for run in runs]
        summary["startup_seconds"] = startup
        summary["median_startup_seconds"] = statistics.median(startup)
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=ROOT / "data" / "samples" / "adir")
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 20, 100])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch threads of both")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument(
        "--programs",
        nargs="+",
        choices=("chromoseg", "maskrcnn"),
        default=["chromoseg", "maskrcnn"],
        help="which processes to time (default both; one alone gives no ratio)",
    )
    parser.add_argument("--maskrcnn", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("paths", nargs="*", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.maskrcnn:
        return maskrcnn_main(args.paths, args.out)

    results = {
        "data": str(args.data),
        "threads": args.threads,
        "repeats": args.repeats,
        "machine": f"{platform.platform()}, {os.cpu_count()} CPUs",
        "load_average_1min_at_start": os.getloadavg()[0],
        "counts": {},
    }
    runners = {"chromoseg": run_chromoseg, "maskrcnn": run_maskrcnn}
    runners = {name: runners[name] for name in args.programs}
    for package in PACKAGES:  # module docstring
        compileall.compile_dir(ROOT / package, quiet=1)
    with tempfile.TemporaryDirectory() as scratch:
        for count in args.counts:
            images = stage(images_for(args.data, count), Path(scratch) / f"in{count}")
            runs = {name: [] for name in runners}
            for repeat in range(args.repeats):
                order = list(runners) if repeat % 2 == 0 else list(runners)[::-1]
                for name in order:
                    out = Path(scratch) / f"out_{name}"
                    runs[name].append(runners[name](images, out, args.threads))
                    shutil.rmtree(out)
                    print(f"N={count} {name}: {runs[name][-1]}", flush=True)
            figures = {name: summarise(value) for name, value in runs.items()}
            if len(runners) == 2:
                figures["maskrcnn_over_chromoseg"] = (
                    figures["maskrcnn"]["median_seconds"] / figures["chromoseg"]["median_seconds"]
                )
            results["counts"][str(count)] = figures
    low, high = min(args.counts), max(args.counts)
    if high > low:
        results["steady_metaphases_per_s"] = {
            name: (high - low)
            / (
                results["counts"][str(high)][name]["median_seconds"]
                - results["counts"][str(low)][name]["median_seconds"]
            )
            for name in runners
        }
    results["load_average_1min_at_end"] = os.getloadavg()[0]
    print(f"{'N':>5} {'program':>10} {'median s':>9} {'start-up s':>10} {'peak MiB RSS / PSS':>19}")
    for count, figures in results["counts"].items():
        for name in runners:
            startup = figures[name].get("median_startup_seconds")
            print(
                f"{count:>5} {name:>10} {figures[name]['median_seconds']:9.2f} "
                f"{'' if startup is None else f'{startup:.2f}':>10} "
                f"{figures[name]['peak_mib']:10.0f} / {figures[name]['peak_pss_mib']:6.0f}"
            )
        if "maskrcnn_over_chromoseg" in figures:
            print(f"{count:>5} Mask R-CNN / chromoseg: {figures['maskrcnn_over_chromoseg']:.1f}x")
    for name, rate in results.get("steady_metaphases_per_s", {}).items():
        print(f"steady state ({low} -> {high} images): {name} {rate:.3f} metaphases/s")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
