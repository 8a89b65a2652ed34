"""Segmenter targets from ADIR label images (DESIGN.md, "Data").

Classes: 0 background, 1 chromosome A, 2 chromosome B, 3 overlap (pixels of two or more
chromosomes); 255 in a training target marks pixels the loss ignores (``IGNORE``: what the labels
cannot be trusted on, e.g. a visible chromosome that K leaves at 0). A cluster is an 8-connected
component of ``K > 0``; its chromosomes are the instances of
``pipeline.core.adir.chromosome_instances`` that lie inside it. A and B are given so that
no two touching chromosomes share a label where the touch graph allows it (2-colouring, largest
chromosome first = A). Where the touch graph has odd cycles (three chromosomes that all meet,
common in dense tangles) some neighbours must share a label: the colouring keeps overlapping
chromosomes apart before touching ones, a crop pixel of background is left between same-label
chromosomes that only touch, and the pixels where same-label chromosomes overlap are ignored.
Otherwise such a target would show two chromosomes as one instance and teach the network to merge
them (a fifth of the real training clusters of 2+ chromosomes, before this rule).
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import adir
from segmenter import crops

BACKGROUND, CHROMOSOME_A, CHROMOSOME_B, OVERLAP = 0, 1, 2, 3
IGNORE = 255
CLASS_NAMES = ("background", "chromosome_A", "chromosome_B", "overlap")


def touch_graph(masks: np.ndarray) -> list[set[int]]:
    """Neighbours of each mask ``(N, H, W)`` bool: masks that overlap or touch (8-connectivity)."""
    kernel = np.ones((3, 3), np.uint8)
    grown = [cv2.dilate(m.astype(np.uint8), kernel).astype(bool) for m in masks]
    return [
        {j for j in range(len(masks)) if j != i and (grown[i] & masks[j]).any()}
        for i in range(len(masks))
    ]


OVERLAP_CONTACT = 100  # a same-label overlap costs this many same-label touches: a touch can
# be kept apart by a gap, an overlap cannot be shown in four classes
EXACT_COLOURING = 12  # clusters of up to this many chromosomes are coloured by trying every way


def two_colour(masks: np.ndarray) -> np.ndarray:
    """Label 1 (A) or 2 (B) per mask ``(N, H, W)``: the colouring with the fewest same-label
    neighbours (``touch_graph``), a same-label overlap weighing ``OVERLAP_CONTACT`` touches (every
    colouring tried up to ``EXACT_COLOURING`` masks; beyond, breadth-first from the largest,
    then single masks relabelled while that lowers the cost); each group of touching masks has
    its largest as A. Returns ``(N,)`` uint8."""
    count = len(masks)
    if not count:
        return np.zeros(0, np.uint8)
    neighbours = touch_graph(masks)
    weights = np.zeros((count, count), np.int64)
    for i, others in enumerate(neighbours):
        for j in others:
            weights[i, j] = OVERLAP_CONTACT if (masks[i] & masks[j]).any() else 1
    areas = masks.sum(axis=(1, 2))
    if count <= EXACT_COLOURING:
        choices = (np.arange(2 ** (count - 1))[:, None] >> np.arange(count)) & 1
        same = choices[:, :, None] == choices[:, None, :]
        colours = choices[int(np.argmin((same * weights).sum(axis=(1, 2))))] + 1
    else:
        colours = np.zeros(count, np.int64)
        for start in np.argsort(-areas, kind="stable"):
            if colours[start]:
                continue
            colours[start] = CHROMOSOME_A
            queue = [int(start)]
            while queue:
                current = queue.pop(0)
                for other in sorted(neighbours[current]):
                    if not colours[other]:
                        colours[other] = 3 - colours[current]
                        queue.append(other)
        while True:
            same = colours[:, None] == colours[None, :]
            gain = ((same * weights) - (~same * weights)).sum(axis=1)  # cost saved by relabelling
            best = int(np.argmax(gain))
            if gain[best] <= 0:
                break
            colours[best] = 3 - colours[best]
    for group in _groups(neighbours):  # the largest of each group is A
        if colours[max(group, key=lambda i: (areas[i], -i))] != CHROMOSOME_A:
            colours[group] = 3 - colours[group]
    return colours.astype(np.uint8)


def _groups(neighbours: list[set[int]]) -> list[list[int]]:
    """The connected groups of a graph given as each node's neighbours."""
    seen: set[int] = set()
    groups = []
    for start in range(len(neighbours)):
        if start in seen:
            continue
        group, queue = [], [start]
        seen.add(start)
        while queue:
            node = queue.pop()
            group.append(node)
            for other in neighbours[node] - seen:
                seen.add(other)
                queue.append(other)
        groups.append(sorted(group))
    return groups


