"""Whether pairing the arms around an overlap by their direction parts crossings better than the
network's own A/B labels.

    python benchmarks/arm_pairing.py --data ../shared/data/adir_mfish/MFISH_TIFF --part val \
        [--model DIR] --json benchmarks/results/segmenter/designs/arm_pairing_val.json

Many crossing pairs the shipped segmenter fails have the right foreground and overlap but the
wrong chromosome label on an arm. The rule tried here, on a predicted label map with exactly one
overlap region: the non-overlap foreground (A or B) is split into 4-connected arms; of the 3 or 4
arms touching the overlap, the two pointing most nearly opposite ways (directions from the
overlap's centre to each arm's, at least about 135 degrees apart) are one chromosome and the
others the second one (for 4 arms, those two must also be at least about 120 degrees apart);
elsewhere the map is left as it is. Applied to every crop (``all``), and only to crops whose
chromosome A (A∪overlap) or B (B∪overlap) is in more than one piece (``fragmented``), both on
the predictions of ``chromoseg eval segmenter``'s held-out sets. Prints the separated share and
pooled IoU A / B / overlap of each set for the network alone and both rules, and writes them to
``--json``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np

from pipeline.core.files import write_json
from pipeline.core.modelfolder import SPLIT_FILE
from segmenter import api, evaluate

OPPOSITE = -0.7  # cosine of the two arms of one chromosome: about 135 degrees apart or more
SECOND_OPPOSITE = -0.5  # the other two arms of a four-armed crossing: about 120 degrees


def pieces(mask: np.ndarray) -> int:
    return cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)[0] - 1


def paired_arms(label: np.ndarray) -> np.ndarray:
    """``label`` ``(H, W)`` uint8 (0 background, 1 A, 2 B, 3 overlap) with the arms around its
    one overlap region relabelled by direction (module docstring), or unchanged."""
    overlap = (label == 3).astype(np.uint8)
    if pieces(overlap) != 1:
        return label
    count, arms = cv2.connectedComponents(((label == 1) | (label == 2)).astype(np.uint8), 4)
    near = cv2.dilate(overlap, np.ones((3, 3), np.uint8)).astype(bool)
    centre = np.argwhere(overlap).mean(axis=0)
    touching = [i for i in range(1, count) if (near & (arms == i)).any()]
    touching = [i for i in touching if (arms == i).sum() >= 4]
    if len(touching) not in (3, 4):
        return label
    directions = []
    for arm in touching:
        offset = np.argwhere(arms == arm).mean(axis=0) - centre
        directions.append(offset / (np.linalg.norm(offset) + 1e-6))
    cosines = {
        (a, b): float(directions[a] @ directions[b])
        for a in range(len(touching))
        for b in range(a + 1, len(touching))
    }
    pair = min(cosines, key=cosines.get)
    if cosines[pair] > OPPOSITE:
        return label
    rest = tuple(i for i in range(len(touching)) if i not in pair)
    if len(rest) == 2 and cosines[rest] > SECOND_OPPOSITE:
        return label
    first = np.isin(arms, [touching[i] for i in pair])
    second = np.isin(arms, [touching[i] for i in rest])
    kept = ((label == 1) & first).sum() + ((label == 2) & second).sum()
    swapped = ((label == 2) & first).sum() + ((label == 1) & second).sum()
    a, b = (1, 2) if kept >= swapped else (2, 1)  # the network's naming, where it agrees best
    out = label.copy()
    out[first], out[second] = a, b
    return out


def fragmented(label: np.ndarray) -> bool:
    return pieces((label == 1) | (label == 3)) > 1 or pieces((label == 2) | (label == 3)) > 1


RULES = {
    "network": lambda label: label,
    "all": paired_arms,
    "fragmented": lambda label: paired_arms(label) if fragmented(label) else label,
}


def summary(result: dict) -> dict:
    iou = result["permutation_invariant"]["iou"]
    return {
        "crops": result["crops"],
        "separated": result["separation"]["separated"],
        "iou_a_b_overlap": [iou["chromosome_A"], iou["chromosome_B"], iou["overlap"]],
        **({"by_angle": result["separated_by_angle"]} if "separated_by_angle" in result else {}),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--part", choices=("val", "test"), default="val")
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    model = api.load_model(args.model, "cpu")
    folder = Path(args.model) if args.model else api.PRETRAINED
    split = json.loads((folder / SPLIT_FILE).read_text())
    sets = evaluate.held_out_sets(args.data, split, model.config.data, part=args.part)
    predicted = evaluate.predict(model, sets)
    results = {}
    for rule, apply in RULES.items():
        labels = {
            name: np.stack([apply(label) for label in maps]) for name, maps in predicted.items()
        }
        scored = evaluate.score(sets, labels)
        results[rule] = {name: summary(result) for name, result in scored.items()}
    for name in predicted:
        cells = [
            f"{results[rule][name]['separated']:.3f} "
            f"({' / '.join(f'{v:.3f}' for v in results[rule][name]['iou_a_b_overlap'])})"
            for rule in RULES
        ]
        pairs = zip(RULES, cells, strict=True)
        print(f"{name:24} " + "  ".join(f"{rule}: {cell}" for rule, cell in pairs))
    if args.json:
        write_json(args.json, {"part": args.part, "model": str(folder), "rules": results})


if __name__ == "__main__":
    main()
