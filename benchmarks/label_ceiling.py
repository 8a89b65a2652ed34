"""How closely K's drawn chromosome edges follow the DAPI image: an indication of how far a
segmenter can agree with K on real clusters.

    python benchmarks/label_ceiling.py --data ../shared/data/adir_mfish/MFISH_TIFF --part test \
        --json benchmarks/results/segmenter/label_ceiling_test.json

For every real cluster crop of the part's slides (the segmenter's own crops and label cleaning,
``segmenter.evaluate.held_out_sets``), the crop is thresholded at 37 levels between its median and
the brightest chromosome pixel, and the 8-connected piece that covers most of the chromosome
pixels is kept; of the 37, the level that agrees best with K is chosen **knowing K**. Its pooled
IoU with K's chromosome pixels (A, B and overlap together) is what an image threshold can reach
at best, crop by crop. A network may do better than any one threshold (it sees shapes), so this is
not a bound; it says how much of the edge that K draws the image itself pins down.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.files import write_json
from segmenter import evaluate
from segmenter.config import load_config
from segmenter.targets import IGNORE

LEVELS = np.linspace(0.05, 0.95, 37)


def best_threshold_counts(image: np.ndarray, target: np.ndarray) -> tuple[int, int]:
    """Intersection and union with K's chromosome pixels of the best of ``LEVELS`` for one crop
    (``image`` float32 ``(H, W)``, ``target`` uint8 ``(H, W)``, 255 ignored)."""
    valid = target != IGNORE
    truth = (target > 0) & valid
    if not truth.any():
        return 0, 0
    low, high = float(np.median(image)), float(image[truth].max())
    best = (0, int(truth.sum()))
    for level in LEVELS:
        count, pieces = cv2.connectedComponents(
            (image > low + level * (high - low)).astype(np.uint8), connectivity=8
        )
        if count < 2:
            continue
        cover = np.bincount(pieces[truth], minlength=count)
        cover[0] = 0
        piece = (pieces == cover.argmax()) & valid
        inter, union = int((piece & truth).sum()), int((piece | truth).sum())
        if inter * best[1] > best[0] * union:
            best = (inter, union)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--part", choices=("val", "test"), default="test")
    parser.add_argument("--config", default="configs/segmenter.yaml")
    parser.add_argument("--split", default="data/adir_split.json")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_config(args.config).data
    split = json.loads(Path(args.split).read_text())
    sets = evaluate.held_out_sets(args.data, split, data, workers=2, part=args.part)
    results = {}
    for name in ("real_all", "real_all_complete", "real_pairs", "real_pairs_complete"):
        images, targets = sets[name]
        if name.startswith("real_all"):  # single chromosomes only
            keep = np.array([t[t != IGNORE].max(initial=0) == 1 for t in targets], bool)
            images, targets, name = images[keep], targets[keep], name.replace("all", "singles")
        pairs = zip(images, targets, strict=True)
        counts = np.array([best_threshold_counts(image, target) for image, target in pairs])
        results[name] = {
            "crops": len(images),
            "best_threshold_iou": float(counts[:, 0].sum() / max(counts[:, 1].sum(), 1)),
        }
        print(
            f"{name:<24} {len(images):>5} crops  best-threshold IoU with K "
            f"{results[name]['best_threshold_iou']:.3f}"
        )
    if args.json:
        write_json(args.json, {"part": args.part, **results})


if __name__ == "__main__":
    main()
