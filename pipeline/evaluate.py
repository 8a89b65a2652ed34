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
)
from pipeline.stitch import Instance, boxes_meet, instances_from_masks, mask_iou
from segmenter.crops import crop_labels
from segmenter.targets import target_from_instances

IOU_THRESHOLD = 0.5


def match(
    predicted: list[Instance], true: list[Instance], threshold: float = IOU_THRESHOLD
) -> list[tuple[int, int, float]]:
    """One-to-one matches ``(predicted index, true index, IoU)`` with IoU >= ``threshold``,
    maximising the summed IoU (``pipeline.core.matching.optimal``)."""
    if not predicted or not true:
        return []
    boxes = np.array([instance.box for instance in predicted + true])
    meet = boxes_meet(boxes)[: len(predicted), len(predicted) :]
    iou = np.zeros((len(predicted), len(true)))
    for i, j in zip(*np.nonzero(meet), strict=True):
        iou[i, j] = mask_iou(predicted[i], true[j])
    return matching.optimal(iou, threshold)


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
    """Counts of one image: predicted, true, matched, and the summed IoU of the matches. With
    ``unlabelled`` (bool ``(H, W)``: pieces K leaves out, ``adir.unlabelled_pieces``), predicted
    chromosomes that match no true one and lie at least half on them are not counted (their
    number is ``not_counted``): a chromosome K forgot is not held against the pipeline."""
    matches = match(predicted, true)
    not_counted = 0
    if unlabelled is not None and unlabelled.any():
        matched = {i for i, _, _ in matches}
        for index, instance in enumerate(predicted):
            if index in matched:
                continue
            r0, c0 = instance.row0, instance.col0
            h, w = instance.mask.shape
            on = unlabelled[r0 : r0 + h, c0 : c0 + w][instance.mask].sum()
            not_counted += int(on >= 0.5 * instance.area)
    return {
        "predicted": len(predicted) - not_counted,
        "true": len(true),
        "matched": len(matches),
        "iou_sum": float(sum(iou for _, _, iou in matches)),
        "not_counted": not_counted,
    }


def summarise(per_image: list[dict]) -> dict:
    """Pooled precision, recall, F1, mean matched IoU and the count-error distribution."""
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
    }


def segment_with_truth(
    detected: Detected, true_masks: np.ndarray, stitch_config: StitchSettings
) -> None:
    """Fill ``detected.pieces`` from the true chromosome masks ``(N, H, W)`` bool instead of the
    U-Net: each crop's class probabilities are its one-hot target ``(4, 88, 88)``."""
    target = target_from_instances(true_masks)
    one_hot = np.eye(4, dtype=np.float32)
    for index, geometry in enumerate(detected.geometries):
        probabilities = one_hot[crop_labels(target, geometry)].transpose(2, 0, 1)
        detected.pieces += crop_pieces(detected, index, probabilities, stitch_config)


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
            segment_with_truth(detected, true_masks, config.stitch)
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
