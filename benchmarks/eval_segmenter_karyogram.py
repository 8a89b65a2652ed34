"""Segmenter on G-banded chromosomes, each alone: the KICS karyogram, labelled.

    python benchmarks/eval_segmenter_karyogram.py --data ../shared/data/kics_karyogram \
        [--model DIR] [--json OUT] [--montage OUT.png]

The karyogram (``mHomSap_male.jpeg``, 1533x2004 RGB, BSD-3) has an instance mask
(``labelled.png``: 46 chromosomes, ids 1..46), each chromosome lying alone (its homologue often
a few pixels away, in the crop's margin). Every chromosome's box becomes a crop with the
segmenter's own geometry (``segmenter.crops``, the model's margin) of the image normalised as the
pipeline does (inverted: chromosomes bright, G-dark bands bright, G-light bands dim), is
segmented, and read as the stitcher reads crops (``segmenter.metrics.crop_instances``). Per
chromosome: the IoU of the best predicted piece with its label at 88x88, and the number of
pieces it was cut into (predicted pieces with more than half their pixels on it). It "comes out
as one piece" when that number is 1 and the IoU is at least 0.85.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.core.adir import masks_to_boxes
from pipeline.core.files import write_json, write_png
from pipeline.core.imageio import normalise, read_image
from segmenter import api, crops, evaluate
from segmenter.metrics import crop_instances

WHOLE_IOU = 0.85


def chromosome_crops(image: np.ndarray, labels: np.ndarray, margin: int):
    """Crops ``(N, 88, 88)`` float32 of every labelled chromosome and its own mask ``(N, 88, 88)``
    bool, ids in increasing order."""
    background = crops.background_level(image)
    ids = [int(i) for i in np.unique(labels) if i]
    masks = labels[None] == np.asarray(ids)[:, None, None]
    images, truths = [], []
    for box, mask in zip(masks_to_boxes(masks), masks, strict=True):
        geometry = crops.window_for_box(box, margin)
        images.append(crops.crop_image(image, geometry, background))
        truths.append(crops.crop_labels(mask.astype(np.uint8), geometry) > 0)
    return np.stack(images), np.stack(truths), ids


def score_chromosome(predicted: np.ndarray, truth: np.ndarray) -> tuple[float, int]:
    """Best IoU of a predicted piece with ``truth`` and how many pieces lie mostly on it."""
    pieces = crop_instances(predicted)
    best, count = 0.0, 0
    for piece in pieces:
        inter = (piece & truth).sum()
        best = max(best, inter / (piece | truth).sum())
        count += int(inter > piece.sum() / 2)
    return float(best), count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, required=True, help="folder of the KICS karyogram")
    parser.add_argument("--model", help="segmenter model folder (default: the shipped one)")
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--montage", type=Path, help="write image | truth | prediction here")
    args = parser.parse_args()
    image = normalise(read_image(args.data / "mHomSap_male.jpeg"))
    labels = np.asarray(Image.open(args.data / "labelled.png"))
    model = api.load_model(args.model)
    images, truths, ids = chromosome_crops(image, labels, model.margin)
    predicted, _ = api.segment(model, images)
    per_chromosome = []
    for chromosome_id, mine, truth in zip(ids, predicted, truths, strict=True):
        iou, pieces = score_chromosome(mine, truth)
        per_chromosome.append({"id": chromosome_id, "iou": iou, "pieces": pieces})
    whole = [c["pieces"] == 1 and c["iou"] >= WHOLE_IOU for c in per_chromosome]
    results = {
        "chromosomes": len(ids),
        "one_piece_at_iou_0.85": int(sum(whole)),
        "one_piece": int(sum(c["pieces"] == 1 for c in per_chromosome)),
        "mean_iou": float(np.mean([c["iou"] for c in per_chromosome])),
        "min_iou": float(np.min([c["iou"] for c in per_chromosome])),
        "per_chromosome": per_chromosome,
    }
    print(
        f"{results['one_piece_at_iou_0.85']} of {len(ids)} chromosomes in one piece at IoU >= "
        f"{WHOLE_IOU} ({results['one_piece']} in one piece); IoU mean "
        f"{results['mean_iou']:.3f}, min {results['min_iou']:.3f}"
    )
    for c in per_chromosome:
        if c["pieces"] != 1 or c["iou"] < WHOLE_IOU:
            print(f"  chromosome {c['id']}: {c['pieces']} pieces, IoU {c['iou']:.3f}")
    if args.json:
        write_json(args.json, results)
    if args.montage:
        truth_labels = truths.astype(np.uint8)  # the chromosome as "A"
        write_png(args.montage, evaluate.montage(images, truth_labels, predicted, columns=6))


if __name__ == "__main__":
    main()
