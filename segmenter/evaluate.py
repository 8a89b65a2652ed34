"""Evaluation of a segmenter on held-out data (DESIGN.md, "Measuring").

Sets: ``real_pairs`` (clusters of exactly two chromosomes of the held-out slides: the test
slides, or the val slides to choose settings on), ``real_multi`` (two or more), ``real_all`` (every
cluster, singles included), ``synthetic_pairs`` (pairs made from single chromosomes of the same
slides, a fixed seed per part) and, when an h5 file is given, ``h5_pairs`` (its last 20 %).
Each set: per-class IoU and Dice pooled over all pixels at 88x88, as labelled and
permutation-invariant.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline import adir
from segmenter import api, dataset, metrics, synthetic
from segmenter.h5data import load_h5_pairs
from segmenter.targets import CLASS_NAMES

SYNTHETIC_SEEDS = {"val": 2016, "test": 2017}  # synthetic pairs of each held-out part


def synthetic_pairs(prepared: dataset.Prepared, data_config: dict, count: int, seed: int):
    """``count`` synthetic pairs from ``prepared``'s singles (its own measured overlap ratios,
    else the config's default); empty arrays when it has fewer than two singles."""
    if len(prepared.singles) < 2 or count <= 0:
        empty = dataset.Crops.concatenate([])
        return empty.images, empty.targets
    ratios = prepared.ratios if len(prepared.ratios) else [data_config["default_overlap_ratio"]]
    return synthetic.make_pairs(
        prepared.singles,
        np.asarray(ratios, np.float32),
        count,
        seed,
        int(data_config["margin"]),
        float(data_config["touch_fraction"]),
    )


def held_out_sets(
    data_dir: str | Path | None,
    split: dict | None,
    data_config: dict,
    h5_path: str | Path | None = None,
    workers: int = 1,
    part: str = "test",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named ``(images (N, 88, 88) float32, targets (N, 88, 88) uint8)`` evaluation sets.

    ``data_dir``'s ``part`` ("test" or "val") slides per ``split`` (every labelled image when the
    split knows none of its slides); ``h5_path``'s test part (it has no val part).
    """
    sets = {}
    if data_dir is not None:
        images = adir.select(adir.find_images(data_dir), part, split)
        prepared = dataset.prepare(
            images, int(data_config["margin"]), int(data_config["context"]), workers
        )
        real = prepared.crops
        for name, keep in (
            ("real_pairs", real.counts == 2),
            ("real_multi", real.counts >= 2),
            ("real_all", np.ones(len(real.counts), bool)),
        ):
            sets[name] = (real.images[keep], real.targets[keep])
        sets["synthetic_pairs"] = synthetic_pairs(
            prepared, data_config, int(data_config[f"{part}_synthetic"]), SYNTHETIC_SEEDS[part]
        )
    if h5_path is not None:
        sets["h5_pairs"] = load_h5_pairs(h5_path)["test"]
    return sets


def evaluate(model: api.Segmenter, sets: dict, batch_size: int = 64) -> dict:
    """``{set name: metrics.evaluate_labels(...)}`` for every non-empty set."""
    results = {}
    for name, (images, targets) in sets.items():
        if len(images):
            labels, _ = api.segment(model, images, batch_size)
            results[name] = metrics.evaluate_labels(labels, targets)
    return results


def format_table(results: dict) -> str:
    """The figures of ``evaluate`` as a plain-text table (IoU and Dice, both assignments)."""
    header = f"{'set':<24} {'assignment':<22} {'metric':<5} " + " ".join(
        f"{name:>12}" for name in CLASS_NAMES
    )
    lines = [header]
    for name, result in results.items():
        for assignment in ("as_labelled", "permutation_invariant"):
            for metric in ("iou", "dice"):
                values = result[assignment][metric]
                lines.append(
                    f"{name + ' (' + str(result['crops']) + ')':<24} {assignment:<22} "
                    f"{metric:<5} " + " ".join(f"{values[c]:>12.4f}" for c in CLASS_NAMES)
                )
    return "\n".join(lines)
