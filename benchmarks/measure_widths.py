"""Chromosome widths (``pipeline.scale.chromosome_width``) of ADIR slides and other images: the
reference width the models were trained at (``pipeline.scale.ADIR_WIDTH``) and what the automatic
scale makes of other microscopes' images; and, for a ``chromoseg synth`` folder, the width
measured against the width each metaphase was drawn at (its ``synth.json``).

    python benchmarks/measure_widths.py --data ../shared/data/adir_mfish/MFISH_TIFF --part train \
        [--images PATH ...] [--synth DIR ...] [--json OUT]

For ADIR it also prints each metaphase's width against that of its labelled chromosomes (the
same ridge rule on K > 0): how well the measure follows the labels.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from pipeline.core import adir
from pipeline.core.files import write_json
from pipeline.core.imageio import normalise, read_image
from pipeline.scale import chromosome_width, model_scale, ridge_width


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ADIR-format folder")
    parser.add_argument("--part", default="train", choices=("train", "val", "test"))
    parser.add_argument("--images", nargs="*", default=[], help="other images to measure")
    parser.add_argument(
        "--synth", nargs="*", default=[], help="chromoseg synth folders: measured against drawn"
    )
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    out: dict = {}
    if args.data:
        out["adir"] = adir_widths(args.data, args.part)
    for path in args.images:
        width = chromosome_width(normalise(read_image(path)))
        out[path] = {"width_px": width, "scale": model_scale(width)}
        print(f"{path}: width {width:.2f} px, scale {model_scale(width):.3f}")
    for folder in args.synth:
        out[folder] = measured_against_drawn(Path(folder))
    if args.json:
        write_json(args.json, out)


def adir_widths(data: str, part: str) -> dict:
    """The widths of an ADIR split part's metaphases (the reference width is their median), each
    against the width of its labelled chromosomes by the same ridge rule (``ridge_width`` of
    K > 0): printed, with the ratio's median, the mean of its |log| and how many lie beyond the
    DAPI segmenter's tolerance (1.3) and the five furthest off."""
    items = adir.select(adir.find_images(data), part)
    images = []
    for item in items:
        raw, labels = adir.load(item)
        width, labelled = chromosome_width(normalise(raw)), ridge_width(labels > 0)
        ratio = None if width is None or labelled is None else width / labelled
        images.append(
            {"image": item.name, "width_px": width, "labelled_px": labelled, "ratio": ratio}
        )
    widths = np.asarray([image["width_px"] for image in images if image["width_px"] is not None])
    ratios = np.asarray([image["ratio"] for image in images if image["ratio"] is not None])
    figures = {
        "part": part,
        "images": len(items),
        "median_width_px": float(np.median(widths)),
        "p10_p90_px": [float(np.percentile(widths, 10)), float(np.percentile(widths, 90))],
        "median_ratio_to_labels": float(np.median(ratios)),
        "mean_abs_log_ratio": float(np.mean(np.abs(np.log(ratios)))),
        "beyond_1.3": int(np.sum(np.abs(np.log(ratios)) > np.log(1.3))),
        "per_image": images,
    }
    print(
        f"ADIR {part}: {len(items)} images, median width {figures['median_width_px']:.2f} px, "
        f"10-90%: {figures['p10_p90_px'][0]:.2f}-{figures['p10_p90_px'][1]:.2f}; against the "
        f"labelled chromosomes' width: median ratio {figures['median_ratio_to_labels']:.3f}, "
        f"mean |log ratio| {figures['mean_abs_log_ratio']:.3f}, beyond 1.3x "
        f"{figures['beyond_1.3']} of {len(ratios)}"
    )
    worst = sorted(images, key=lambda image: abs(np.log(image["ratio"] or 1e-3)))[-5:][::-1]
    for image in worst:
        print(
            f"  {image['image']}: {image['width_px'] or 0:.1f} px, labelled "
            f"{image['labelled_px'] or 0:.1f} px"
        )
    return figures


def shipped_tolerance(style: str) -> tuple[float, float]:
    """The automatic scale's tolerance (thinner, thicker) for a synthetic style: that of the
    shipped segmenter its images go to (G-band: the dark-image one)."""
    from pipeline.core.modelfolder import ModelFolder
    from pipeline.models import scale_tolerance_of
    from segmenter.api import PRETRAINED, PRETRAINED_DARK, STAGE
    from segmenter.config import SegmenterConfig

    folder = PRETRAINED_DARK if style == "gband" else PRETRAINED
    return scale_tolerance_of(ModelFolder(folder, STAGE, SegmenterConfig).config.inference)


def measured_against_drawn(folder: Path) -> dict:
    """Each metaphase of a ``chromoseg synth`` folder: the width drawn (``synth.json``), the width
    measured, their ratio and the scale the pipeline sees it at (with the shipped segmenters'
    tolerances); printed, with the share of ratios within 15 % (of 1, and of their median) and the
    five furthest off."""
    manifest = json.loads((folder / "synth.json").read_text())
    drawn = {item["name"]: item for item in manifest["images"]}
    tolerance = shipped_tolerance(manifest["style"])
    images = []
    for item in adir.find_images(folder):
        width = chromosome_width(normalise(adir.load(item)[0]))
        wanted = drawn[item.name]["chromosome_width_px"]
        ratio = None if width is None else width / wanted
        images.append(
            {
                "image": item.name,
                "density": drawn[item.name]["density"],
                "drawn_px": wanted,
                "measured_px": width,
                "ratio": ratio,
                "scale": model_scale(width, tolerance=tolerance),
            }
        )
    ratios = np.asarray([image["ratio"] or 0.0 for image in images])
    within = float(np.mean(np.abs(ratios - 1) <= 0.15))
    # synthetic chromosomes measure a set share thinner than drawn (drawn at ADIR_WIDTH as their
    # real source images measure); the scale the pipeline sees them at follows the ratio between
    # images, so that is what must hold
    consistent = float(np.mean(np.abs(ratios / np.median(ratios) - 1) <= 0.15))
    worst = sorted(images, key=lambda image: abs((image["ratio"] or 0.0) - 1))[-5:][::-1]
    print(
        f"{folder}: {len(images)} metaphases, measured/drawn median {np.median(ratios):.2f}, "
        f"within 15 %: {within:.2f}; within 15 % of the median ratio: {consistent:.2f}"
    )
    for image in worst:
        print(
            f"  {image['image']} ({image['density']}): drawn {image['drawn_px']:.1f} px, "
            f"measured {image['measured_px'] or 0:.1f}, scale {image['scale']:.2f}"
        )
    return {
        "images": images,
        "median_ratio": float(np.median(ratios)),
        "within_15_percent": within,
        "within_15_percent_of_median_ratio": consistent,
    }


if __name__ == "__main__":
    main()
