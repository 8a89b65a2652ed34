"""Speed and memory of chromoseg on a batch of real metaphases, against Mask R-CNN.

    python benchmarks/bench_all.py [INPUT ...] [--images 20] [--repeats 3] [--json FILE]

INPUT: image files or folders (default: the ADIR samples in data/samples/adir, repeated to make
--images images). In one invocation, each measurement in its own child process (so that its peak
memory is its own: ``ru_maxrss`` of the child, imports and models included):

- ``detector``: the shipped detector on each image, one image at a time (latency per image);
- ``segmenter``: the shipped U-Net on all crops of the batch in the pipeline's batch size
  (crops per second, and seconds per metaphase's worth of crops);
- ``pipeline``: the whole in-process engine (read, detect, segment, stitch, measure, write every
  output) over the batch into a fresh folder: metaphases per second; its CPU time and peak
  memory include its worker processes (``benchmarks/process_memory.py``);
- ``dask``: the same batch through ``--engine dask`` on a local cluster of --dask-workers
  worker processes (1 thread each), cluster started and warmed up before timing; peak memory is
  the sum over the client and the workers;
- ``reference``: torchvision ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` in
  eval mode under ``torch.no_grad`` at its default size (min_size 800, max_size 1333) on
  --reference-images of the same images, one at a time.

Every figure is the median of --repeats timed runs after one warm-up run, with the same number of
torch threads (--threads) everywhere; wall time, and CPU time (all threads; for dask, client and
workers), which other processes on a shared machine disturb less. Other processes slow
multi-threaded torch far more than their share of the CPU: the 1-minute load average before each
measurement is recorded, and --wait-for-idle waits for it to fall first. Prints a table, the
ratio Mask R-CNN / pipeline in seconds per metaphase and the targets, and writes everything as
JSON (--json).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from process_memory import TreeMemory

from pipeline.core.files import write_json

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "adir"
MEASUREMENTS = ("detector", "segmenter", "pipeline", "dask", "reference")
TARGETS = {"ratio": 10.0, "metaphases_per_s": 1.5}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function, repeats: int, cpu_clock=time.process_time) -> tuple[list, list]:
    """Wall and CPU seconds (``cpu_clock``: this process, all its threads) taken by each of
    ``repeats`` timed calls of ``function()``, after one warm-up call (the first of each list)."""
    walls, cpus = [], []
    for _ in range(repeats + 1):
        cpu, start = cpu_clock(), time.perf_counter()
        function()
        walls.append(time.perf_counter() - start)
        cpus.append(cpu_clock() - cpu)
    return walls, cpus


def figures(walls: list, cpus: list, images: int) -> dict:
    """Per-metaphase figures of runs over ``images`` images: medians over the runs after the
    warm-up (the first)."""
    wall = statistics.median(walls[1:])
    return {
        "images": images,
        "warmup_s": walls[0],
        "runs_s": walls[1:],
        "s_per_metaphase": wall / images,
        "metaphases_per_s": images / wall,
        "cpu_s_per_metaphase": statistics.median(cpus[1:]) / images,
    }


def batch_jobs(inputs: list[str], count: int) -> list:
    """``count`` ImageJobs: the inputs' images (``pipeline.inputs.find_jobs``) cycled, each copy
    under its own name (``003/<image>``) so that every one gets its own outputs."""
    from pipeline.inputs import find_jobs

    jobs = find_jobs(inputs or [str(SAMPLES)])
    return [
        replace(job, image=f"{i:03d}/{job.image}", key=f"{i:03d}/{job.key}")
        for i, job in ((i, jobs[i % len(jobs)]) for i in range(count))
    ]


def load_grey(jobs: list) -> list:
    """The normalised float32 grey images, as every stage takes them."""
    from pipeline.core.imageio import normalise, read_image

    return [normalise(read_image(job.path)) for job in jobs]


def setup(spec: dict):
    """torch threads set; (config, models, jobs) for the batch."""
    import torch

    from pipeline.config import load_config
    from pipeline.models import load_models

    torch.set_num_threads(spec["threads"])
    config = load_config(spec["config"])
    return config, load_models(config, spec["device"]), batch_jobs(spec["inputs"], spec["images"])


def synchronise(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure_detector(spec: dict) -> dict:
    """The detector alone, one image per call: latency per image."""
    config, models, jobs = setup(spec)
    images = load_grey(jobs)
    latencies, boxes = [], []

    def run_all():
        latencies.clear()
        boxes.clear()
        for image in images:
            start = time.perf_counter()
            found, _ = models.detect(image)
            synchronise(spec["device"])
            latencies.append(time.perf_counter() - start)
            boxes.append(len(found))

    return {
        **figures(*timed(run_all, spec["repeats"]), len(images)),
        "latency_s": statistics.median(latencies),
        "boxes_per_image": statistics.mean(boxes),
    }


def measure_segmenter(spec: dict) -> dict:
    """The U-Net alone on every crop of the batch, ``segmenter.batch_size`` crops per call (the
    last call padded, as in the pipeline)."""
    from pipeline.run import detect_image, load_image

    config, models, jobs = setup(spec)
    detected = [detect_image(load_image(job, config["polarity"]), models, config) for job in jobs]
    crops = np.stack([item.crop(index) for item in detected for index in range(len(item.boxes))])
    batch_size = int(config["segmenter"]["batch_size"])
    one_batch = np.zeros((batch_size, *crops.shape[1:]), np.float32)
    latencies = []

    def run_all():
        for start in range(0, len(crops), batch_size):
            chunk = crops[start : start + batch_size]
            one_batch[: len(chunk)] = chunk
            one_batch[len(chunk) :] = 0
            models.segment(one_batch)
        synchronise(spec["device"])

    def run_one_batch():
        start = time.perf_counter()
        models.segment(one_batch)
        synchronise(spec["device"])
        latencies.append(time.perf_counter() - start)

    result = figures(*timed(run_all, spec["repeats"]), len(jobs))
    timed(run_one_batch, spec["repeats"])
    return {
        **result,
        "crops": len(crops),
        "batch_size": batch_size,
        "latency_per_batch_s": statistics.median(latencies[1:]),
        "crops_per_s": len(crops) / statistics.median(result["runs_s"]),
    }


def table_digest(out_dir: Path) -> str:
    """sha256 of a run's batch table (to compare engines)."""
    return hashlib.sha256((out_dir / "chromosomes.csv").read_bytes()).hexdigest()


