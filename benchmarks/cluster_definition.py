"""How finely the labels fix the detector's truth: cluster boxes of masks 1-2 px off, scored.

    python benchmarks/cluster_definition.py --data ADIR [--part test] [--json OUT]

The detector's true boxes are the 8-connected components of ``K > 0`` (DESIGN.md), so whether two
neighbouring chromosomes form one cluster or two can hang on a single labelled pixel. This script
grows or shrinks every labelled mask by 1 and 2 px (``cv2.dilate`` / ``cv2.erode``, 3x3 and 5x5
squares), takes the cluster boxes of the result, and scores them as if they were a detector's
predictions against the boxes of the labels as drawn: recall, precision and F1 at IoU 0.5.

A labelling 1 px wider or narrower is as plausible as the one drawn: the masks follow a blurred
edge. The figures are then how far the targets of issue 3 (recall 0.98, precision 0.97) are from
what the labels themselves pin down.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from detector.evaluate import summarise
from pipeline.core import adir
from pipeline.core.files import write_json

CHANGES_PX = (-2, -1, 1, 2)


def changed_mask(labelled: np.ndarray, pixels: int) -> np.ndarray:
    """``labelled`` (H, W) bool grown (``pixels`` > 0) or shrunk (< 0) by ``|pixels|`` px in the
    chessboard metric: uint8 (H, W), 1 = labelled."""
    square = np.ones((2 * abs(pixels) + 1,) * 2, np.uint8)
    operation = cv2.dilate if pixels > 0 else cv2.erode
    return operation(labelled.astype(np.uint8), square)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="ADIR-format folder")
    parser.add_argument("--part", default="test", choices=["train", "val", "test"])
    parser.add_argument("--json", type=Path, help="write the figures here")
    args = parser.parse_args()
    items = adir.select(adir.find_images(args.data), args.part)
    truths, changed = [], {pixels: [] for pixels in CHANGES_PX}
    for item in tqdm(items, desc="images"):
        _, labels = adir.load(item)
        truths.append(adir.cluster_boxes(labels))
        for pixels, predictions in changed.items():
            boxes = adir.cluster_boxes(changed_mask(labels > 0, pixels))
            predictions.append((boxes, np.ones(len(boxes), np.float32)))
    results = {"part": args.part, "images": len(items), "true_clusters": sum(map(len, truths))}
    for pixels, predictions in changed.items():
        scores = summarise(predictions, truths, threshold=1.0)
        results[f"{pixels:+d} px"] = {
            key: scores[key] for key in ("tp", "fp", "fn", "recall", "precision", "f1")
        }
        print(
            f"masks {pixels:+d} px: recall {scores['recall']:.3f}, precision "
            f"{scores['precision']:.3f}, F1 {scores['f1']:.3f}"
        )
    if args.json:
        write_json(args.json, results)


if __name__ == "__main__":
    main()
