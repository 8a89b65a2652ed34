"""``chromoseg run`` on one slide-sized image: time, peak memory and output sizes.

    .venv/bin/python benchmarks/bench_large_image.py --data ADIR [--rows 20 --cols 16]
                                                     [--keep DIR] [--json OUT]

Builds a mosaic of ``--rows`` x ``--cols`` ADIR DAPI metaphases (every ``*D.tif`` under ``--data``,
sorted, repeated as needed, each cut to 517 x 645, ADIR's usual size) as one uint8 TIFF, the way
a stitched slide scan arrives; the default is 10,340 x 10,320 pixels (320 metaphases). Then runs
``chromoseg run MOSAIC --out OUT`` in a child process and prints the chromosomes found, the wall
time, the per-step seconds from ``run.json``, the child's peak resident memory (ru_maxrss) and the
sizes of the outputs. Nothing is kept unless ``--keep`` names a folder.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import tifffile

from pipeline.core.adir import find_images
from pipeline.core.imageio import read_image, to_grey

TILE_ROWS, TILE_COLS = 517, 645  # the usual ADIR metaphase


def mosaic(data: Path, rows: int, cols: int) -> np.ndarray:
    """uint8 ``(rows * 517, cols * 645)``: the folder's metaphases in reading order, repeated."""
    paths = [image.dapi_path for image in find_images(data, labelled_only=False)]
    out = np.zeros((rows * TILE_ROWS, cols * TILE_COLS), np.uint8)
    for index in range(rows * cols):
        grey = to_grey(read_image(paths[index % len(paths)]))[:TILE_ROWS, :TILE_COLS]
        row, col = divmod(index, cols)
        out[
            row * TILE_ROWS : row * TILE_ROWS + grey.shape[0],
            col * TILE_COLS : col * TILE_COLS + grey.shape[1],
        ] = grey
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="ADIR-format folder (*D.tif)")
    parser.add_argument("--rows", type=int, default=20)
    parser.add_argument("--cols", type=int, default=16)
    parser.add_argument("--keep", help="write the mosaic and the outputs here instead")
    parser.add_argument("--json", help="write the figures to this JSON file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(args.keep or scratch)
        (folder / "slide").mkdir(parents=True, exist_ok=True)
        image_path = folder / "slide" / "mosaic.tif"
        tifffile.imwrite(image_path, mosaic(Path(args.data), args.rows, args.cols))
        out = folder / "out"
        command = ["chromoseg", "run", str(image_path), "--out", str(out), "--quiet"]
        started = time.perf_counter()
        subprocess.run([str(Path(sys.executable).with_name("chromoseg")), *command[1:]], check=True)
        wall = time.perf_counter() - started
        peak_mib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
        entry = json.loads((out / "run.json").read_text())["images"][0]
        sizes = {
            path.relative_to(out).as_posix(): path.stat().st_size
            for path in sorted(out.rglob("*"))
            if path.is_file()
        }
        height, width = tifffile.imread(image_path).shape
    figures = {
        "image": f"{width} x {height} px, {args.rows * args.cols} metaphases",
        "command": " ".join(command),
        "status": entry["status"],
        "chromosomes": entry["chromosomes"],
        "wall_seconds": round(wall, 1),
        "seconds_per_step": {step: round(value, 1) for step, value in entry["seconds"].items()},
        "peak_rss_mib": round(peak_mib),
        "output_bytes": sizes,
    }
    print(json.dumps(figures, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
