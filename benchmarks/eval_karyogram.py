"""Detector on an image unlike its training data: the KICS G-banded karyogram, labelled.

    python benchmarks/eval_karyogram.py --data ../shared/data/kics_karyogram [--model DIR] \
        [--scales 1.0 0.75 0.5] [--json OUT]

The karyogram (``mHomSap_male.jpeg``, 1533x2004 RGB, BSD-3) has an instance mask
(``labelled.png``: 46 chromosomes, ids 1..46). True boxes are its clusters as DESIGN.md defines
them (8-connected components of the mask, >= 20 px; chromosomes of a pair that touch form one).
For each ``input_scale`` the script prints recall and precision at IoU 0.5 at the model's score
threshold, and recall with every box the network returns (score >= its ``box_score_thresh``):
what a lower threshold could reach. Its chromosomes are about twice as wide as ADIR's, so the
README advises ``--scale 0.5`` for such images.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from detector.api import detect, load_model
from detector.metrics import match
from pipeline.adir import cluster_boxes
from pipeline.imageio import normalise, read_image


def recall_precision(boxes: np.ndarray, scores: np.ndarray, truth: np.ndarray) -> dict:
    found = int(match(boxes, scores, truth).sum())
    return {
        "boxes": len(boxes),
        "recall": found / len(truth),
        "precision": found / len(boxes) if len(boxes) else 1.0,
    }


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
        kept = scores >= model.score_threshold
        at_threshold = recall_precision(boxes[kept], scores[kept], truth)
        every_box = recall_precision(boxes, scores, truth)
        results["scales"][str(scale)] = {**at_threshold, "recall_every_box": every_box["recall"]}
        print(
            f"input_scale {scale}: {at_threshold['boxes']} boxes, recall "
            f"{at_threshold['recall']:.3f}, precision {at_threshold['precision']:.3f}; "
            f"every box: recall {every_box['recall']:.3f} ({every_box['boxes']} boxes)"
        )
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
