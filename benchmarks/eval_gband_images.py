"""The whole job, with no flags, on the G-band images of ``../shared/data``: chromosomes found
against the counts made by eye (``data/README.md``), and the KICS karyogram against its labels.

    python benchmarks/eval_gband_images.py --data ../shared/data --out benchmarks/results/gband \
        [--config FILE] [--detector-model DIR] [--segmenter-model DIR] [--scale X]

``--config``: a pipeline config (``configs/pipeline.yaml``'s form) instead of the defaults.
``--segmenter-model``: the segmenter these images (chromosomes dark) go to, instead of the shipped
G-band one (``segmenter.model_dark``). Writes ``OUT/gband_images.json`` (per image: chromosomes
found, the count by eye, the scale the run chose and the chromosome width it measured; for the
karyogram, how many of its 46 labelled chromosomes were found at IoU >= 0.8, one to one) and
``OUT/<image>.overlay.png`` (the run's overlay, to look at).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.config import load_config
from pipeline.core.files import write_json
from pipeline.evaluate import match
from pipeline.inputs import ImageJob
from pipeline.models import load_models
from pipeline.outputs import write_overlay
from pipeline.run import process_image
from pipeline.run_cli import scale_argument
from pipeline.stitch import instances_from_masks

# counted by eye: data/README.md, "G-band images counted by eye"
BY_EYE = {
    "cil54816_gband/103071.jpg": 45,
    "irohxu_gband/raw_chromosome.jpg": 44,
    "irohxu_gband/A.tif": 48,
    "kics_karyogram/mHomSap_male.jpeg": 46,
}
KARYOGRAM_LABELS = "kics_karyogram/labelled.png"
KARYOGRAM_IOU = 0.8


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the shared data folder")
    parser.add_argument("--out", required=True)
    parser.add_argument("--config", help="a pipeline config instead of the defaults")
    parser.add_argument("--detector-model")
    parser.add_argument("--segmenter-model")
    parser.add_argument(
        "--scale", type=scale_argument, default="auto", help="a number: instead of measuring"
    )
    args = parser.parse_args()
    data, out = Path(args.data), Path(args.out)
    overrides = {}
    if args.detector_model:
        overrides["detector"] = {"model": args.detector_model}
    if args.segmenter_model:  # the images' chromosomes are dark: their segmenter is model_dark
        overrides["segmenter"] = {"model_dark": args.segmenter_model}
    overrides["scale"] = args.scale
    config = load_config(args.config, **overrides)
    models = load_models(config, "cpu")
    results = {"models": models.info, "images": {}}
    for name, counted in BY_EYE.items():
        path = data / name
        job = ImageJob(path=path, slide=path.parent.name, image=name, key=path.stem)
        result = process_image(job, models, config)
        record = {
            "found": len(result.instances),
            "counted_by_eye": counted,
            "difference": len(result.instances) - counted,
            "scale": round(result.scale, 4),
            "chromosome_width_px": result.chromosome_width,
        }
        if name.startswith("kics_karyogram/"):
            labels = np.asarray(Image.open(data / KARYOGRAM_LABELS)).astype(np.int32)
            truth = instances_from_masks(
                labels[None] == np.arange(1, labels.max() + 1)[:, None, None]
            )
            pairs = match(result.instances, truth)
            record["labelled"] = len(truth)
            record["found_at_iou_0.8"] = sum(iou >= KARYOGRAM_IOU for _, _, iou in pairs)
        results["images"][name] = record
        write_overlay(
            out / f"{path.stem}.overlay.png", result.normalised.to_uint8(), result.instances
        )
        print(name, record)
    write_json(out / "gband_images.json", results)


if __name__ == "__main__":
    main()