def stage_medians(out_dir: Path) -> dict:
    """Median seconds per image of each stage, from a run's run.json."""
    entries = json.loads((out_dir / "run.json").read_text())["images"]
    stages = {name for entry in entries for name in entry["seconds"]}
    return {
        name: statistics.median(entry["seconds"][name] for entry in entries if entry["seconds"])
        for name in sorted(stages)
    }


def measure_pipeline(spec: dict) -> dict:
    """The whole in-process engine over the batch, outputs written; and one image's latency."""
    from pipeline.report import write_report
    from pipeline.run import process_image, run_batch

    config, models, jobs = setup(spec)
    work = Path(tempfile.mkdtemp(prefix="chromoseg-bench-"))
    runs = iter(range(1000))

    def run_all():
        summary = run_batch(
            jobs, models, config, work / f"run{next(runs)}", quiet=True, workers=spec["io_threads"]
        )
        assert summary.failed == 0, summary.errors

    def cpu_clock():  # this process and its worker processes (pipeline.forked), once ended
        times = os.times()
        return time.process_time() + times.children_user + times.children_system

    with TreeMemory(os.getpid()) as memory:
        result = figures(*timed(run_all, spec["repeats"], cpu_clock), len(jobs))
    result["peak_rss_mb"] = max(peak_rss_mb(), memory.peak_rss_mib)
    result["peak_pss_mb"] = memory.peak_pss_mib
    last = work / f"run{spec['repeats']}"
    latencies, _ = timed(lambda: process_image(jobs[0], models, config), spec["repeats"])
    start = time.perf_counter()
    write_report(last)
    report_seconds = time.perf_counter() - start
    return {
        **result,
        "latency_s": statistics.median(latencies[1:]),
        "stage_s_per_image": stage_medians(last),
        "chromosomes_per_image": len(pd.read_csv(last / "chromosomes.csv")) / len(jobs),
        "report_s": report_seconds,
        "table_sha256": table_digest(last),
        "outputs": str(last),
    }


