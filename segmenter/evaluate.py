"""Evaluation of a segmenter on held-out data (DESIGN.md, "Measuring").

Sets: ``real_pairs`` (clusters of exactly two chromosomes of the held-out slides: the test
slides, or the val slides to choose settings on), ``real_multi`` (two or more), ``real_all`` (every
cluster, singles included), each over all metaphases and (``_complete``) over complete
karyotypes only; the ``SYNTHETIC_SETS`` (clusters made from single chromosomes of the same slides,
a fixed seed per part) and, when an h5 file is given, ``h5_pairs`` (its last 20 %).
Each set: per-class IoU and Dice pooled over all pixels at 88x88, as labelled and
permutation-invariant, and how often every chromosome comes back as its own instance
(``metrics.separation``).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from pipeline.core import adir
from segmenter import api, dataset, metrics, synthetic
from segmenter.config import DataSettings, SyntheticOptions
from segmenter.h5data import load_h5_pairs
from segmenter.targets import CLASS_NAMES

OVERLAP = CLASS_NAMES.index("overlap")

SYNTHETIC_SEEDS = {"val": 2016, "test": 2017}  # synthetic clusters of each held-out part
SYNTHETIC_SETS = {  # name: (pair kinds, or None for clusters of 3-5; banding share)
    "synthetic_crossing": (("cross",), 0.0),
    "synthetic_touching": (synthetic.TOUCHING_KINDS, 0.0),
    "synthetic_clusters": (None, 0.0),
    "synthetic_banded": (("cross", *synthetic.TOUCHING_KINDS), 1.0),
}


def synthetic_sets(
    prepared: dataset.Prepared, data_config: DataSettings, count: int, seed: int
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``SYNTHETIC_SETS`` of ``count`` clusters each from ``prepared``'s singles (its own measured
    overlap ratios, else the config's default), drawn with the default ``SyntheticOptions`` (the
    same sets whatever a model was trained on): crossing pairs, touching pairs (touch, side by
    side, end to end), clusters of 3-5 (unbanded) and banded pairs. Empty sets when it has fewer
    than two singles."""
    ratios = prepared.ratios if len(prepared.ratios) else [data_config.default_overlap_ratio]
    sets = {}
    for offset, (name, (kinds, band_fraction)) in enumerate(SYNTHETIC_SETS.items()):
        if len(prepared.singles) < 2 or count <= 0:
            empty = dataset.Crops.concatenate([])
            sets[name] = (empty.images, empty.targets)
            continue
        set_options = replace(SyntheticOptions(), band_fraction=band_fraction)
        if kinds is None:  # clusters of 3-5; pairs of the given kinds otherwise
            set_options = replace(set_options, cluster_sizes={3: 0.4, 4: 0.35, 5: 0.25})
        sets[name] = synthetic.make_clusters(
            prepared.singles,
            np.asarray(ratios, np.float32),
            count,
            seed + offset,
            data_config.margin,
            set_options,
            kinds,
        )
    return sets


