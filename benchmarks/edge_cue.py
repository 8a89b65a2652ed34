"""Whether segmenters separate synthetic clusters by how their edges were drawn.

    python benchmarks/edge_cue.py --data ../shared/data/adir_mfish/MFISH_TIFF --part val \
        --model DIR [--model DIR ...] --json benchmarks/results/segmenter/edge_cue_val.json

The synthetic sets of ``chromoseg eval segmenter`` (``segmenter.evaluate.SYNTHETIC_SETS``, the
part's single chromosomes, the same seeds) are drawn twice from the config's data settings:
``as_drawn``, with the first chromosome left in its window as it is (its real blurred edge, K's
mask as truth; the pasted ones cut out sharply) and no blur over the cluster, and ``exact_edges``,
every chromosome cut out and pasted from its mask, then blurred (``segmenter.synthetic``). A model
that does far better on the first has learnt the difference between the chromosomes' edges, which
real clusters do not show. Prints, per model and drawing, the permutation-invariant IoU of A, B,
overlap and the share of crops separated (``chromoseg eval segmenter``'s figures).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace
from pathlib import Path

from pipeline.core import adir
from pipeline.core.files import write_json
from segmenter import api, dataset, evaluate
from segmenter.config import load_config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder")
    parser.add_argument("--model", action="append", required=True, help="model folder (repeat)")
    parser.add_argument("--part", choices=("val", "test"), default="val")
    parser.add_argument("--config", default="configs/segmenter.yaml")
    parser.add_argument("--split", default="data/adir_split.json")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    data = load_config(args.config).data
    split = json.loads(Path(args.split).read_text())
    images = adir.select(adir.find_images(args.data), args.part, split)
    prepared = dataset.prepare(images, data.margin, data.context, workers=2)
    drawings = {
        "as_drawn": replace(
            data, synthetic=replace(data.synthetic, exact_edges=False, edge_blur=(0.0, 0.0))
        ),
        "exact_edges": replace(data, synthetic=replace(data.synthetic, exact_edges=True)),
    }
    count = getattr(data, f"{args.part}_synthetic")
    seed = evaluate.SYNTHETIC_SEEDS[args.part]
    sets = {
        name: evaluate.synthetic_sets(prepared, settings, count, seed)
        for name, settings in drawings.items()
    }
    results = {}
    for folder in args.model:
        model = api.load_model(folder)
        results[folder] = {name: evaluate.evaluate(model, drawn) for name, drawn in sets.items()}
        for drawing, scores in results[folder].items():
            for set_name, result in scores.items():
                iou = result["permutation_invariant"]["iou"]
                print(
                    f"{folder:<32} {drawing:<12} {set_name:<20} A {iou['chromosome_A']:.3f} "
                    f"B {iou['chromosome_B']:.3f} overlap {iou['overlap']:.3f} "
                    f"separated {result['separation']['separated']:.3f}"
                )
    if args.json:
        write_json(args.json, {"part": args.part, "models": results})


if __name__ == "__main__":
    main()
