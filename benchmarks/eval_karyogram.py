"""Detector on an image unlike its training data: the KICS G-banded karyogram, labelled.

    python benchmarks/eval_karyogram.py --data ../shared/data/kics_karyogram [--model DIR] \
        [--scales 1.0 0.75 0.5] [--json OUT]

The karyogram (``mHomSap_male.jpeg``, 1533x2004 RGB, BSD-3) has an instance mask
(``labelled.png``: 46 chromosomes, ids 1..46). True boxes are its clusters as DESIGN.md defines
them (8-connected components of the mask, >= 20 px; chromosomes of a pair that touch form one).
For each ``input_scale`` the script prints recall and precision at IoU 0.5 at the model's score
threshold, and recall with every box the network returns (score >= its ``box_score_thresh``):
what a lower threshold could reach. Its chromosomes are about twice as wide as ADIR's, so the
docs/usage.md advises ``--scale 0.5`` for such images.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from detector.api import detect, load_model
from detector.metrics import counts_at, match
from pipeline.core.adir import cluster_boxes
from pipeline.core.files import write_json
from pipeline.core.imageio import normalise, read_image


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the KICS karyogram")
    parser.add_argument("--model", help="detector model folder (default: the shipped one)")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.75, 0.5])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    image = normalise(read_image(args.data / "mHomSap_male.jpeg"))
    truth = cluster_boxes(np.asarray(Image.open(args.data / "labelled.png")))
    model = load_model(args.model)
    results = {"true_clusters": len(truth), "score_threshold": model.score_threshold, "scales": {}}
    for scale in args.scales:
        boxes, scores = detect(model, image, 0.0, input_scale=scale)
        flags = match(boxes, scores, truth)  # matched by score: the same for any threshold
        at_threshold = counts_at(scores, flags, len(truth), model.score_threshold)
        every_box = counts_at(scores, flags, len(truth), 0.0)
        kept = at_threshold["tp"] + at_threshold["fp"]
        results["scales"][str(scale)] = {
            "boxes": kept,
            "recall": at_threshold["recall"],
            "precision": at_threshold["precision"],
            "recall_every_box": every_box["recall"],
        }
        print(
            f"input_scale {scale}: {kept} boxes, recall {at_threshold['recall']:.3f}, precision "
            f"{at_threshold['precision']:.3f}; every box: recall {every_box['recall']:.3f} "
            f"({len(boxes)} boxes)"
        )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