def measure_dask(spec: dict) -> dict:
    """The batch through --engine dask on a warm local cluster; cluster start timed apart."""
    from pipeline.distributed import dask_client, run_dask

    config, models, jobs = setup(spec)
    work = Path(tempfile.mkdtemp(prefix="chromoseg-bench-dask-"))
    runs = iter(range(1000))
    start = time.perf_counter()
    # the local cluster that `chromoseg run --engine dask --workers N` starts
    with dask_client(None, spec["dask_workers"]) as client:
        started = time.perf_counter() - start

        def run_all():
            summary = run_dask(
                jobs,
                models,
                config,
                work / f"run{next(runs)}",
                quiet=True,
                scheduler=client.scheduler.address,
                device=spec["device"],
            )
            assert summary.failed == 0, summary.errors

        def cpu_clock():  # this process and the workers
            return time.process_time() + sum(client.run(time.process_time).values())

        # the warm-up run loads the workers' models
        result = figures(*timed(run_all, spec["repeats"], cpu_clock), len(jobs))
        worker_peaks = client.run(peak_rss_mb)
    last = work / f"run{spec['repeats']}"
    return {
        **result,
        "workers": spec["dask_workers"],
        "cluster_start_s": started,
        "stage_s_per_image": stage_medians(last),
        "peak_rss_mb_workers": sorted(worker_peaks.values()),
        "peak_rss_mb": peak_rss_mb() + sum(worker_peaks.values()),
        "table_sha256": table_digest(last),
        "outputs": str(last),
    }


def measure_reference(spec: dict) -> dict:
    """Mask R-CNN ResNet-50 FPN (random weights) per-image inference at its default size."""
    import torch
    import torchvision

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = (
        torchvision.models.detection.maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)
        .eval()
        .to(device)
    )
    images = [
        torch.from_numpy(grey).to(device)[None].expand(3, -1, -1)
        for grey in load_grey(batch_jobs(spec["inputs"], spec["reference_images"]))
    ]
    detections = []

    def run_all():
        detections.clear()
        with torch.no_grad():
            for image in images:
                output = model([image])[0]
                detections.append(len(output["boxes"]))
        if device.type == "cuda":
            torch.cuda.synchronize()

    return {
        **figures(*timed(run_all, spec["repeats"]), len(images)),
        "detections_per_image": statistics.mean(detections),
        "input_size": list(images[0].shape[1:]),
    }


MEASURES = {
    "detector": measure_detector,
    "segmenter": measure_segmenter,
    "pipeline": measure_pipeline,
    "dask": measure_dask,
    "reference": measure_reference,
}


