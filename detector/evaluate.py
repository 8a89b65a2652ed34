"""Evaluation of the detector and of the classical baseline on labelled metaphases.

Figures (``metrics.json``, see ``evaluate``): box recall, precision and F1 at IoU 0.5 at the
model's score threshold, and AP50 (all predictions), pooled over the images; the share of true
chromosomes (``adir.chromosome_instances``) lying wholly inside some box at the threshold grown
by the crop margin (4 px); the same box figures for the global-Otsu baseline
(``detector.baseline``) on the same normalised images; and how many boxes at the threshold land
on interphase nuclei: boxes that match no true cluster and whose area is at least 30 % nucleus
pixels (``baseline.nucleus_mask``: large Otsu components, unlabelled in K).

``error_picture`` draws where the model and the labels disagree, for a look by eye.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from detector import baseline
from detector.api import GREEN, RED, YELLOW, Detector, detect_batch, draw_boxes
from detector.metrics import assign, average_precision, box_inside, counts_at, match
from pipeline.core import adir
from pipeline.core.files import write_png
from pipeline.core.imageio import normalise

IOU = 0.5
INSIDE_TOLERANCE = 4.0  # px: the shipped segmenter's crop margin
NUCLEI_DEFINITION = (
    "boxes at the threshold that match no true cluster (IoU < 0.5) and cover >= 30% nucleus "
    "pixels; nuclei = 8-connected components of the global Otsu mask with >= 1000 px, < 10% "
    "of them labelled (K > 0)"
)


def predict(model: Detector, images: list[np.ndarray], batch_size: int = 4) -> list[tuple]:
    """Every box the network returns (score >= the config's box_score_thresh) for each image."""
    results = []
    for start in range(0, len(images), batch_size):
        results += detect_batch(model, images[start : start + batch_size], score_threshold=0.0)
    return results


def pooled(predictions: list[tuple], truths: list[np.ndarray]) -> tuple:
    """Scores and true-positive flags of all predictions, and the number of true boxes."""
    scores, flags = [np.zeros(0, np.float32)], [np.zeros(0, bool)]
    for (boxes, image_scores), truth in zip(predictions, truths, strict=True):
        scores.append(image_scores)
        flags.append(match(boxes, image_scores, truth, IOU))
    return np.concatenate(scores), np.concatenate(flags), int(sum(len(t) for t in truths))


def summarise(predictions: list[tuple], truths: list[np.ndarray], threshold: float) -> dict:
    """Pooled tp/fp/fn, precision, recall, F1 at ``threshold`` and AP50 of all predictions."""
    scores, flags, n_true = pooled(predictions, truths)
    return {
        **counts_at(scores, flags, n_true, threshold),
        "ap50": average_precision(scores, flags, n_true),
    }


def nucleus_boxes(predictions, truths, nuclei, threshold) -> int:
    """How many boxes with score >= threshold match no true box and land on a nucleus."""
    total = 0
    for (boxes, scores), truth, mask in zip(predictions, truths, nuclei, strict=True):
        kept = scores >= threshold
        unmatched = ~match(boxes, scores, truth, IOU)[kept]
        total += int(np.count_nonzero(unmatched & baseline.boxes_on_nuclei(boxes[kept], mask)))
    return total


def false_positive_kinds(predictions, truths, threshold) -> dict:
    """Where the boxes with score >= threshold that match no true box lie: over several true
    clusters (each inside it, 2 px tolerance), inside one true cluster, or elsewhere (nuclei,
    debris, unlabelled blobs, badly placed boxes)."""
    kinds = {"over_several_clusters": 0, "inside_one_cluster": 0, "elsewhere": 0}
    for (boxes, scores), truth in zip(predictions, truths, strict=True):
        kept = scores >= threshold
        wrong = boxes[kept][~match(boxes, scores, truth, IOU)[kept]]
        several = box_inside(truth, wrong).sum(0) >= 2
        inside = box_inside(wrong, truth).any(1) & ~several
        kinds["over_several_clusters"] += int(several.sum())
        kinds["inside_one_cluster"] += int(inside.sum())
        kinds["elsewhere"] += int((~several & ~inside).sum())
    return kinds


def chromosomes_inside(predictions, chromosome_boxes, threshold) -> dict:
    """How many true chromosomes lie wholly inside some box with score >= threshold, grown by
    ``INSIDE_TOLERANCE`` px (the crop margin: what the segmenter sees of a box): the detector's
    share of the job when boxes need not equal the label clusters (the stitcher recovers whole
    chromosomes from a box over part of a cluster, and joins what several boxes found)."""
    inside = total = 0
    for (boxes, scores), chromosomes in zip(predictions, chromosome_boxes, strict=True):
        kept = boxes[scores >= threshold]
        if len(kept):
            inside += int(box_inside(chromosomes, kept, INSIDE_TOLERANCE).any(1).sum())
        total += len(chromosomes)
    return {"chromosomes": total, "inside": inside, "share": inside / max(total, 1)}


def error_picture(image, boxes, scores, truth, threshold) -> np.ndarray:
    """BGR uint8 ``(H, W, 3)`` picture of one normalised image ``(H, W)``: of the boxes with
    score >= threshold, those matching a true cluster in green and false positives in red; true
    clusters that no box matches (misses) in yellow."""
    kept = scores >= threshold
    boxes, assigned = boxes[kept], assign(boxes[kept], scores[kept], truth, IOU)
    missed = np.setdiff1d(np.arange(len(truth)), assigned)
    return draw_boxes(
        image, (boxes[assigned >= 0], GREEN), (truth[missed], YELLOW), (boxes[assigned < 0], RED)
    )


def coco_results(names: list[str], predictions: list[tuple]) -> list[dict]:
    """COCO results entries: file_name, image_id, category_id 1, bbox [x, y, w, h], score."""
    entries = []
    for image_id, (name, (boxes, scores)) in enumerate(zip(names, predictions, strict=True)):
        for (x0, y0, x1, y1), score in zip(boxes.tolist(), scores.tolist(), strict=True):
            entries.append(
                {
                    "file_name": name,
                    "image_id": image_id,
                    "category_id": 1,
                    "bbox": [round(x0, 2), round(y0, 2), round(x1 - x0, 2), round(y1 - y0, 2)],
                    "score": round(score, 5),
                }
            )
    return entries


def evaluate(
    model: Detector, items: list[adir.AdirImage], part: str, overlays: Path | None = None
) -> tuple[dict, list[dict]]:
    """Metrics of the model and of the baseline on labelled ADIR images, and the model's COCO
    results (every box with its score). ``part`` names the split part, for the record. With
    ``overlays``, an ``error_picture`` per image is written there as ``<name>.errors.png``.
    """
    images, truths, nuclei, names, chromosomes = [], [], [], [], []
    for item in items:
        dapi, labels = adir.load(item)
        image = normalise(dapi)
        images.append(image)
        truths.append(adir.cluster_boxes(labels))
        chromosomes.append(adir.masks_to_boxes(adir.chromosome_instances(labels)[0]))
        nuclei.append(baseline.nucleus_mask(image, labels))
        names.append(str(item.dapi_path.relative_to(item.dapi_path.parents[1])))
    predictions = predict(model, images)
    reference = [baseline.otsu_boxes(image) for image in images]
    threshold = model.score_threshold
    if overlays is not None:
        for item, image, (boxes, scores), truth in zip(
            items, images, predictions, truths, strict=True
        ):
            picture = error_picture(image, boxes, scores, truth, threshold)
            write_png(overlays / f"{item.name}.errors.png", picture)
    metrics = {
        "part": part,
        "slides": sorted({item.slide for item in items}),
        "images": len(items),
        "true_clusters": int(sum(len(t) for t in truths)),
        "nuclei": int(sum(baseline.components(mask, 1).max() for mask in nuclei)),
        "iou": IOU,
        "score_threshold": threshold,
        "detector": {
            **summarise(predictions, truths, threshold),
            "boxes_on_nuclei": nucleus_boxes(predictions, truths, nuclei, threshold),
            "false_positives": false_positive_kinds(predictions, truths, threshold),
            "chromosomes_inside_a_box": chromosomes_inside(predictions, chromosomes, threshold),
        },
        "baseline_otsu": {
            **summarise(reference, truths, 1.0),
            "boxes_on_nuclei": nucleus_boxes(reference, truths, nuclei, 1.0),
        },
        "nuclei_definition": NUCLEI_DEFINITION,
        "per_slide": {},
    }
    for slide in metrics["slides"]:  # where the pooled figures come from
        chosen = [i for i, item in enumerate(items) if item.slide == slide]
        slide_predictions = [predictions[i] for i in chosen]
        slide_truths = [truths[i] for i in chosen]
        metrics["per_slide"][slide] = {
            "images": len(chosen),
            "true_clusters": int(sum(len(t) for t in slide_truths)),
            **summarise(slide_predictions, slide_truths, threshold),
            "boxes_on_nuclei": nucleus_boxes(
                slide_predictions, slide_truths, [nuclei[i] for i in chosen], threshold
            ),
            "chromosomes_inside_a_box": chromosomes_inside(
                slide_predictions, [chromosomes[i] for i in chosen], threshold
            )["share"],
        }
    return metrics, coco_results(names, predictions)
