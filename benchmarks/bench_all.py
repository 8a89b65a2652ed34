"""Speed and memory of chromoseg on a batch of real metaphases, against Mask R-CNN.

    python benchmarks/bench_all.py [INPUT ...] [--images 20] [--repeats 3] [--json FILE]

INPUT: image files or folders (default: the ADIR samples in data/samples/adir, repeated to make
--images images). In one invocation, each measurement in its own child process (so that its peak
memory is its own: ``ru_maxrss`` of the child, imports and models included):

- ``detector``: the shipped detector on each image, one image at a time (latency per image);
- ``segmenter``: the shipped U-Net on all crops of the batch in the pipeline's batch size
  (crops per second, and seconds per metaphase's worth of crops);
- ``pipeline``: the whole in-process engine (read, detect, segment, stitch, measure, write every
  output) over the batch into a fresh folder: metaphases per second;
- ``dask``: the same batch through ``--engine dask`` on a local cluster of --dask-workers
  worker processes (1 thread each), cluster started and warmed up before timing; peak memory is
  the sum over the client and the workers;
- ``reference``: torchvision ``maskrcnn_resnet50_fpn(weights=None, weights_backbone=None)`` in
  eval mode under ``torch.no_grad`` at its default size (min_size 800, max_size 1333) on
  --reference-images of the same images, one at a time.

Every figure is the median of --repeats timed runs after one warm-up run, with the same number of
torch threads (--threads) everywhere. Prints a table and the ratio Mask R-CNN / pipeline seconds per
metaphase, and writes everything as JSON (--json).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "data" / "samples" / "adir"
MEASUREMENTS = ("detector", "segmenter", "pipeline", "dask", "reference")
TARGETS = {"ratio": 10.0, "metaphases_per_s": 1.5}


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far, MB (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(function, repeats: int) -> list[float]:
    """Seconds taken by ``function()``: one untimed warm-up call, then ``repeats`` timed calls."""
    function()
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - start)
    return seconds


def batch_paths(inputs: list[str], count: int) -> list[Path]:
    """``count`` image paths: the inputs' images (``pipeline.inputs.find_jobs``) cycled."""
    from pipeline.inputs import find_jobs

    paths = [job.path for job in find_jobs(inputs or [str(SAMPLES)])]
    return [paths[i % len(paths)] for i in range(count)]


def load_grey(paths: list[Path]) -> list:
    """The normalised float32 grey images, as every stage takes them."""
    from pipeline.imageio import normalise, read_image

    return [normalise(read_image(path)) for path in paths]


def measure_reference(spec: dict) -> dict:
    """Mask R-CNN ResNet-50 FPN (random weights) per-image inference at its default size."""
    import torch
    import torchvision

    torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    model = torchvision.models.detection.maskrcnn_resnet50_fpn(
        weights=None, weights_backbone=None
    ).eval().to(device)
    images = [
        torch.from_numpy(grey).to(device)[None].expand(3, -1, -1)
        for grey in load_grey(batch_paths(spec["inputs"], spec["reference_images"]))
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

    seconds = timed(run_all, spec["repeats"])
    per_image = statistics.median(seconds) / len(images)
    return {
        "images": len(images),
        "runs_s": seconds,
        "s_per_metaphase": per_image,
        "metaphases_per_s": 1 / per_image,
        "detections_per_image": statistics.mean(detections),
        "input_size": list(images[0].shape[1:]),
    }


MEASURES = {"reference": measure_reference}


def run_child(name: str, spec: dict) -> dict:
    """Run one measurement in a fresh Python process; return its result (with peak memory)."""
    process = subprocess.run(
        [sys.executable, __file__, "--child", name],
        input=json.dumps(spec), capture_output=True, text=True, cwd=ROOT,
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


def machine() -> dict:
    import torch

    return {
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("inputs", nargs="*", help="image files or folders (default: samples)")
    parser.add_argument("--images", type=int, default=20, help="images in the batch")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs after the warm-up")
    parser.add_argument("--reference-images", type=int, default=3,
                        help="images for Mask R-CNN (slow: seconds each on a CPU)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--dask-workers", type=int, default=2)
    parser.add_argument("--only", default=",".join(MEASUREMENTS),
                        help="comma-separated measurements to run")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--child", choices=MEASUREMENTS, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child_main(args.child)
    spec = {
        "inputs": args.inputs, "images": args.images, "repeats": args.repeats,
        "reference_images": args.reference_images, "threads": args.threads,
        "device": args.device, "dask_workers": args.dask_workers,
    }
    results = {"spec": spec, "machine": machine()}
    for name in args.only.split(","):
        print(f"measuring {name} ...", flush=True)
        results[name] = run_child(name, spec)
        print(f"  {json.dumps(results[name])}", flush=True)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