def run_child(name: str, spec: dict) -> dict:
    """Run one measurement in a fresh Python process; return its result (with peak memory)."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", name],
        input=json.dumps(spec),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"},
    )
    if process.returncode != 0:
        return {"error": process.stderr.strip().splitlines()[-1] if process.stderr else "failed"}
    return json.loads(process.stdout.strip().splitlines()[-1])


def child_main(name: str) -> int:
    spec = json.loads(sys.stdin.read())
    result = MEASURES[name](spec)
    result.setdefault("peak_rss_mb", peak_rss_mb())
    print(json.dumps(result))
    return 0


def compare(results: dict) -> dict:
    """Ratios and target checks between the measurements that ran (wall time; CPU time too,
    which other processes on the machine disturb less)."""
    pipeline, dask, reference = (results.get(name, {}) for name in MEASUREMENTS[2:])
    out = {}
    if "s_per_metaphase" in pipeline and "s_per_metaphase" in reference:
        out["maskrcnn_over_pipeline"] = reference["s_per_metaphase"] / pipeline["s_per_metaphase"]
        out["maskrcnn_over_pipeline_cpu"] = (
            reference["cpu_s_per_metaphase"] / pipeline["cpu_s_per_metaphase"]
        )
        out["target_ratio_met"] = out["maskrcnn_over_pipeline"] >= TARGETS["ratio"]
    if "metaphases_per_s" in pipeline:
        out["target_throughput_met"] = pipeline["metaphases_per_s"] >= TARGETS["metaphases_per_s"]
    if "metaphases_per_s" in pipeline and "metaphases_per_s" in dask:
        out["dask_over_inprocess_throughput"] = (
            dask["metaphases_per_s"] / pipeline["metaphases_per_s"]
        )
        out["target_dask_met"] = out["dask_over_inprocess_throughput"] >= 1.0
        out["same_table"] = pipeline["table_sha256"] == dask["table_sha256"]
    return out


def print_table(results: dict) -> None:
    print(
        f"\n{'measurement':12} {'s/metaphase':>12} {'metaphases/s':>13} {'CPU s/metaph.':>14} "
        f"{'latency s':>10} {'peak MB':>8}"
    )
    for name in MEASUREMENTS:
        result = results.get(name)
        if not result:
            continue
        if "error" in result:
            print(f"{name:12} error: {result['error']}")
            continue
        latency = result.get("latency_s", result.get("latency_per_batch_s", float("nan")))
        print(
            f"{name:12} {result['s_per_metaphase']:12.3f} {result['metaphases_per_s']:13.2f} "
            f"{result['cpu_s_per_metaphase']:14.3f} {latency:10.3f} "
            f"{result['peak_rss_mb']:8.0f}"
        )
    comparison = results["comparison"]
    if "maskrcnn_over_pipeline" in comparison:
        print(
            f"Mask R-CNN / pipeline, seconds per metaphase: "
            f"{comparison['maskrcnn_over_pipeline']:.1f}x wall, "
            f"{comparison['maskrcnn_over_pipeline_cpu']:.1f}x CPU "
            f"(target >= {TARGETS['ratio']:.0f}x)"
        )
    if "target_throughput_met" in comparison:
        print(
            f"in-process: {results['pipeline']['metaphases_per_s']:.2f} metaphases/s "
            f"(target >= {TARGETS['metaphases_per_s']})"
        )
    if "dask_over_inprocess_throughput" in comparison:
        print(
            f"dask / in-process throughput: {comparison['dask_over_inprocess_throughput']:.2f} "
            f"(target >= 1); same chromosomes.csv: {comparison['same_table']}"
        )
    machine = results["machine"]
    print(
        f"load average (1 min) at start {machine['load_average_1min_at_start']:.2f}, at end "
        f"{machine['load_average_1min_at_end']:.2f} on {machine['cpus']} CPUs"
    )


def wait_for_idle(seconds: float, idle_load: float = 0.5) -> float:
    """Wait up to ``seconds`` for the 1-minute load average to fall below ``idle_load`` (other
    processes on a shared machine slow multi-threaded torch far more than their share); return
    the load average when done waiting."""
    deadline = time.monotonic() + seconds
    while os.getloadavg()[0] >= idle_load and time.monotonic() < deadline:
        time.sleep(5)
    return os.getloadavg()[0]


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "load_average_1min_at_start": os.getloadavg()[0],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="image files or folders (default: samples)")
    parser.add_argument("--images", type=int, default=20, help="images in the batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument(
        "--reference-images",
        type=int,
        default=3,
        help="images for Mask R-CNN (slow: seconds each on a CPU)",
    )
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--config", help="pipeline YAML (models; default: the shipped ones)")
    parser.add_argument(
        "--io-threads",
        type=int,
        default=1,
        help="in-process engine's --workers (threads that read/write images)",
    )
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument(
        "--only", default=",".join(MEASUREMENTS), help="comma-separated measurements to run"
    )
    parser.add_argument(
        "--wait-for-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each measurement, wait up to this long for the 1-minute "
        "load average to fall below 0.5 (shared machines)",
    )
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    spec = {
        "inputs": args.inputs,
        "images": args.images,
        "repeats": args.repeats,
        "reference_images": args.reference_images,
        "threads": args.threads,
        "device": args.device,
        "dask_workers": args.dask_workers,
        "config": args.config,
        "io_threads": args.io_threads,
    }
    results = {"spec": spec, "machine": machine()}
    if results["machine"]["load_average_1min_at_start"] > 0.5:
        print(
            f"warning: load average {os.getloadavg()[0]:.1f}: other processes are running, "
            "the figures will be low",
            file=sys.stderr,
        )
    for name in args.only.split(","):
        load = wait_for_idle(args.wait_for_idle)
        print(f"measuring {name} (load average {load:.2f}) ...", flush=True)
        results[name] = {**run_child(name, spec), "load_average_1min_before": load}
        print(f"  {json.dumps(results[name])}", flush=True)
    results["machine"]["load_average_1min_at_end"] = os.getloadavg()[0]
    results["comparison"] = compare(results)
    print_table(results)
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
