"""End-to-end evaluation (``chromoseg eval pipeline``) on ADIR-format labelled metaphases.

True chromosomes: ``pipeline.core.adir.chromosome_instances`` (DESIGN.md's definition). Predicted
chromosomes are matched to true ones one-to-one (Hungarian assignment on mask IoU, pairs below
``IOU_THRESHOLD`` = 0.5 unmatched). Figures pooled over all images: instance precision (matched /
predicted), recall (matched / true), F1, the mean IoU of the matched pairs; per metaphase the
count error (predicted - true) and its distribution. The same for the classical baseline: Otsu
threshold of the normalised image, each 8-connected component of >= 20 pixels one chromosome.

Three views of the truth (DESIGN.md, "What K does not say"): ``pipeline``, every metaphase
against K as it is; ``pipeline_unlabelled_not_counted``, the same, except that in metaphases
whose ``Case Info`` is known and not a complete karyotype, a predicted chromosome that matches
none and lies at least half on a bright piece K leaves out (``adir.unlabelled_pieces``) is not
counted; ``pipeline_complete_karyotypes``, only the metaphases whose karyotype is 46,XX / 46,XY
(every chromosome labelled, once). ``per_slide``: the first view per slide (per density band for
``chromoseg synth`` sets).

``true_segmentation=True`` stands the ground truth in for the U-Net: each crop gets the one-hot
target cut from K with the crop's own geometry (chromosomes two-coloured over the whole image, as
in training). What is then lost is lost by the detector, the crop geometry and the stitcher: the
ceiling of the pipeline with a perfect segmenter.
"""

from __future__ import annotations

import numpy as np

from pipeline.config import PipelineConfig, StitchSettings
from pipeline.core import matching
from pipeline.core.adir import (
    MIN_PIXELS,
    AdirImage,
    chromosome_instances,
    load,
    read_karyotype,
    unlabelled_pieces,
)
from pipeline.core.imageio import otsu_foreground
from pipeline.inputs import ImageJob
from pipeline.models import Models
from pipeline.run import (
    Detected,
    build_result,
    crop_pieces,
    detect_image,
    load_image,
    process_image,
    settle,
)
from pipeline.stitch import Instance, boxes_meet, instances_from_masks, intersection_pixels
from segmenter.crops import crop_labels
from segmenter.targets import target_from_instances

IOU_THRESHOLD = 0.5
ERROR_KINDS = {
    "true": ("missed", "merged", "split", "inexact"),
    "predicted": ("extra", "merge", "piece", "inexact"),
}


def intersections(predicted: list[Instance], true: list[Instance]) -> np.ndarray:
    """Pixels each predicted chromosome shares with each true one: int64 ``(N, M)``."""
    shared = np.zeros((len(predicted), len(true)), np.int64)
    if not predicted or not true:
        return shared
    boxes = np.array([instance.box for instance in predicted + true])
    meet = boxes_meet(boxes)[: len(predicted), len(predicted) :]
    for i, j in zip(*np.nonzero(meet), strict=True):
        shared[i, j] = intersection_pixels(predicted[i], true[j])
    return shared


def iou_matrix(shared: np.ndarray, predicted: list[Instance], true: list[Instance]) -> np.ndarray:
    """Mask IoU float64 ``(N, M)`` from ``intersections``."""
    areas_p = np.array([instance.area for instance in predicted], np.int64)
    areas_t = np.array([instance.area for instance in true], np.int64)
    union = areas_p[:, None] + areas_t[None, :] - shared
    return np.where(shared > 0, shared / np.maximum(union, 1), 0.0)


