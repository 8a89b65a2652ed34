"""Detection on images too large for the detector in one piece, in overlapping tiles.

The image is cut into ``tile`` x ``tile`` tiles overlapping by ``overlap`` pixels (the last tile
of a row or column is moved back to end at the image's edge). Each tile has a *core*: the part
nearer to it than to any neighbouring tile (the boundaries lie in the middle of the overlaps).
A box found in a tile is kept only when its centre lies in that tile's core; a cluster no larger
than ``overlap`` whose centre lies in a core lies wholly inside that tile, so every such cluster is
found once and whole, as in an untiled run. Only one tile at a time goes through the detector:
its memory is bounded by the tile size. A tile must also hold fewer clusters than the detector
returns boxes per call (200 for the shipped model; ``pipeline.run`` notes tiles that hit it).
Segmentation works on the detector boxes' own small windows and needs no tiling.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Detect = Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of side ``tile`` covering ``0..length`` with ``overlap`` pixels
    between neighbours (the last one ends at ``length``)."""
    if tile <= overlap:
        raise ValueError(f"tile ({tile}) must be larger than overlap ({overlap})")
    if length <= tile:
        return [0]
    starts = list(range(0, length - tile, tile - overlap))
    return starts + [length - tile]


def core_bounds(starts: list[int], tile: int, length: int) -> list[tuple[float, float]]:
    """Per tile, the interval of coordinates nearer to it than to its neighbours."""
    cuts = [(starts[i + 1] + starts[i] + tile) / 2 for i in range(len(starts) - 1)]
    lows = [-np.inf, *cuts]
    highs = [*cuts, np.inf]
    return list(zip(lows, highs, strict=True))


def order_boxes(boxes: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Boxes sorted top to bottom, left to right (then by size and score): the order that gives
    cluster ids 1..M, the same for tiled and untiled runs."""
    if len(boxes) == 0:
        return boxes.reshape(0, 4).astype(np.float32), scores.astype(np.float32)
    order = np.lexsort((-scores, boxes[:, 2], boxes[:, 3], boxes[:, 0], boxes[:, 1]))
    return boxes[order].astype(np.float32), scores[order].astype(np.float32)


def detect_tiled(
    detect: Detect, image: np.ndarray, tile: int, overlap: int
) -> tuple[np.ndarray, np.ndarray]:
    """``detect`` over the tiles of a ``(H, W)`` image: float32 boxes ``(N, 4)`` x0, y0, x1, y1 in
    full-image pixel edges and scores ``(N,)``, in ``order_boxes`` order."""
    height, width = image.shape
    row_starts, col_starts = tile_starts(height, tile, overlap), tile_starts(width, tile, overlap)
    row_cores = core_bounds(row_starts, tile, height)
    col_cores = core_bounds(col_starts, tile, width)
    all_boxes, all_scores = [np.zeros((0, 4), np.float32)], [np.zeros(0, np.float32)]
    for y0, (row_low, row_high) in zip(row_starts, row_cores, strict=True):
        for x0, (col_low, col_high) in zip(col_starts, col_cores, strict=True):
            boxes, scores = detect(image[y0 : y0 + tile, x0 : x0 + tile])
            boxes = np.asarray(boxes, np.float32).reshape(-1, 4) + np.float32([x0, y0, x0, y0])
            centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
            centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
            keep = (
                (centre_x >= col_low)
                & (centre_x < col_high)
                & (centre_y >= row_low)
                & (centre_y < row_high)
            )
            all_boxes.append(boxes[keep])
            all_scores.append(np.asarray(scores, np.float32)[keep])
    return order_boxes(np.concatenate(all_boxes), np.concatenate(all_scores))
