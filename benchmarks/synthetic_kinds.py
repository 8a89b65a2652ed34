"""A picture of the synthetic clusters training makes: one row per kind, image | target.

    python benchmarks/synthetic_kinds.py --data ../shared/data/adir_mfish/MFISH_TIFF \
        --out benchmarks/results/segmenter/synthetic_kinds.png [--config configs/segmenter.yaml]

Singles come from the first 12 training-slide metaphases; rows: crossing, touching, side by side,
end to end, parallel pairs (unbanded), then banded pairs, then clusters drawn as training draws
them (sizes 1-5, 30 % banded). Colours: A red, B blue, overlap white, ignored green.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline.core import adir
from pipeline.core.files import write_png
from segmenter import dataset, evaluate, synthetic
from segmenter.config import load_config

PER_ROW = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--config", default="configs/segmenter.yaml")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    config = load_config(args.config).data
    images = adir.select(adir.find_images(args.data), "train")[:12]
    prepared = dataset.prepare(images, config.margin, config.context)
    options = config.synthetic
    rows = [((kind,), replace(options, band_fraction=0.0)) for kind in synthetic.KINDS] + [
        (("cross", "touch"), replace(options, band_fraction=1.0)),
        (None, options),
    ]
    crops, targets = [], []
    for seed, (kinds, row_options) in enumerate(rows):
        made = synthetic.make_clusters(
            prepared.singles,
            prepared.ratios,
            PER_ROW,
            seed,
            config.margin,
            row_options,
            kinds,
        )
        crops.append(made[0])
        targets.append(made[1])
    crops, targets = np.concatenate(crops), np.concatenate(targets)
    picture = evaluate.montage(crops, targets, columns=PER_ROW)
    write_png(args.out, picture)
    print(f"{len(crops)} synthetic clusters in {args.out}")


if __name__ == "__main__":
    main()
