"""How the chromosomes that the pipeline merges lie to each other, on ADIR complete karyotypes.

    python benchmarks/merged_pairs.py --data ../shared/data/adir_mfish/MFISH_TIFF --part val \
        [--config FILE] [--json OUT]

Runs the whole job (``pipeline.run.process_image``) on the complete karyotypes (46,XX / 46,XY:
every chromosome labelled, once) of one part of the split, counts why chromosomes go unmatched
(``pipeline.evaluate.error_kinds``), and sorts every pair of labelled chromosomes that lie at
least half inside one prediction (a merge) by how they meet: ``overlap`` (their masks share
pixels: a crossing), ``apart`` (they do not touch: parts of a merge of three or more), or touching
``end_to_end``, ``end_to_side`` or ``side_by_side`` (where they touch, along each one's long
axis: within the outer fifth of its length is an end).
"""

from __future__ import annotations

import argparse
from collections import Counter

import cv2
import numpy as np

from pipeline.config import load_config
from pipeline.core import adir
from pipeline.core.files import write_json
from pipeline.evaluate import image_scores, intersections
from pipeline.inputs import ImageJob
from pipeline.models import load_models
from pipeline.run import process_image
from pipeline.stitch import Instance, instances_from_masks

END = 0.2  # of a chromosome's length from either end: where it touches is an end


def long_axis(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, float, float]:
    """Centre (x, y), unit direction and the extent along it of bool ``mask``'s pixels."""
    rows, cols = np.nonzero(mask)
    points = np.stack([cols, rows], 1).astype(np.float64)
    centre = points.mean(0)
    direction = np.linalg.svd(points - centre, full_matrices=False)[2][0]
    along = (points - centre) @ direction
    return centre, direction, float(along.min()), float(along.max())


def at_an_end(mask: np.ndarray, contact: np.ndarray) -> bool:
    """Whether ``contact`` (bool, same shape) lies within ``END`` of ``mask``'s length of an end."""
    centre, direction, low, high = long_axis(mask)
    rows, cols = np.nonzero(contact)
    position = float(np.median((np.stack([cols, rows], 1) - centre) @ direction))
    share = (position - low) / max(high - low, 1.0)
    return share < END or share > 1 - END


def how_they_meet(first: np.ndarray, second: np.ndarray) -> str:
    """One of the module's kinds for two bool ``(H, W)`` chromosome masks."""
    if (first & second).any():
        return "overlap"
    contact = cv2.dilate(first.view(np.uint8), np.ones((3, 3), np.uint8)).view(bool) & second
    if not contact.any():
        return "apart"
    ends = at_an_end(first, contact) + at_an_end(second, contact)
    return ("side_by_side", "end_to_side", "end_to_end")[ends]


def merged_pairs(predicted: list[Instance], true: list[Instance], shape) -> Counter:
    """The kinds of the labelled pairs that lie at least half inside one prediction."""
    shared = intersections(predicted, true)
    areas = np.array([item.area for item in true])
    kinds: Counter = Counter()
    for row in 2 * shared >= areas[None, :]:
        inside = np.flatnonzero(row)
        masks = [true[j].full_mask(shape) for j in inside]
        for a in range(len(masks)):
            for b in range(a + 1, len(masks)):
                kinds[how_they_meet(masks[a], masks[b])] += 1
    return kinds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--part", default="val", choices=("train", "val", "test"))
    parser.add_argument("--config", help="pipeline YAML (default: configs/pipeline.yaml)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    config = load_config(args.config)
    models = load_models(config)
    images = adir.select(adir.find_images(args.data), args.part)
    complete = [image for image in images if adir.read_karyotype(image).complete]
    kinds: Counter = Counter()
    unmatched = {"true": Counter(), "predicted": Counter()}
    counts = Counter()
    for image in complete:
        _, labels = adir.load(image)
        true = instances_from_masks(adir.chromosome_instances(labels)[0])
        job = ImageJob(image.dapi_path, image.slide, image.name, image.name)
        result = process_image(job, models, config)
        scores = image_scores(result.instances, true)
        for side in unmatched:
            unmatched[side].update(scores["errors"][side])
        counts.update({key: scores[key] for key in ("predicted", "true", "matched")})
        kinds += merged_pairs(result.instances, true, labels.shape)
    out = {
        "part": args.part,
        "complete_karyotypes": len(complete),
        **dict(counts),
        "unmatched": {side: dict(values) for side, values in unmatched.items()},
        "merged_pairs": dict(kinds),
    }
    print(
        f"{len(complete)} complete karyotypes ({args.part}): {counts['true']} chromosomes, "
        f"{counts['predicted']} returned, {counts['matched']} matched"
    )
    print("unmatched, true:", dict(unmatched["true"]), "predicted:", dict(unmatched["predicted"]))
    print("labelled pairs inside one prediction:", dict(kinds))
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