def held_out_sets(
    data_dir: str | Path | None,
    split: dict | None,
    data_config: DataSettings,
    h5_path: str | Path | None = None,
    workers: int = 1,
    part: str = "test",
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Named ``(images (N, 88, 88) float32, targets (N, 88, 88) uint8)`` evaluation sets.

    ``data_dir``'s ``part`` ("test" or "val") slides per ``split`` (every labelled image when the
    split knows none of its slides): real clusters of all metaphases (labels cleaned as in
    training: ``segmenter.dataset``) and of complete karyotypes only, and the synthetic sets;
    ``h5_path``'s test part (it has no val part).
    """
    sets = {}
    if data_dir is not None:
        images = adir.select(adir.find_images(data_dir), part, split)
        prepared = dataset.prepare(images, data_config.margin, data_config.context, workers)
        real = prepared.crops
        for name, keep in (
            ("real_pairs", real.counts == 2),
            ("real_multi", real.counts >= 2),
            ("real_all", np.ones(len(real.counts), bool)),
        ):
            sets[name] = (real.images[keep], real.targets[keep])
            sets[f"{name}_complete"] = (
                real.images[keep & real.complete],
                real.targets[keep & real.complete],
            )
        sets.update(
            synthetic_sets(
                prepared,
                data_config,
                getattr(data_config, f"{part}_synthetic"),
                SYNTHETIC_SEEDS[part],
            )
        )
    if h5_path is not None:
        sets["h5_pairs"] = load_h5_pairs(h5_path)["test"]
    return sets


def predict(
    model: api.Segmenter, sets: dict, batch_size: int = api.BATCH_SIZE
) -> dict[str, np.ndarray]:
    """``{set name: label maps (N, 88, 88) uint8}`` of ``model`` for every non-empty set."""
    return {
        name: api.segment(model, images, batch_size)[0]
        for name, (images, _) in sets.items()
        if len(images)
    }


ANGLE_BANDS = ((0, 15), (15, 30), (30, 45), (45, 90))  # degrees between two crossing chromosomes
SIZE_BANDS = ((0, 0.3), (0.3, 0.6), (0.6, 1))  # the smaller chromosome's area over the larger's
# an overlap's signal over a single chromosome's (overlap_contrasts): about 1 where the image shows
# no crossing, 2 where fluorescence adds fully; the val crossing pairs' quartiles 1.24, 1.56, 1.90
CONTRAST_BANDS = ((0, 1.25), (1.25, 1.6), (1.6, 2.0), (2.0, np.inf))


def crossing_angles(targets: np.ndarray) -> np.ndarray:
    """Angle in degrees (0-90) between the long axes of chromosome A (A∪overlap) and B
    (B∪overlap) of each target ``(N, H, W)``: how visible a crossing is (near 0 the two lie along
    each other)."""
    angles = np.zeros(len(targets))
    for index, target in enumerate(targets):
        first = synthetic.axis_angle((target == 1) | (target == 3))
        second = synthetic.axis_angle((target == 2) | (target == 3))
        turn = abs(first - second) % np.pi
        angles[index] = np.degrees(min(turn, np.pi - turn))
    return angles


def size_ratios(targets: np.ndarray) -> np.ndarray:
    """Area of the smaller of chromosome A (A∪overlap) and B (B∪overlap) over the larger's, per
    target ``(N, H, W)`` (0-1): a small chromosome over a large one is mostly overlap."""
    first = ((targets == 1) | (targets == 3)).sum(axis=(1, 2))
    second = ((targets == 2) | (targets == 3)).sum(axis=(1, 2))
    return np.minimum(first, second) / np.maximum(np.maximum(first, second), 1)


def overlap_contrasts(images: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per crop ``(N,)`` float: the mean of ``images`` ``(N, H, W)`` over the target's overlap
    pixels over their mean over its single-chromosome pixels (A or B), each less the mean over its
    background pixels: how much brighter the image draws a crossing than one chromosome (nan
    without overlap, single or background pixels)."""
    contrasts = np.full(len(targets), np.nan)
    for index, (image, target) in enumerate(zip(images, targets, strict=True)):
        parts = [target == 0, target == OVERLAP, (target == 1) | (target == 2)]
        if all(part.any() for part in parts):
            background, overlap, single = (float(image[part].mean()) for part in parts)
            if single > background:
                contrasts[index] = (overlap - background) / (single - background)
    return contrasts


def separated_by_band(values: np.ndarray, separated: np.ndarray, bands) -> dict:
    """``{"LO-HI": {"crops", "separated"}}``: the share of ``separated`` crops among those whose
    ``values`` lie in each band (the last band includes its upper end; nan lies in none)."""
    top = bands[-1][1]
    return {
        f"{low}-{high}": {
            "crops": int(keep.sum()),
            "separated": float(separated[keep].mean()) if keep.any() else float("nan"),
        }
        for low, high in bands
        for keep in [(values >= low) & ((values < high) | (high == top))]
    }


def score(sets: dict, labels: dict[str, np.ndarray]) -> dict:
    """``{set name: metrics.evaluate_labels(...) with "separation": metrics.separation(...)}``
    of the predicted ``labels`` of every set that has them; sets whose every crop is a crossing
    (an overlap in each: the synthetic crossing pairs) also get ``separated_by_angle``
    (``ANGLE_BANDS`` of ``crossing_angles``), ``separated_by_size`` (``SIZE_BANDS`` of
    ``size_ratios``) and ``separated_by_contrast`` (``CONTRAST_BANDS`` of ``overlap_contrasts``),
    each ``separated_by_band``."""
    results = {}
    for name, predicted in labels.items():
        targets = sets[name][1]
        results[name] = metrics.evaluate_labels(predicted, targets)
        summary, separated = metrics.separation(predicted, targets)
        results[name]["separation"] = summary
        if len(targets) and (targets == OVERLAP).any(axis=(1, 2)).all():
            results[name]["separated_by_angle"] = separated_by_band(
                crossing_angles(targets), separated, ANGLE_BANDS
            )
            results[name]["separated_by_size"] = separated_by_band(
                size_ratios(targets), separated, SIZE_BANDS
            )
            results[name]["separated_by_contrast"] = separated_by_band(
                overlap_contrasts(sets[name][0], targets), separated, CONTRAST_BANDS
            )
    return results


