"""Open label TIFFs of a run with ImageJ 1.x's own reader and compare with what chromoseg wrote.

    python benchmarks/check_imagej.py RUN_DIR [--ij-jar /usr/share/java/ij.jar]

Fiji's File > Open reads TIFFs with ImageJ 1.x's ``ij.io.Opener``; this script compiles a few
lines of Java against ``ij.jar`` (Debian/Ubuntu: ``apt install imagej``; needs a JDK for
``javac``), opens every ``*.labels.tif`` under RUN_DIR with that class, headless, and checks that
ImageJ sees the same stack as ``tifffile``: two 16-bit slices of the same size, the same sum and
maximum on each. Exit status 1 when any file differs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from pipeline.outputs import read_label_tiff

JAVA = """
import ij.ImagePlus;
import ij.io.Opener;
import ij.process.ImageProcessor;

public class OpenLabels {
    public static void main(String[] args) {
        for (String path : args) {
            ImagePlus image = new Opener().openImage(path);
            StringBuilder line = new StringBuilder(path);
            line.append("\t").append(image.getStackSize()).append(" ").append(image.getBitDepth())
                .append(" ").append(image.getHeight()).append(" ").append(image.getWidth());
            for (int s = 1; s <= image.getStackSize(); s++) {
                ImageProcessor slice = image.getStack().getProcessor(s);
                long sum = 0;
                int max = 0;
                for (int i = 0; i < slice.getPixelCount(); i++) {
                    sum += slice.get(i);
                    max = Math.max(max, slice.get(i));
                }
                line.append(" ").append(sum).append(" ").append(max);
            }
            System.out.println(line);
        }
    }
}
"""


def imagej_view(paths: list[Path], ij_jar: Path) -> dict[str, list[int]]:
    """Per file: slices, bit depth, height, width, then sum and max of each slice, as ImageJ
    reads it."""
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "OpenLabels.java").write_text(JAVA)
        subprocess.run(["javac", "-cp", str(ij_jar), "OpenLabels.java"], cwd=folder, check=True)
        output = subprocess.run(
            ["java", "-Djava.awt.headless=true", "-cp", f"{ij_jar}:{folder}", "OpenLabels"]
            + [str(path) for path in paths],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    lines = (line.split("\t") for line in output.splitlines())
    return {path: [int(v) for v in figures.split()] for path, figures in lines}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--ij-jar", type=Path, default=Path("/usr/share/java/ij.jar"))
    args = parser.parse_args()
    paths = sorted(args.run_dir.rglob("*.labels.tif"))
    if not paths:
        print(f"no *.labels.tif under {args.run_dir}", file=sys.stderr)
        return 1
    seen = imagej_view(paths, args.ij_jar)
    failed = 0
    for path in paths:
        planes = read_label_tiff(path).astype(np.int64)
        expected = [len(planes), 16, *planes.shape[1:]]
        for plane in planes:
            expected += [int(plane.sum()), int(plane.max())]
        if seen.get(str(path)) != expected:
            failed += 1
            print(f"DIFFERS {path}: ImageJ {seen.get(str(path))}, tifffile {expected}")
    print(f"{len(paths) - failed} of {len(paths)} label TIFFs read the same by ImageJ and tifffile")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
