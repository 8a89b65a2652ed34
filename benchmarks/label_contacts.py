"""How often a segmenter target must give two neighbouring chromosomes one label.

    python benchmarks/label_contacts.py --data ADIR [--part train] [--json OUT]

With two labels (A, B) a cluster whose touch graph has an odd cycle (three chromosomes that all
meet) cannot keep every pair of neighbours apart. For every labelled cluster of 2+ chromosomes
of the part's metaphases (K as it is, at the image's pixels), this counts the clusters with
same-label neighbours under ``segmenter.targets.two_colour`` and those neighbour pairs: touching
only (``target_from_instances`` leaves a gap of background between them) or overlapping (their
shared pixels ignored); and the same under a plain breadth-first 2-colouring (what the targets
used before: the first chromosome reached decides), where every such pair was one instance.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.core import adir
from segmenter.targets import cluster_chromosomes, touch_graph, two_colour


def breadth_first(neighbours: list[set[int]], areas: np.ndarray) -> np.ndarray:
    """The plain 2-colouring: breadth-first from the largest chromosome of each group."""
    colours = np.zeros(len(neighbours), np.uint8)
    for start in np.argsort(-areas, kind="stable"):
        if colours[start]:
            continue
        colours[start], queue = 1, [int(start)]
        while queue:
            current = queue.pop(0)
            for other in sorted(neighbours[current]):
                if not colours[other]:
                    colours[other] = 3 - colours[current]
                    queue.append(other)
    return colours


def same_label_pairs(masks: np.ndarray, colours: np.ndarray, neighbours) -> tuple[int, int]:
    """Neighbour pairs sharing a label: (touching only, overlapping)."""
    touching = overlapping = 0
    for i, others in enumerate(neighbours):
        for j in others:
            if i < j and colours[i] == colours[j]:
                if (masks[i] & masks[j]).any():
                    overlapping += 1
                else:
                    touching += 1
    return touching, overlapping


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--part", default="train", choices=("train", "val", "test"))
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()

    counts = dict.fromkeys(
        (
            "clusters_of_2_plus",
            "clusters_with_same_label_neighbours",
            "touching_pairs_given_a_gap",
            "overlapping_pairs_ignored",
            "breadth_first_clusters_with_same_label_neighbours",
            "breadth_first_touching_pairs",
            "breadth_first_overlapping_pairs",
        ),
        0,
    )
    for image in adir.select(adir.find_images(args.data), args.part):
        _, labels = adir.load(image)
        for _, masks in cluster_chromosomes(labels):
            if len(masks) < 2:
                continue
            counts["clusters_of_2_plus"] += 1
            neighbours = touch_graph(masks)
            areas = masks.reshape(len(masks), -1).sum(axis=1)
            touching, overlapping = same_label_pairs(masks, two_colour(masks), neighbours)
            counts["clusters_with_same_label_neighbours"] += bool(touching + overlapping)
            counts["touching_pairs_given_a_gap"] += touching
            counts["overlapping_pairs_ignored"] += overlapping
            plain = same_label_pairs(masks, breadth_first(neighbours, areas), neighbours)
            counts["breadth_first_clusters_with_same_label_neighbours"] += bool(sum(plain))
            counts["breadth_first_touching_pairs"] += plain[0]
            counts["breadth_first_overlapping_pairs"] += plain[1]
    result = {"data": str(args.data), "part": args.part, **counts}
    print(json.dumps(result, indent=1))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