def evaluate(model: api.Segmenter, sets: dict, batch_size: int = api.BATCH_SIZE) -> dict:
    """``score`` of ``model``'s predictions for every non-empty set."""
    return score(sets, predict(model, sets, batch_size))


def format_table(results: dict) -> str:
    """The figures of ``evaluate`` as a plain-text table (IoU and Dice, both assignments; the
    share of crops whose chromosomes all come back separated)."""
    header = f"{'set':<28} {'assignment':<22} {'metric':<5} " + " ".join(
        f"{name:>12}" for name in CLASS_NAMES
    )
    lines = [header]
    for name, result in results.items():
        for assignment in ("as_labelled", "permutation_invariant"):
            for metric in ("iou", "dice"):
                values = result[assignment][metric]
                lines.append(
                    f"{name + ' (' + str(result['crops']) + ')':<28} {assignment:<22} "
                    f"{metric:<5} " + " ".join(f"{values[c]:>12.4f}" for c in CLASS_NAMES)
                )
        separation = result.get("separation")
        if separation:
            lines.append(
                f"{name + ' (' + str(result['crops']) + ')':<28} separated "
                f"{separation['separated']:.4f}, exactly {separation['exact']:.4f}"
            )
        for key, label in (
            ("separated_by_angle", "crossing at {} degrees"),
            ("separated_by_size", "smaller over larger area {}"),
            ("separated_by_contrast", "overlap contrast {}"),
        ):
            for band, share in result.get(key, {}).items():
                lines.append(
                    f"{name + ' (' + str(result['crops']) + ')':<28} {label.format(band)} "
                    f"({share['crops']}): separated {share['separated']:.4f}"
                )
    return "\n".join(lines)


LABEL_COLOURS = np.array(  # BGR: background, A (red), B (blue), overlap (white); 255 -> green
    [[0, 0, 0], [60, 60, 255], [255, 150, 40], [255, 255, 255]], np.uint8
)
IGNORE_COLOUR = (0, 200, 0)


def crop_scores(labels: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per crop ``(N,)`` float: mean permutation-invariant IoU over the classes A, B, overlap
    present in the target or the prediction (1 when neither has any): what ``worst`` sorts by."""
    labels = metrics.best_assignment(labels, targets)
    out = np.ones(len(labels))
    for index in range(len(labels)):
        iou = metrics.scores(metrics.confusion(labels[index], targets[index]))["iou"]
        present = [v for name, v in iou.items() if name != "background" and not np.isnan(v)]
        out[index] = np.mean(present) if present else 1.0
    return out


def worst(labels: np.ndarray, targets: np.ndarray, count: int = 24) -> np.ndarray:
    """Indices of the ``count`` crops with the lowest ``crop_scores``, worst first; crops whose
    chromosomes do not all come back separated (``metrics.separation``) come before the rest."""
    _, separated = metrics.separation(labels, targets)
    order = np.lexsort((crop_scores(labels, targets), separated))
    return order[:count]


def colour_labels(labels: np.ndarray) -> np.ndarray:
    """``(H, W)`` label map (0..3, 255 ignored) as a BGR uint8 picture."""
    picture = LABEL_COLOURS[np.where(labels == metrics.IGNORE, 0, labels)]
    picture[labels == metrics.IGNORE] = IGNORE_COLOUR
    return picture


def montage(images: np.ndarray, targets: np.ndarray, labels=None, columns: int = 4):
    """A BGR uint8 picture of crops side by side, one ``image | truth | prediction`` group per
    crop (``(N, 88, 88)`` each; ``image | truth`` when ``labels`` is None), ``columns`` groups a
    row, 2 px gaps. Colours: A red, B blue, overlap white, ignored pixels green."""
    size = images.shape[1]
    parts = 2 if labels is None else 3
    rows = -(-len(images) // columns)
    gap = 2
    cell = parts * size + (parts - 1) * gap
    picture = np.full((rows * (size + gap), columns * (cell + 3 * gap), 3), 80, np.uint8)
    for index in range(len(images)):
        grey = np.clip(images[index] * 255, 0, 255).astype(np.uint8)
        group = [cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR), colour_labels(targets[index])]
        if labels is not None:
            group.append(colour_labels(labels[index]))
        row, column = divmod(index, columns)
        y, x = row * (size + gap), column * (cell + 3 * gap)
        for part, tile in enumerate(group):
            left = x + part * (size + gap)
            picture[y : y + size, left : left + size] = tile
    return picture
