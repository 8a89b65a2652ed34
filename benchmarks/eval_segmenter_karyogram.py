"""Segmenter on G-banded chromosomes, each alone: the KICS karyogram, labelled, or mined singles.

    python benchmarks/eval_segmenter_karyogram.py --data ../shared/data/kics_karyogram \
        [--model DIR] [--json OUT] [--montage OUT.png]
    python benchmarks/eval_segmenter_karyogram.py --data MINED [--model DIR] ...

``MINED``: the output of ``chromoseg mine-singles`` (one ADIR-format folder per image): every
mined single (a connected piece of its ``K.tif``) is scored as a KICS chromosome is, against its
mined mask (Otsu's foreground, not a hand-drawn label). Mined from the unlabelled G-band images,
they are a G-band validation set that leaves the KICS karyogram for the final figure. The model
is the shipped G-band one (``segmenter/pretrained_gband``) unless ``--model`` names another.

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

import cv2
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


def labelled_images(folder: Path):
    """``(normalised image, instance labels int32)`` of the KICS karyogram in ``folder``, or of
    every mined-singles image under it (ids in that image)."""
    if (folder / "labelled.png").is_file():
        labels = np.asarray(Image.open(folder / "labelled.png")).astype(np.int32)
        yield normalise(read_image(folder / "mHomSap_male.jpeg")), labels
        return
    for mask_path in sorted(folder.rglob("*K.tif")):
        image = normalise(read_image(mask_path.with_name(mask_path.name[:-5] + "D.tif")))
        yield image, cv2.connectedComponents((read_image(mask_path) > 0).astype(np.uint8))[1]


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
    parser.add_argument(
        "--data", type=Path, required=True, help="KICS karyogram folder or mined singles"
    )
    parser.add_argument(
        "--model",
        default=api.PRETRAINED_DARK,
        help="segmenter model folder (default: the shipped G-band model, "
        "segmenter/pretrained_gband, which chromoseg run uses for dark-chromosome images)",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--montage", type=Path, help="write image | truth | prediction here")
    args = parser.parse_args()
    model = api.load_model(args.model)
    images, truths, ids = [], [], []
    for image, labels in labelled_images(args.data):
        found = chromosome_crops(image, labels, model.margin)
        images += list(found[0])
        truths += list(found[1])
        ids += [len(ids) + i + 1 for i in range(len(found[2]))]
    images, truths = np.stack(images), np.stack(truths)
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
