"""How many true chromosomes reach the segmenter whole: the share lying wholly inside some box
(grown by the 4 px crop margin) as ``chromoseg run`` makes the boxes, at each image's measured
scale (``pipeline.run.cluster_boxes``, run once per image): the detector's boxes alone, and with
the boxes added around foreground they leave uncovered (``pipeline.coverage``, score 0). Truth:
ADIR's K (``adir.chromosome_instances``).

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
from pipeline.models import load_models
from pipeline.normalised import NormalisedImage
from pipeline.run import cluster_boxes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--part", choices=["val", "test"], default="test")
    parser.add_argument("--json", required=True)
    args = parser.parse_args()
    config = load_config(None, detector={"fill_uncovered": True})
    models = load_models(config, "cpu")
    boxes = {False: [], True: []}
    truths = []
    for item in adir.select(adir.find_images(args.data), args.part):
        dapi, labels = adir.load(item)
        _, _, found, scores, _ = cluster_boxes(NormalisedImage(dapi), models, config)
        detector = scores > 0  # the foreground boxes score 0; the detector's at least 0.05
        boxes[False].append((found[detector], np.ones(int(detector.sum()))))
        boxes[True].append((found, np.ones(len(found))))
        truths.append(adir.masks_to_boxes(adir.chromosome_instances(labels)[0]))
    results = {
        "data": args.data,
        "part": args.part,
        "images": len(truths),
        "detector_boxes": chromosomes_inside(boxes[False], truths, 1.0),
        "with_foreground_boxes": chromosomes_inside(boxes[True], truths, 1.0),
    }
    write_json(args.json, results)
    print(results)


if __name__ == "__main__":
    main()
