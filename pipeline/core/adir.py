"""ADIR/PSI M-FISH format: labelled DAPI metaphases, their clusters, chromosome instances and the
slide split shared by every stage.

A folder in this format holds ``<name>D.tif`` (DAPI, uint8 grey) and, when labelled,
``<name>K.tif`` (uint8: 0 background, 1..24 chromosome class, 255 overlap of two or more
chromosomes), in sub-folders named ``<probe set><slide number>__<karyotype>``. The slide id is the
first three characters of that sub-folder's name; images of one slide never straddle splits.

Arrays are indexed ``[row, col]`` (y, x). Boxes are float32 ``(N, 4)`` as ``x0, y0, x1, y1`` in
pixel-edge coordinates: ``x1 = last column + 1``, so ``x1 - x0`` is the width in pixels (COCO's
``x, y, w, h`` is ``x0, y0, x1 - x0, y1 - y0``).
"""

from __future__ import annotations

import json
import random
import re
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import tifffile

from pipeline.core.errors import DatasetError
from pipeline.core.imageio import otsu_foreground
from pipeline.core.resources import resource

OVERLAP_LABEL = 255
MIN_PIXELS = 20  # DESIGN.md: components smaller than this are label noise, not chromosomes
DEFAULT_SPLIT_FILE = resource("data", "adir_split.json")


@dataclass(frozen=True)
class AdirImage:
    """One metaphase of an ADIR-format folder.

    ``name`` is the file stem without its trailing ``D``/``K`` (e.g. ``A0101XY``); ``slide`` the
    first three characters of the folder holding it (e.g. ``A01``); ``label_path`` is None for an
    unlabelled image.
    """

    slide: str
    name: str
    dapi_path: Path
    label_path: Path | None