def match(
    predicted: list[Instance], true: list[Instance], threshold: float = IOU_THRESHOLD
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(predicted index, true index, IoU)`` with IoU >= ``threshold``,
    maximising the summed IoU (``pipeline.core.matching.optimal``)."""
    return matching.optimal(iou_matrix(intersections(predicted, true), predicted, true), threshold)


def error_kinds(
    shared: np.ndarray,
    areas_predicted: np.ndarray,
    areas_true: np.ndarray,
    matches: list[tuple[int, int, float]],
    ignored: frozenset[int] = frozenset(),
) -> dict:
    """Why each unmatched chromosome is unmatched (see ``ERROR_KINDS``), from ``shared`` int64
    ``(N predicted, M true)`` (``intersections``) and the areas ``(N,)``, ``(M,)``. Predicted
    chromosomes in ``ignored`` (not counted) take no part on the predicted side.

    A true chromosome is *missed* when predictions cover under half of it; *merged* when the
    prediction holding most of it also holds at least half of another true chromosome; *split*
    when two or more predictions lie mostly (>= half their pixels) on it; *inexact* otherwise (one
    prediction, but IoU < 0.5: too large, or too small). An unmatched prediction is *extra* when
    under half of it lies on true chromosomes, *merge* when it holds at least half of two true
    ones, *piece* when at least half of it lies on one true chromosome and it holds under half of
    that one, *inexact* otherwise."""
    half_of_true = 2 * shared >= areas_true[None, :]
    half_of_predicted = 2 * shared >= areas_predicted[:, None]
    matched_p = {i for i, _, _ in matches}
    matched_t = {j for _, j, _ in matches}
    true_kinds = dict.fromkeys(ERROR_KINDS["true"], 0)
    for j in range(shared.shape[1]):
        if j in matched_t:
            continue
        column = shared[:, j]
        if 2 * column.sum() < areas_true[j]:
            kind = "missed"
        elif half_of_true[int(np.argmax(column))].sum() >= 2:
            kind = "merged"
        elif half_of_predicted[:, j].sum() >= 2:
            kind = "split"
        else:
            kind = "inexact"
        true_kinds[kind] += 1
    predicted_kinds = dict.fromkeys(ERROR_KINDS["predicted"], 0)
    for i in range(shared.shape[0]):
        if i in matched_p or i in ignored:
            continue
        row = shared[i]
        if 2 * row.sum() < areas_predicted[i]:
            kind = "extra"
        elif half_of_true[i].sum() >= 2:
            kind = "merge"
        elif half_of_predicted[i].any() and not half_of_true[i, int(np.argmax(row))]:
            kind = "piece"
        else:
            kind = "inexact"
        predicted_kinds[kind] += 1
    return {"true": true_kinds, "predicted": predicted_kinds}


def otsu_instances(normalised: np.ndarray, min_pixels: int = MIN_PIXELS) -> list[Instance]:
    """The classical baseline: Otsu threshold (``otsu_foreground``), 8-connected components of
    >= ``min_pixels``."""
    import cv2

    foreground = otsu_foreground(normalised)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        foreground.astype(np.uint8), connectivity=8
    )
    out = []
    for index in range(1, count):
        if stats[index, cv2.CC_STAT_AREA] >= min_pixels:
            x, y, w, h = stats[index, :4]
            mask = labels[y : y + h, x : x + w] == index
            out.append(Instance(int(y), int(x), mask, 0, 1.0, 1.0))
    return out


def image_scores(
    predicted: list[Instance], true: list[Instance], unlabelled: np.ndarray | None = None
) -> dict:
    """Counts of one image: predicted, true, matched, the summed IoU of the matches, and why the
    rest are unmatched (``errors``, ``error_kinds``). With ``unlabelled`` (bool ``(H, W)``:
    pieces K leaves out, ``adir.unlabelled_pieces``), predicted chromosomes that match no true
    one and lie at least half on them are not counted (their number is ``not_counted``): a
    chromosome K forgot is not held against the pipeline."""
    shared = intersections(predicted, true)
    matches = matching.optimal(iou_matrix(shared, predicted, true), IOU_THRESHOLD)
    not_counted = set()
    if unlabelled is not None and unlabelled.any():
        matched = {i for i, _, _ in matches}
        for index, instance in enumerate(predicted):
            if index in matched:
                continue
            r0, c0 = instance.row0, instance.col0
            h, w = instance.mask.shape
            on = unlabelled[r0 : r0 + h, c0 : c0 + w][instance.mask].sum()
            if on >= 0.5 * instance.area:
                not_counted.add(index)
    areas = [np.array([item.area for item in items], np.int64) for items in (predicted, true)]
    return {
        "predicted": len(predicted) - len(not_counted),
        "true": len(true),
        "matched": len(matches),
        "iou_sum": float(sum(iou for _, _, iou in matches)),
        "not_counted": len(not_counted),
        "errors": error_kinds(shared, *areas, matches, frozenset(not_counted)),
    }


def summarise(per_image: list[dict]) -> dict:
    """Pooled precision, recall, F1, mean matched IoU, the count-error distribution and the
    error kinds (``error_kinds``) summed."""
    predicted = sum(item["predicted"] for item in per_image)
    true = sum(item["true"] for item in per_image)
    matched = sum(item["matched"] for item in per_image)
    pooled = matching.counts(matched, predicted, true, empty=0.0)
    errors = np.array([item["predicted"] - item["true"] for item in per_image], np.int64)
    values, counts = np.unique(errors, return_counts=True)
    return {
        "images": len(per_image),
        "predicted": predicted,
        "true": true,
        "matched": matched,
        "precision": pooled["precision"],
        "recall": pooled["recall"],
        "f1": pooled["f1"],
        "mean_matched_iou": (
            sum(item["iou_sum"] for item in per_image) / matched if matched else 0.0
        ),
        "count_error": {
            "mean": float(errors.mean()) if len(errors) else 0.0,
            "mean_abs": float(np.abs(errors).mean()) if len(errors) else 0.0,
            "median": float(np.median(errors)) if len(errors) else 0.0,
            "within_1": float((np.abs(errors) <= 1).mean()) if len(errors) else 0.0,
            "histogram": {str(int(v)): int(c) for v, c in zip(values, counts, strict=True)},
        },
        "errors": {
            side: {kind: sum(item["errors"][side][kind] for item in per_image) for kind in kinds}
            for side, kinds in ERROR_KINDS.items()
        },
    }


def segment_with_truth(
    detected: Detected, true_masks: np.ndarray, stitch_config: StitchSettings, min_score: float
) -> None:
    """Fill ``detected.pieces`` from the true chromosome masks ``(N, H, W)`` bool instead of the
    U-Net, and settle them (``pipeline.run.settle``): each crop's class probabilities are its
    one-hot target ``(4, 88, 88)`` (small pieces scoring below ``min_score`` dropped, as the
    model's would be)."""
    target = target_from_instances(true_masks)
    one_hot = np.eye(4, dtype=np.float32)
    for index, geometry in enumerate(detected.geometries):
        probabilities = one_hot[crop_labels(target, geometry)].transpose(2, 0, 1)
        detected.pieces += crop_pieces(detected, index, probabilities, stitch_config, min_score)
    settle(detected, stitch_config)


def evaluate(
    images: list[AdirImage],
    models: Models,
    config: PipelineConfig,
    progress=None,
    true_segmentation: bool = False,
) -> dict:
    """The pipeline and the baseline on labelled images: ``{"pipeline": summary, "baseline":
    summary, "per_image": [...]}`` (see the module doc for ``true_segmentation``)."""
    per_image = []
    for image in progress(images) if progress else images:
        _, labels = load(image)
        karyotype = read_karyotype(image)
        true_masks = chromosome_instances(labels)[0]
        true = instances_from_masks(true_masks)
        job = ImageJob(image.dapi_path, image.slide, image.name, image.name)
        if true_segmentation:
            detected = detect_image(load_image(job, config.polarity), models, config)
            min_score = models.min_score_for(
                detected.image.normalised.flip, config.stitch.min_segmenter_score
            )
            segment_with_truth(detected, true_masks, config.stitch, min_score)
            result = build_result(detected, config, None)
        else:
            result = process_image(job, models, config)
        normalised = result.normalised.full()
        suspect = karyotype.text is not None and not karyotype.complete
        unlabelled = unlabelled_pieces(normalised, labels) if suspect else None
        per_image.append(
            {
                "image": image.name,
                "slide": image.slide,
                "complete_karyotype": karyotype.complete,
                "scale": result.scale,
                "pipeline": image_scores(result.instances, true),
                "pipeline_unlabelled_not_counted": image_scores(result.instances, true, unlabelled),
                "baseline": image_scores(otsu_instances(normalised), true),
            }
        )
    complete = [item for item in per_image if item["complete_karyotype"]]
    return {
        "pipeline": summarise([item["pipeline"] for item in per_image]),
        "pipeline_unlabelled_not_counted": summarise(
            [item["pipeline_unlabelled_not_counted"] for item in per_image]
        ),
        "pipeline_complete_karyotypes": summarise([item["pipeline"] for item in complete]),
        "baseline": summarise([item["baseline"] for item in per_image]),
        "per_slide": {
            slide: summarise([item["pipeline"] for item in per_image if item["slide"] == slide])
            for slide in sorted({item["slide"] for item in per_image})
        },
        "per_image": per_image,
    }
