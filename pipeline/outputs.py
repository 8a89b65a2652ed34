"""Files a run writes, each atomically (``pipeline.core.files``): a killed run never leaves a
half-written file.

Label TIFF (``*.labels.tif``): uint16, two planes ``(2, H, W)``, one TIFF page each, deflate
(zlib) compressed: mostly background, a 10k x 10k label image takes about 2 MB instead of
400 MB. Fiji's File > Open shows a two-slice stack (ImageJ reads deflate page by page; an ImageJ
hyperstack would have been read as contiguous uncompressed data, which is why this is a plain
multi-page TIFF), napari and ``tifffile.imread`` give ``(2, H, W)``. Plane 0 holds at every pixel
the lowest chromosome id lying there (0 = background), so it alone shows every chromosome whole
except where a lower id crosses it. Plane 1 is 0 except at overlap pixels (two or more
chromosomes), where it holds the highest id lying there. Pixels with both planes nonzero are
exactly the overlap pixels.

Overlay PNG (``*.overlay.png``): the normalised image in grey, each chromosome tinted with its
own colour and outlined, overlap pixels white, ids written at the centroids.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import tifffile
from pycocotools import mask as coco_mask

from pipeline.core.files import write_atomic, write_bytes, write_png
from pipeline.stitch import Instance

CATEGORY = {"id": 1, "name": "chromosome", "supercategory": "chromosome"}


def table_csv(table: pd.DataFrame) -> bytes:
    """The CSV text of a table (no index), the same bytes for the same table."""
    return table.to_csv(index=False, lineterminator="\n").encode()


def write_table(path: Path, table: pd.DataFrame) -> None:
    write_bytes(path, table_csv(table))


def label_planes(instances: list[Instance], shape: tuple[int, int]) -> np.ndarray:
    """uint16 ``(2, H, W)``: lowest id per pixel, and highest id at overlap pixels (ids are list
    index + 1; see the module docstring)."""
    if len(instances) > np.iinfo(np.uint16).max:
        raise ValueError(f"{len(instances)} chromosomes do not fit a uint16 label image")
    planes = np.zeros((2, *shape), np.uint16)
    for chromosome_id, instance in reversed(list(enumerate(instances, start=1))):
        x0, y0, x1, y1 = instance.box
        low = planes[0, y0:y1, x0:x1]
        high = planes[1, y0:y1, x0:x1]
        # ids come highest first: the first id met at a pixel is its highest
        first_crossing = instance.mask & (low > 0) & (high == 0)
        high[first_crossing] = low[first_crossing]
        low[instance.mask] = chromosome_id
    return planes


def write_label_tiff(path: Path, instances: list[Instance], shape: tuple[int, int]) -> None:
    planes = label_planes(instances, shape)
    write_atomic(
        path,
        lambda temporary: tifffile.imwrite(
            temporary,
            planes,
            photometric="minisblack",
            metadata={"axes": "CYX"},
            compression="zlib",
        ),
    )


def read_label_tiff(path: Path) -> np.ndarray:
    """The ``(2, H, W)`` uint16 planes of a label TIFF written by ``write_label_tiff``."""
    return np.asarray(tifffile.imread(path))


def palette(count: int) -> np.ndarray:
    """uint8 ``(count, 3)`` RGB colours, well apart, the same on every run (golden-ratio hues)."""
    if count == 0:  # OpenCV refuses an empty image
        return np.zeros((0, 3), np.uint8)
    hues = (np.arange(count) * 0.618033988749895 % 1.0 * 180).astype(np.uint8)
    hsv = np.stack([hues, np.full(count, 200, np.uint8), np.full(count, 255, np.uint8)], -1)
    return cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]


def overlay_rgb(grey: np.ndarray, instances: list[Instance]) -> np.ndarray:
    """uint8 RGB ``(H, W, 3)``: the normalised image as uint8 ``(H, W)`` (chromosomes bright) with
    every chromosome tinted, outlined and numbered; overlap pixels white."""
    out = np.repeat(grey[..., None], 3, axis=2)
    colours = palette(len(instances))
    coverage = np.zeros(grey.shape, np.uint8)
    for instance, colour in zip(instances, colours, strict=True):
        x0, y0, x1, y1 = instance.box
        region = out[y0:y1, x0:x1]
        tinted = 0.45 * region[instance.mask] + 0.55 * colour
        region[instance.mask] = tinted.astype(np.uint8)
        coverage[y0:y1, x0:x1] += instance.mask
        contours, _ = cv2.findContours(
            instance.mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE
        )
        cv2.drawContours(region, contours, -1, colour.tolist(), 1)
    out[coverage > 1] = 255
    for chromosome_id, instance in enumerate(instances, start=1):
        rows, cols = np.nonzero(instance.mask)
        x = int(instance.col0 + cols.mean()) - 4
        y = int(instance.row0 + rows.mean()) + 4
        for colour, thickness in (((0, 0, 0), 2), ((255, 255, 255), 1)):
            cv2.putText(
                out,
                str(chromosome_id),
                (x, y),
                cv2.FONT_HERSHEY_SIMPLEX,
                0.33,
                colour,
                thickness,
                cv2.LINE_AA,
            )
    return out


def write_overlay(path: Path, grey: np.ndarray, instances: list[Instance]) -> None:
    write_png(path, cv2.cvtColor(overlay_rgb(grey, instances), cv2.COLOR_RGB2BGR))


def rle(instance: Instance, shape: tuple[int, int]) -> dict:
    """COCO compressed RLE (``counts`` as str) of an instance over an image of ``shape``, made
    from its box-local mask without building the full-image mask."""
    height, width = shape
    columns = np.pad(instance.mask.T, ((0, 0), (1, 1))).astype(np.int8)  # COCO runs go down
    steps = np.diff(columns, axis=1)
    column, start = np.nonzero(steps == 1)
    _, end = np.nonzero(steps == -1)
    offset = (instance.col0 + column) * height + instance.row0
    start, end = offset + start, offset + end
    joined = np.flatnonzero(end[:-1] == start[1:])  # a run going on into the next column
    start, end = np.delete(start, joined + 1), np.delete(end, joined)
    edges = np.stack([start, end], axis=1).ravel()
    counts = np.diff(np.concatenate([[0], edges, [height * width]]))
    encoded = coco_mask.frPyObjects(
        {"size": [height, width], "counts": counts.tolist()}, height, width
    )
    return {"size": [height, width], "counts": encoded["counts"].decode()}


def coco_annotations(instances: list[Instance], shape: tuple[int, int], scores) -> list[dict]:
    """COCO annotations of one image (``image_id`` and ``id`` left for the batch to fill): RLE
    ``segmentation`` over the whole image, ``bbox`` x, y, w, h, ``area``, ``score``,
    ``chromosome_id``."""
    out = []
    for chromosome_id, (instance, score) in enumerate(zip(instances, scores, strict=True), start=1):
        x0, y0, x1, y1 = instance.box
        out.append(
            {
                "category_id": CATEGORY["id"],
                "chromosome_id": chromosome_id,
                "segmentation": rle(instance, shape),
                "bbox": [x0, y0, x1 - x0, y1 - y0],
                "area": instance.area,
                "score": round(float(score), 4),
                "iscrowd": 0,
            }
        )
    return out


def coco_document(images: list[dict]) -> dict:
    """The batch ``instances.json`` from per-image records ``{"file_name", "width", "height",
    "slide", "annotations"}`` in order; ids are assigned 1.. in that order."""
    document = {"images": [], "annotations": [], "categories": [CATEGORY]}
    for image_id, record in enumerate(images, start=1):
        document["images"].append(
            {
                "id": image_id,
                "file_name": record["file_name"],
                "width": record["width"],
                "height": record["height"],
                "slide": record["slide"],
            }
        )
        for annotation in record["annotations"]:
            document["annotations"].append(
                {"id": len(document["annotations"]) + 1, "image_id": image_id, **annotation}
            )
    return document


def decode_segmentation(annotation: dict) -> np.ndarray:
    """bool ``(H, W)`` mask of a COCO annotation written by ``coco_annotations``."""
    rle = dict(annotation["segmentation"])
    rle["counts"] = rle["counts"].encode()
    with warnings.catch_warnings():  # pycocotools 2.0.x: a NumPy 2 copy-keyword deprecation
        warnings.simplefilter("ignore", DeprecationWarning)
        return coco_mask.decode(rle).astype(bool)
