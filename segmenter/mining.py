"""Single chromosomes mined from unlabelled metaphase images (``chromoseg mine-singles``).

A lab adapts the segmenter to its own microscope and stain without drawing a label: isolated,
elongated foreground pieces of single-chromosome size are taken as single chromosomes, written in
the ADIR format, and training lays them over each other (``chromoseg train segmenter --singles
DIR``) as it does with the labelled singles.

A piece is an 8-connected component of the foreground (Otsu's threshold of the normalised image,
closed with a 3x3 square so that a pale band does not split a banded chromosome, holes filled).
It is mined when it
- has ``min_area_ratio``..``max_area_ratio`` times the median area of the image's pieces of 30 px
  or more (most pieces of a metaphase are single chromosomes),
- is elongated (long / short axis of its second moments >= ``min_elongation``),
- is solid (area / convex hull area >= ``min_solidity``: crossings and bent pairs are not),
- keeps ``clearance`` px from every other piece and from the image's edges.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.core import adir, imageio
from pipeline.core.files import write_png

NOISE_PIXELS = 30
CASE_INFO_TEXT = "mined singles: other chromosomes unlabelled"


@dataclass(frozen=True)
class MiningRules:
    min_area_ratio: float = 0.3
    max_area_ratio: float = 2.5
    min_elongation: float = 1.6
    min_solidity: float = 0.75
    clearance: int = 5


def _pieces(normalised: np.ndarray) -> np.ndarray:
    """Foreground pieces of a normalised image: int32 ``(H, W)`` labels, 0 background."""
    foreground = imageio.otsu_foreground(normalised).astype(np.uint8)
    foreground = cv2.morphologyEx(foreground, cv2.MORPH_CLOSE, np.ones((3, 3), np.uint8))
    contours, _ = cv2.findContours(foreground, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    filled = np.zeros_like(foreground)
    cv2.drawContours(filled, contours, -1, 1, thickness=cv2.FILLED)
    return cv2.connectedComponents(filled, connectivity=8)[1]


def elongation(mask: np.ndarray) -> float:
    """Long / short axis ratio of a bool mask's second moments (1 for a disc)."""
    rows, cols = np.nonzero(mask)
    values = np.linalg.eigvalsh(np.cov(np.stack([cols, rows]).astype(np.float64)))
    return float(np.sqrt(values[1] / max(values[0], 1e-6)))


def solidity(mask: np.ndarray) -> float:
    """Area / convex hull area of a bool mask."""
    points = cv2.findNonZero(mask.astype(np.uint8))
    hull = cv2.contourArea(cv2.convexHull(points))
    return float(mask.sum() / max(hull, 1.0))


def mine_singles(normalised: np.ndarray, rules: MiningRules = MiningRules()) -> np.ndarray:
    """Masks ``(N, H, W)`` bool of the single chromosomes found in a normalised image
    (``pipeline.imageio.normalise``: float32 ``(H, W)``, chromosomes bright), by the rules in the
    module docstring."""
    pieces = _pieces(normalised)
    areas = np.bincount(pieces.ravel())
    areas[0] = 0
    sized = np.flatnonzero(areas >= NOISE_PIXELS)
    if not len(sized):
        return np.zeros((0, *normalised.shape), bool)
    median = float(np.median(areas[sized]))
    kernel = np.ones((2 * rules.clearance + 1,) * 2, np.uint8)
    height, width = normalised.shape
    out = []
    for index in sized:
        if not rules.min_area_ratio * median <= areas[index] <= rules.max_area_ratio * median:
            continue
        mask = pieces == index
        rows, cols = np.nonzero(mask)
        c = rules.clearance
        if rows.min() < c or cols.min() < c or rows.max() >= height - c or cols.max() >= width - c:
            continue
        if elongation(mask) < rules.min_elongation or solidity(mask) < rules.min_solidity:
            continue
        halo = cv2.dilate(mask.astype(np.uint8), kernel).astype(bool)
        if ((pieces > 0) & ~mask & halo).any():
            continue
        out.append(mask)
    return np.stack(out) if out else np.zeros((0, *normalised.shape), bool)


def write_mined(path: Path, name: str, out: Path, rules: MiningRules = MiningRules()) -> int:
    """Mine one image file into ``out/<name>/`` in the ADIR format: ``<name>D.tif`` (the image
    normalised, uint8, chromosomes bright), ``<name>K.tif`` (mined singles 1, all else 0), a
    ``Case Info`` saying the other chromosomes are unlabelled (so training ignores them) and
    ``<name>_singles.png`` (the image, mined singles outlined, to check by eye). Returns the
    number of singles."""
    import tifffile

    normalised = imageio.normalise(imageio.read_image(path))
    masks = mine_singles(normalised, rules)
    folder = out / name
    folder.mkdir(parents=True, exist_ok=True)
    grey = np.clip(normalised * 255, 0, 255).astype(np.uint8)
    labels = masks.any(axis=0).astype(np.uint8) if len(masks) else np.zeros_like(grey)
    tifffile.imwrite(folder / f"{name}D.tif", grey, compression="deflate")
    tifffile.imwrite(folder / f"{name}K.tif", labels, compression="deflate")
    (folder / adir.CASE_INFO).write_text(CASE_INFO_TEXT + "\n")
    picture = cv2.cvtColor(grey, cv2.COLOR_GRAY2BGR)
    contours, _ = cv2.findContours(labels, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cv2.drawContours(picture, contours, -1, (0, 200, 0), 1)
    write_png(folder / f"{name}_singles.png", picture)
    return len(masks)
