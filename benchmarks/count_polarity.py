"""How many images of a folder ``chromoseg run`` reads as dark chromosomes on a bright background
(``pipeline.core.imageio.is_dark_on_bright``): those go to the G-band segmenter.

    python benchmarks/count_polarity.py --data ../shared/data/adir_mfish/MFISH_TIFF
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.core.imageio import is_dark_on_bright, read_image, to_grey


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True)
    parser.add_argument("--glob", default="*D.tif", help="image files under --data (recursive)")
    args = parser.parse_args()
    paths = sorted(args.data.rglob(args.glob))
    dark = [path for path in paths if is_dark_on_bright(to_grey(read_image(path)))]
    print(f"{len(dark)} of {len(paths)} images read as dark chromosomes on a bright background")
    for path in dark:
        print(f"  {path.relative_to(args.data)}")


if __name__ == "__main__":
    main()
