"""How many true chromosomes reach the segmenter whole: the share lying wholly inside some box
(grown by the 4 px crop margin) as ``chromoseg run`` makes the boxes, at each image's measured
scale: the detector's boxes alone, and with the boxes added around foreground they leave
uncovered (``pipeline.coverage``). Truth: ADIR's K (``adir.chromosome_instances``).

    python benchmarks/box_coverage.py --data ../shared/data/adir_mfish/MFISH_TIFF --part val \
        --json benchmarks/results/box_coverage_val.json
"""

from __future__ import annotations

import argparse

import numpy as np

from detector.evaluate import chromosomes_inside
from pipeline.config import load_config
from pipeline.core import adir
from pipeline.core.files import write_json
from pipeline.coverage import uncovered_boxes
from pipeline.models import load_models
from pipeline.normalised import NormalisedImage
from pipeline.run import detect_boxes
from pipeline.scale import image_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--part", choices=["val", "test"], default="test")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    config = load_config(None)
    models = load_models(config, "cpu")
    detected, filled, truths = [], [], []
    for item in adir.select(adir.find_images(args.data), args.part):
        dapi, labels = adir.load(item)
        image = NormalisedImage(dapi)
        scale, width = image_scale(image, config.scale)
        boxes, scores, _ = detect_boxes(models, image, config.tiling, scale)
        extra = uncovered_boxes(image, boxes, width, scale)
        detected.append((boxes, np.ones(len(boxes))))
        filled.append((np.concatenate([boxes, extra]), np.ones(len(boxes) + len(extra))))
        truths.append(adir.masks_to_boxes(adir.chromosome_instances(labels)[0]))
    results = {
        "data": args.data,
        "part": args.part,
        "images": len(truths),
        "detector_boxes": chromosomes_inside(detected, truths, 1.0),
        "with_foreground_boxes": chromosomes_inside(filled, truths, 1.0),
    }
    write_json(args.json, results)
    print(results)


if __name__ == "__main__":
    main()
