"""Does bf16 inference give the segmenter's float32 answers? Real crops, both ways, one process.

    python benchmarks/check_bf16_inference.py [--model DIR] [--data data/samples/adir] \
        [--runs 5] [--json OUT]

Every cluster crop of the labelled metaphases in ``--data`` (default: the shipped samples) is
segmented by the model as its config says (mirrored second pass included), once in float32 and
once in its bf16 form (``load_model(bf16=True)``: ``pipeline.core.inference``). Reported: the
share of pixels whose label differs, the largest probability difference, how many crops'
chromosomes (``segmenter.metrics.crop_instances``) differ at IoU 0.5 between the two, and crops/s
both ways (median of ``--runs`` timed passes over all crops, alternating).
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import torch

from pipeline.core import adir
from pipeline.core.device import bf16_available
from pipeline.core.files import write_json
from segmenter import api, dataset, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", help="segmenter model folder (default: the shipped one)")
    parser.add_argument("--data", default="data/samples/adir", help="ADIR-format folder")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    torch.set_num_threads(2)
    full = api.load_model(args.model, "cpu", bf16=False)
    half = api.load_model(args.model, "cpu", bf16=True)
    data = full.config.data
    prepared = dataset.prepare(adir.find_images(args.data), data.margin, data.context)
    crops = prepared.crops.images
    (labels32, p32), (labels16, p16) = (api.segment(m, crops) for m in (full, half))
    _, same = metrics.separation(labels16, labels32)
    timings = {"fp32": [], "bf16": []}
    for _ in range(args.runs):
        for name, model in (("fp32", full), ("bf16", half)):
            started = time.perf_counter()
            api.segment(model, crops)
            timings[name].append(len(crops) / (time.perf_counter() - started))
    results = {
        "crops": int(len(crops)),
        "pixels_with_other_label": float((labels16 != labels32).mean()),
        "max_probability_difference": float(np.abs(p16 - p32).max()),
        "crops_with_other_chromosomes": int((~same).sum()),
        "crops_per_second": {k: statistics.median(v) for k, v in timings.items()},
        "bf16_available": bf16_available(torch.device("cpu")),
    }
    print(
        f"{results['crops']} crops: {100 * results['pixels_with_other_label']:.3f} % of pixels "
        f"labelled otherwise, largest probability difference "
        f"{results['max_probability_difference']:.3f}, {results['crops_with_other_chromosomes']} "
        f"crops with other chromosomes at IoU 0.5; crops/s fp32 "
        f"{results['crops_per_second']['fp32']:.0f}, bf16 {results['crops_per_second']['bf16']:.0f}"
    )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
