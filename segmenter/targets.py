"""Segmenter targets from ADIR label images (DESIGN.md, "Data").

Classes: 0 background, 1 chromosome A, 2 chromosome B, 3 overlap (pixels of two or more
chromosomes); 255 in a training target marks pixels the loss ignores (``IGNORE``: what the labels
cannot be trusted on, e.g. a visible chromosome that K leaves at 0). A cluster is an 8-connected
component of ``K > 0``; its chromosomes are the instances of
``pipeline.core.adir.chromosome_instances`` that lie inside it. A and B are given so that
no two touching chromosomes share a label where the touch graph allows it (2-colouring, largest
chromosome first = A); odd cycles in the touch graph leave some same-label neighbours.
"""

from __future__ import annotations

import cv2
import numpy as np

from pipeline.core import adir

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


def two_colour(masks: np.ndarray) -> np.ndarray:
    """Label 1 (A) or 2 (B) per mask ``(N, H, W)``: breadth-first over the touch graph, each
    component started from its largest mask with A. Returns ``(N,)`` uint8."""
    neighbours = touch_graph(masks)
    colours = np.zeros(len(masks), np.uint8)
    for start in np.argsort(-masks.reshape(len(masks), -1).sum(axis=1), kind="stable"):
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
    return colours


def target_from_instances(masks: np.ndarray) -> np.ndarray:
    """``(H, W)`` uint8 target from the chromosome masks ``(N, H, W)`` of one cluster: pixels of
    one chromosome -> its A/B colour, pixels of two or more -> 3, others 0."""
    target = np.zeros(masks.shape[1:], np.uint8)
    if not len(masks):
        return target
    colours = two_colour(masks)
    for mask, colour in zip(masks, colours, strict=True):
        target[mask] = colour
    target[masks.sum(axis=0) >= 2] = OVERLAP
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