def find_images(folder: str | Path, labelled_only: bool = True) -> list[AdirImage]:
    """All ``*D.tif`` metaphases under ``folder`` (searched recursively), sorted by path.

    Raises DatasetError if the folder is missing, holds no DAPI image, or holds a ``*K.tif``
    without its ``*D.tif``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"dataset folder not found: {folder}")
    dapi = {p.with_name(p.name[:-5]): p for p in folder.rglob("*D.tif")}
    labels = {p.with_name(p.name[:-5]): p for p in folder.rglob("*K.tif")}
    orphans = sorted(set(labels) - set(dapi))
    if orphans:
        raise DatasetError(
            f"label image without its DAPI image: {labels[orphans[0]]} "
            f"(expected {orphans[0].name}D.tif beside it; {len(orphans)} such files)"
        )
    images = [
        AdirImage(
            slide=stem.parent.name[:3] if stem.parent != folder else stem.name[:3],
            name=stem.name,
            dapi_path=path,
            label_path=labels.get(stem),
        )
        for stem, path in sorted(dapi.items())
    ]
    if labelled_only:
        images = [image for image in images if image.label_path is not None]
    if not images:
        kind = "labelled metaphase (*D.tif with *K.tif)" if labelled_only else "*D.tif image"
        raise DatasetError(f"no {kind} found under {folder}")
    return images


CASE_INFO = "Case Info"  # the karyotype of the metaphases in an ADIR folder


@dataclass(frozen=True)
class Karyotype:
    """The karyotype an ADIR folder's ``Case Info`` gives (its first line), as far as it tells
    what K can be trusted with (DESIGN.md, "What K does not say").

    ``text`` is None when the folder has no ``Case Info`` (a user's own data): nothing is known,
    and the labels are taken as they are.
    """

    text: str | None

    @property
    def compact(self) -> str:
        return re.sub(r"\s+", "", self.text or "")

    @property
    def complete(self) -> bool:
        """A complete normal karyotype (46,XX or 46,XY): every chromosome labelled, once."""
        return re.fullmatch(r"46,X[XY]", self.compact) is not None

    @property
    def missing(self) -> bool:
        """Chromosomes left out of K: fewer than 46 counted, or a ``-N`` loss."""
        count = re.match(r"(\d+),", self.compact)
        return bool(count and int(count.group(1)) < 46) or "-" in self.compact

    @property
    def rearranged(self) -> bool:
        """Translocations, derivatives, insertions or rings: one chromosome may carry two
        classes in K (two "instances" meeting end to end)."""
        return re.search(r"t\(|der|ins|r\(", self.compact, re.IGNORECASE) is not None


def read_karyotype(image: AdirImage) -> Karyotype:
    """The ``Case Info`` karyotype of the folder holding ``image`` (``Karyotype(None)`` if none)."""
    path = image.dapi_path.parent / CASE_INFO
    if not path.is_file():
        return Karyotype(None)
    lines = path.read_bytes().replace(b"\x00", b"").decode("latin-1").strip().splitlines()
    return Karyotype(lines[0].strip() if lines else None)


UNLABELLED_PIECE_PIXELS = (30, 2000)  # DESIGN.md: chromosome-sized; nuclei are larger
UNLABELLED_CLEARANCE = 2  # pixels a bright piece keeps from every label to count as unlabelled


def unlabelled_pieces(normalised: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Bright, chromosome-sized pieces of the image that K leaves at 0 (DESIGN.md).

    ``normalised`` float32 ``(H, W)`` in [0, 1], chromosomes bright (``pipeline.imageio``);
    ``labels`` the K image. Foreground is Otsu's threshold of the image; a piece is an
    8-connected component of the foreground farther than 2 px from every labelled pixel, of
    30..2000 pixels, grown back by 2 px (its blurred edge) but never onto a labelled pixel.
    Returns bool ``(H, W)``.
    """
    labelled = labels > 0
    size = 2 * UNLABELLED_CLEARANCE + 1
    kernel = np.ones((size, size), np.uint8)
    near = cv2.dilate(labelled.astype(np.uint8), kernel).astype(bool)
    count, pieces, stats, _ = cv2.connectedComponentsWithStats(
        (otsu_foreground(normalised) & ~near).astype(np.uint8), connectivity=8
    )
    low, high = UNLABELLED_PIECE_PIXELS
    keep = np.flatnonzero(
        (stats[:, cv2.CC_STAT_AREA] >= low) & (stats[:, cv2.CC_STAT_AREA] <= high)
    )
    found = np.isin(pieces, keep[keep > 0])
    return cv2.dilate(found.astype(np.uint8), kernel).astype(bool) & ~labelled


def read_tiff_plane(path: str | Path) -> np.ndarray:
    """First plane of a TIFF as stored (uint8 for ADIR files: palette indices equal grey levels)."""
    try:
        array = tifffile.imread(path, key=0)
    except Exception as error:  # tifffile raises several types for broken files
        raise DatasetError(f"cannot read {path}: {error}") from error
    return np.asarray(array)


def load(image: AdirImage) -> tuple[np.ndarray, np.ndarray | None]:
    """DAPI ``(H, W)`` uint8 (``(H, W, 3)`` for an RGB image, e.g. ``chromoseg synth``'s
    G-band style) and labels ``(H, W)`` uint8 (None when unlabelled)."""
    dapi = read_tiff_plane(image.dapi_path)
    if image.label_path is None:
        return dapi, None
    labels = read_tiff_plane(image.label_path)
    if labels.shape != dapi.shape[:2]:
        raise DatasetError(
            f"{image.label_path} is {labels.shape}, its DAPI image {dapi.shape}: shapes must match"
        )
    return dapi, labels


def _components(mask: np.ndarray, min_pixels: int) -> list[np.ndarray]:
    """8-connected components of a bool mask with at least ``min_pixels`` pixels, as bool masks."""
    count, labelled, stats, _ = cv2.connectedComponentsWithStats(
        mask.astype(np.uint8), connectivity=8
    )
    return [labelled == i for i in range(1, count) if stats[i, cv2.CC_STAT_AREA] >= min_pixels]


def cluster_labels(labels: np.ndarray, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """Clusters: 8-connected components of ``labels > 0`` with >= ``min_pixels`` pixels.

    Returns int32 ``(H, W)``: 0 outside clusters, 1..N cluster ids in scan order.
    """
    out = np.zeros(labels.shape, np.int32)
    for index, component in enumerate(_components(labels > 0, min_pixels), start=1):
        out[component] = index
    return out


def masks_to_boxes(masks: np.ndarray) -> np.ndarray:
    """Boxes of bool masks ``(N, H, W)`` as float32 ``(N, 4)`` x0, y0, x1, y1 (pixel edges)."""
    boxes = np.zeros((len(masks), 4), np.float32)
    for i, mask in enumerate(masks):
        rows = np.flatnonzero(mask.any(axis=1))
        cols = np.flatnonzero(mask.any(axis=0))
        boxes[i] = cols[0], rows[0], cols[-1] + 1, rows[-1] + 1
    return boxes


def cluster_boxes(labels: np.ndarray, min_pixels: int = MIN_PIXELS) -> np.ndarray:
    """Boxes of the clusters of a K image: float32 ``(N, 4)`` x0, y0, x1, y1 (pixel edges)."""
    clusters = cluster_labels(labels, min_pixels)
    count = int(clusters.max())
    return masks_to_boxes(clusters[None] == np.arange(1, count + 1)[:, None, None])


def chromosome_instances(
    labels: np.ndarray, min_pixels: int = MIN_PIXELS
) -> tuple[np.ndarray, np.ndarray]:
    """Chromosome instances of a K image, as DESIGN.md defines them.

    For each class 1..24, the 8-connected pieces of ``K == class``; each 8-connected region of
    ``K == 255`` is added to every piece that touches it (1-pixel dilation). Pieces of one class
    that share an overlap region are one chromosome (a chromosome crossed by another is cut in two
    by the crossing in K). Kept when it has >= ``min_pixels`` pixels of its own class. Returns
    bool masks ``(N, H, W)`` (they may overlap) and classes ``(N,)`` int32, ordered by class then
    scan order. Overlap regions touching no chromosome are dropped.
    """
    kernel = np.ones((3, 3), np.uint8)
    overlaps = _components(labels == OVERLAP_LABEL, 1)
    grown = [cv2.dilate(region.astype(np.uint8), kernel).astype(bool) for region in overlaps]
    masks, classes = [], []
    for value in np.unique(labels):
        if value == 0 or value == OVERLAP_LABEL:
            continue
        own = labels == value
        joined = own.copy()
        for region, halo in zip(overlaps, grown, strict=True):
            if (halo & own).any():
                joined |= region
        for component in _components(joined, 1):
            if (component & own).sum() >= min_pixels:
                masks.append(component)
                classes.append(int(value))
    shape = (0, *labels.shape)
    return (
        np.stack(masks) if masks else np.zeros(shape, bool),
        np.asarray(classes, np.int32),
    )


CLASSES = 24  # ADIR's chromosome classes 1..24


def labels_from_instances(masks: np.ndarray) -> np.ndarray:
    """A K image whose ``chromosome_instances`` are ``masks``: the inverse of that function, to
    turn instance masks (a run's label TIFF, corrected by hand or not) into training labels.

    ``masks``: bool ``(N, H, W)``, each chromosome whole; they may overlap. Pixels of two or more
    masks become 255 (overlap); the others take their chromosome's class. Classes are not
    karyotype classes here but colours 1..24: chromosomes that touch or overlap, or touch one
    overlap region, get different ones (greedy, largest first), since ``chromosome_instances``
    joins pieces of one class that meet. Raises DatasetError when 24 do not suffice. Returns
    uint8 ``(H, W)``.

    The round trip is exact when every overlap region lies inside each chromosome that touches
    it, as for masks that came from a K image; K cannot tell more: where three chromosomes pile
    on one spot, each comes back with the whole pile.
    """
    masks = np.asarray(masks, bool)
    labels = np.zeros(masks.shape[1:], np.uint8)
    if not len(masks):
        return labels
    kernel = np.ones((3, 3), np.uint8)
    overlap = masks.sum(axis=0) >= 2
    own = masks & ~overlap
    grown = np.stack([cv2.dilate(mask.astype(np.uint8), kernel).astype(bool) for mask in masks])
    meets = np.stack([(halo & masks).any(axis=(1, 2)) for halo in grown])
    for region in _components(overlap, 1):
        halo = cv2.dilate(region.astype(np.uint8), kernel).astype(bool)
        touching = (own & halo).any(axis=(1, 2))
        meets |= touching[:, None] & touching[None]
    colours = np.zeros(len(masks), np.int64)
    for index in np.argsort(-masks.sum(axis=(1, 2)), kind="stable"):
        taken = set(colours[meets[index]].tolist())
        free = [colour for colour in range(1, CLASSES + 1) if colour not in taken]
        if not free:
            raise DatasetError(f"more than {CLASSES} chromosomes meet one another: cannot label")
        colours[index] = free[0]
    for mask, colour in zip(own, colours, strict=True):
        labels[mask] = colour
    labels[overlap] = OVERLAP_LABEL
    return labels


def make_split(
    images: list[AdirImage], test_fraction: float = 0.2, val_fraction: float = 0.1, seed: int = 0
) -> dict[str, list[str]]:
    """Assign whole slides to ``train``/``val``/``test``, deterministically for a given seed.

    Slides are shuffled with ``seed`` and taken for test until both the fraction of slides and the
    fraction of images reach ``test_fraction``; then likewise for val. Returns sorted slide ids
    per part.
    """
    counts: dict[str, int] = {}
    for image in images:
        counts[image.slide] = counts.get(image.slide, 0) + 1
    slides = sorted(counts)
    random.Random(seed).shuffle(slides)
    split: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    total_images = sum(counts.values())
    for part, fraction in (("test", test_fraction), ("val", val_fraction)):
        while slides and (
            len(split[part]) < fraction * len(counts)
            or sum(counts[s] for s in split[part]) < fraction * total_images
        ):
            split[part].append(slides.pop())
    split["train"] = slides
    return {part: sorted(ids) for part, ids in split.items()}


def write_split(split: dict[str, list[str]], path: str | Path = DEFAULT_SPLIT_FILE) -> None:
    Path(path).write_text(json.dumps(split, indent=2) + "\n")


def read_split(path: str | Path = DEFAULT_SPLIT_FILE) -> dict[str, list[str]]:
    """The slide split: ``{"train": [...], "val": [...], "test": [...]}`` of slide ids."""
    try:
        split = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise DatasetError(f"cannot read split file {path}: {error}") from error
    if set(split) != {"train", "val", "test"}:
        raise DatasetError(f"split file {path} must have exactly the keys train, val, test")
    return split


def split_for(images: list[AdirImage], split_path: str | Path = DEFAULT_SPLIT_FILE) -> dict:
    """The split to train on ``images``: the split file's when it knows any of their slides,
    else a fresh ``make_split`` of them (a user's own data; training saves it beside the model).
    """
    split = read_split(split_path)
    known = {slide for ids in split.values() for slide in ids}
    return split if any(image.slide in known for image in images) else make_split(images)


def select(
    images: list[AdirImage], part: str, split: dict[str, list[str]] | None = None
) -> list[AdirImage]:
    """The images of one split part (``train``, ``val`` or ``test``).

    On a folder none of whose slides the split knows (someone else's data), every image belongs
    to every part: evaluation then covers all of it.
    """
    split = read_split() if split is None else split
    known = {slide for ids in split.values() for slide in ids}
    if not any(image.slide in known for image in images):
        return list(images)
    return [image for image in images if image.slide in split[part]]
