"""Chromosome widths (``pipeline.scale.chromosome_width``) of ADIR slides and other images: the
reference width the models were trained at (``pipeline.scale.ADIR_WIDTH``) and what the automatic
scale makes of other microscopes' images.

    python benchmarks/measure_widths.py --data ../shared/data/adir_mfish/MFISH_TIFF --part train \
        [--images PATH ...] [--json OUT]
"""

from __future__ import annotations

import argparse

import numpy as np

from pipeline.core import adir
from pipeline.core.files import write_json
from pipeline.core.imageio import normalise, read_image
from pipeline.scale import chromosome_width, model_scale


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", help="ADIR-format folder")
    parser.add_argument("--part", default="train", choices=("train", "val", "test"))
    parser.add_argument("--images", nargs="*", default=[], help="other images to measure")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args()
    out: dict = {}
    if args.data:
        items = adir.select(adir.find_images(args.data), args.part)
        widths = [chromosome_width(normalise(adir.load(item)[0])) for item in items]
        widths = np.asarray([w for w in widths if w is not None])
        out["adir"] = {
            "part": args.part,
            "images": len(items),
            "median_width_px": float(np.median(widths)),
            "p10_p90_px": [float(np.percentile(widths, 10)), float(np.percentile(widths, 90))],
        }
        print(
            f"ADIR {args.part}: {len(items)} images, median width {np.median(widths):.2f} px, "
            f"10-90%: {np.percentile(widths, 10):.2f}-{np.percentile(widths, 90):.2f}"
        )
    for path in args.images:
        width = chromosome_width(normalise(read_image(path)))
        out[path] = {"width_px": width, "scale": model_scale(width)}
        print(f"{path}: width {width:.2f} px, scale {model_scale(width):.3f}")
    if args.json:
        write_json(args.json, out)


if __name__ == "__main__":
    main()