def target_from_instances(masks: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 target from the chromosome masks ``(N, H, W)`` of one cluster: pixels of
    one chromosome -> its A/B colour (``two_colour``), pixels of two or more -> 3, others 0.
    Where two chromosomes of one colour only touch, the smaller one's pixels next to the other
    (8-neighbours) become background, so that the target's instances are the chromosomes; where
    they overlap, the pixels of either within a pixel of the other become ``IGNORE``."""
    target = np.zeros(masks.shape[1:], np.uint8)
    if not len(masks):
        return target
    colours = two_colour(masks)
    for mask, colour in zip(masks, colours, strict=True):
        target[mask] = colour
    target[masks.sum(axis=0) >= 2] = OVERLAP
    kernel = np.ones((3, 3), np.uint8)
    areas = masks.reshape(len(masks), -1).sum(axis=1)
    for i, others in enumerate(touch_graph(masks)):
        for j in others:
            if i > j or colours[i] != colours[j]:
                continue
            grown_i, grown_j = (cv2.dilate(masks[k].view(np.uint8), kernel) > 0 for k in (i, j))
            if (masks[i] & masks[j]).any():
                target[(masks[i] & grown_j) | (masks[j] & grown_i)] = IGNORE
            else:
                smaller, grown_larger = (i, grown_j) if areas[i] <= areas[j] else (j, grown_i)
                gap = masks[smaller] & grown_larger & (target == colours[smaller])
                target[gap] = BACKGROUND
    return target


def window_target(
    masks: np.ndarray, geometry: crops.CropGeometry, ignore: np.ndarray | None = None
) -> np.ndarray:
    """The ``(88, 88)`` uint8 target of one crop window (``segmenter.crops``) from chromosome
    masks ``(N, H, W)`` bool: each mask cut and resampled as the crop is (``crops.crop_labels``),
    then ``target_from_instances`` at the crop's size (a gap between chromosomes is a crop pixel
    wide, not lost to the resampling); background pixels that ``ignore`` ``(H, W)`` bool marks
    become ``IGNORE``."""
    cropped = [crops.crop_labels(mask, geometry) > 0 for mask in masks]
    inside = [mask for mask in cropped if mask.any()]
    size = crops.CROP_SIZE
    target = target_from_instances(np.stack(inside) if inside else np.zeros((0, size, size), bool))
    if ignore is not None:
        target[(crops.crop_labels(ignore, geometry) > 0) & (target == 0)] = IGNORE
    return target


def meet_end_to_end(masks: np.ndarray) -> bool:
    """Whether two of the chromosome masks ``(N, H, W)`` touch (8-connectivity) without sharing a
    pixel: in a translocation metaphase, possibly one chromosome that K gives two classes."""
    for i, neighbours in enumerate(touch_graph(masks)):
        if any(not (masks[i] & masks[j]).any() for j in neighbours):
            return True
    return False


def cluster_chromosomes(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Every cluster of a K image: ``(box, masks)``, ``box`` float32 ``(4,)`` x0, y0, x1, y1
    (pixel edges), ``masks`` bool ``(N, H, W)`` its chromosomes (within the cluster only)."""
    clusters = adir.cluster_labels(labels)
    instances, _ = adir.chromosome_instances(labels)
    out = []
    for cluster_id in range(1, int(clusters.max()) + 1):
        component = clusters == cluster_id
        inside = np.asarray([(m & component).any() for m in instances], bool)
        masks = instances[inside] & component if inside.any() else instances[:0]
        out.append((adir.masks_to_boxes(component[None])[0], masks))
    return out


def cluster_targets(labels: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Every cluster of a K image: ``(box, target, chromosome count)`` per cluster, where ``box``
    is float32 ``(4,)`` x0, y0, x1, y1 (pixel edges) and ``target`` the ``(H, W)`` uint8 target of
    that cluster alone (0 elsewhere, including other clusters)."""
    return [
        (box, target_from_instances(masks), len(masks))
        for box, masks in cluster_chromosomes(labels)
    ]
