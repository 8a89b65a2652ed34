"""Per-chromosome measurements: one table row per instance (columns documented in
``TABLE_COLUMNS`` and in docs/usage.md).

Geometry is in pixels of the full image (pixel-edge coordinates: the pixel at row r, column c
covers x in [c, c+1), y in [r, r+1), so its centre is (c + 0.5, r + 0.5)).

- length: along the medial axis: the longest path through the mask's skeleton
  (``skimage.morphology.skeletonize``, 8-connected steps of 1 or sqrt 2), extended at each end
  measured on the path smoothed over 5 pixels (a raw digital path zig-zags), and extended at each
  end to the mask's edge in the path's direction there (a skeleton stops short of the tips);
- mean width: area / length;
- orientation: of the major axis of the mask's second moments, in degrees counter-clockwise from
  the +x axis as seen on screen, in (-90, 90];
- intensities: sum and mean of the raw (not normalised) pixel values under the mask, per channel;
- overlap: pixels shared with other chromosomes, and the ids of those chromosomes.
"""

from __future__ import annotations

import heapq

import numpy as np
import pandas as pd
from scipy import ndimage
from skimage.morphology import skeletonize

from pipeline.stitch import Instance, boxes_meet, intersection_pixels

# (column, unit, meaning): the column table of docs/usage.md is this list.
TABLE_COLUMNS = [
    ("slide", "", "slide id: the name of the folder holding the image"),
    ("image", "", "image path relative to the input root it was found under"),
    ("chromosome_id", "", "1..N within the image, top to bottom then left to right"),
    ("cluster_id", "", "detector box it was found in, 1..M within the image"),
    ("bbox_x0", "px", "left edge of the bounding box (first column)"),
    ("bbox_y0", "px", "top edge (first row)"),
    ("bbox_x1", "px", "right edge (last column + 1)"),
    ("bbox_y1", "px", "bottom edge (last row + 1)"),
    ("centroid_x", "px", "mean x of the pixel centres"),
    ("centroid_y", "px", "mean y of the pixel centres"),
    ("area_px", "px²", "pixels in the mask, overlap pixels included"),
    ("length_px", "px", "length along the medial axis"),
    ("mean_width_px", "px", "area / length"),
    ("orientation_deg", "degrees", "major axis, counter-clockwise from +x, in (-90, 90]"),
    ("dapi_integrated", "grey levels·px", "sum of the image's raw values under the mask"),
    ("dapi_mean", "grey levels", "mean of the image's raw values under the mask"),
    ("overlap_px", "px", "pixels shared with other chromosomes"),
    ("overlaps_with", "", "ids of the chromosomes sharing pixels with it, ';'-separated"),
    ("detector_score", "0..1", "score of the detector box it came from (0: a foreground box)"),
    ("segmenter_score", "0..1", "mean probability of the predicted class over its pixels"),
]
CHANNEL_COLUMNS = [
    ("{name}_integrated", "channel units·px", "sum of channel NAME's raw values under the mask"),
    ("{name}_mean", "channel units", "mean of channel NAME's raw values under the mask"),
]
PHYSICAL_COLUMNS = [
    ("area_um2", "µm²", "area_px × pixel size²"),
    ("length_um", "µm", "length_px × pixel size"),
    ("mean_width_um", "µm", "mean_width_px × pixel size"),
]
DECIMALS = 4  # measurements are rounded so that tables are short and compare exactly as text

SMOOTHING = 5  # pixels of skeleton path averaged when measuring its length
_STEPS = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1) if (dr, dc) > (0, 0)]


def medial_axis_length(mask: np.ndarray) -> float:
    """Length in pixels of a bool mask along its medial axis (module docstring); 0 for empty."""
    if not mask.any():
        return 0.0
    padded = np.pad(mask, 1)
    skeleton = skeletonize(padded)
    if not skeleton.any():
        return 0.0
    index = np.full(padded.shape, -1, np.int64)
    rows, cols = np.nonzero(skeleton)
    index[rows, cols] = np.arange(len(rows))
    neighbours: list[list[tuple[int, float]]] = [[] for _ in rows]
    for dr, dc in _STEPS:
        step = float(np.hypot(dr, dc))
        targets = index[rows + dr, cols + dc]
        for source in np.flatnonzero(targets >= 0).tolist():
            target = int(targets[source])
            neighbours[source].append((target, step))
            neighbours[target].append((source, step))
    # Longest shortest path: the node farthest from any node, then the node farthest from that
    # one (exact on a tree; skeletons of chromosome masks are trees or nearly so).
    start = _farthest(neighbours, 0)[0]
    end, previous = _farthest(neighbours, start)
    path = [end]
    while path[-1] != start:
        path.append(previous[path[-1]])
    points = np.stack([rows[path], cols[path]], axis=1).astype(np.float64)
    # A digital line zig-zags (a 30-degree line is ~7 % longer in 1/sqrt2 steps): measure the
    # path after a running mean over SMOOTHING pixels, its two end points kept in place.
    if len(points) > SMOOTHING:
        smooth = ndimage.uniform_filter1d(points, SMOOTHING, axis=0, mode="nearest")
        smooth[0], smooth[-1] = points[0], points[-1]
        points = smooth
    along = float(np.linalg.norm(np.diff(points, axis=0), axis=1).sum())
    return along + _tip(padded, points[::-1]) + _tip(padded, points)


def _farthest(neighbours: list[list[tuple[int, float]]], source: int) -> tuple[int, dict]:
    """Dijkstra over a small graph (``neighbours[i]``: (node, step) pairs): the
    node farthest from ``source`` and every reached node's predecessor."""
    distance = {source: 0.0}
    previous: dict[int, int] = {}
    queue = [(0.0, source)]
    done = set()
    while queue:
        here, node = heapq.heappop(queue)
        if node in done:
            continue
        done.add(node)
        for other, step in neighbours[node]:
            if here + step < distance.get(other, np.inf):
                distance[other] = here + step
                previous[other] = node
                heapq.heappush(queue, (here + step, other))
    return max(distance, key=lambda node: (distance[node], -node)), previous


def _tip(mask: np.ndarray, path: np.ndarray) -> float:
    """Distance from the first point of a skeleton path (row, col pixel indices) to the mask's
    edge, going on in the path's direction there (0.25-pixel steps)."""
    point = path[0]
    direction = point - path[min(SMOOTHING, len(path) - 1)]
    norm = np.hypot(*direction)
    if norm == 0:
        return 0.5
    direction = direction / norm
    steps = np.arange(0.0, mask.shape[0] + mask.shape[1], 0.25)
    pixels = np.floor(point[None] + steps[:, None] * direction[None] + 0.5).astype(np.int64)
    pixels = np.clip(pixels, 0, np.array(mask.shape) - 1)
    outside = ~mask[pixels[:, 0], pixels[:, 1]]
    return float(steps[np.argmax(outside)]) if outside.any() else float(steps[-1])


def orientation_degrees(mask: np.ndarray) -> float:
    """Major-axis angle of a bool mask, degrees counter-clockwise from +x on screen, (-90, 90]."""
    rows, cols = np.nonzero(mask)
    x = cols - cols.mean()
    y = -(rows - rows.mean())  # screen y points down; angles are counted with y up
    angle = 0.5 * np.degrees(np.arctan2(2 * (x * y).mean(), (x * x).mean() - (y * y).mean()))
    return 90.0 if angle <= -90.0 else float(angle)


def overlap_partners(instances: list[Instance]) -> tuple[np.ndarray, list[list[int]]]:
    """Per instance: pixels shared with any other instance (int64 ``(N,)``) and the 1-based ids
    (list index + 1) of the instances it shares pixels with."""
    count = len(instances)
    shared = np.zeros(count, np.int64)
    partners: list[list[int]] = [[] for _ in range(count)]
    if count == 0:
        return shared, partners
    meet = boxes_meet(np.array([instance.box for instance in instances]))
    for i, j in zip(*np.nonzero(np.triu(meet, k=1)), strict=True):
        if intersection_pixels(instances[i], instances[j]):
            partners[i].append(int(j) + 1)
            partners[j].append(int(i) + 1)
    for i, instance in enumerate(instances):
        if partners[i]:
            x0, y0, x1, y1 = instance.box
            covered = np.zeros(instance.mask.shape, bool)
            for j in partners[i]:
                other = instances[j - 1]
                ox0, oy0, ox1, oy1 = other.box
                a0, b0, a1, b1 = max(x0, ox0), max(y0, oy0), min(x1, ox1), min(y1, oy1)
                covered[b0 - y0 : b1 - y0, a0 - x0 : a1 - x0] |= other.mask[
                    b0 - oy0 : b1 - oy0, a0 - ox0 : a1 - ox0
                ]
            shared[i] = int((covered & instance.mask).sum())
    return shared, partners


def column_names(channel_names: list[str], physical: bool) -> list[str]:
    """The table's columns, in order, for these extra channels and with/without µm columns."""
    names = [name for name, _, _ in TABLE_COLUMNS]
    at = names.index("dapi_mean") + 1
    extra = [
        pattern.format(name=channel)
        for channel in channel_names
        for pattern, _, _ in CHANNEL_COLUMNS
    ]
    names[at:at] = extra
    if physical:
        names += [name for name, _, _ in PHYSICAL_COLUMNS]
    return names


def measure(
    instances: list[Instance],
    channels: dict[str, np.ndarray],
    slide: str,
    image: str,
    pixel_size: float | None = None,
) -> pd.DataFrame:
    """The table of one image: one row per instance, ``chromosome_id`` = list index + 1.

    ``channels`` maps names to raw ``(H, W)`` arrays; it must hold ``"dapi"`` (the image itself, as
    grey), and may hold extra channels of the same shape. ``pixel_size`` in µm per pixel adds
    the µm columns. Columns: ``column_names(extra channel names, pixel_size is not None)``.
    """
    extra = [name for name in channels if name != "dapi"]
    columns = column_names(extra, pixel_size is not None)
    shared, partners = overlap_partners(instances)
    rows = []
    for i, instance in enumerate(instances):
        x0, y0, x1, y1 = instance.box
        pixel_rows, pixel_cols = np.nonzero(instance.mask)
        area = len(pixel_rows)
        length = medial_axis_length(instance.mask)
        row = {
            "slide": slide,
            "image": image,
            "chromosome_id": i + 1,
            "cluster_id": instance.cluster_id,
            "bbox_x0": x0,
            "bbox_y0": y0,
            "bbox_x1": x1,
            "bbox_y1": y1,
            "centroid_x": x0 + pixel_cols.mean() + 0.5,
            "centroid_y": y0 + pixel_rows.mean() + 0.5,
            "area_px": area,
            "length_px": length,
            "mean_width_px": area / length if length else 0.0,
            "orientation_deg": orientation_degrees(instance.mask),
            "overlap_px": int(shared[i]),
            "overlaps_with": ";".join(str(j) for j in sorted(partners[i])),
            "detector_score": instance.detector_score,
            "segmenter_score": instance.segmenter_score,
        }
        for name, values in channels.items():
            under = values[y0:y1, x0:x1][instance.mask].astype(np.float64)
            row[f"{name}_integrated"] = under.sum()
            row[f"{name}_mean"] = under.mean()
        if pixel_size is not None:
            row["area_um2"] = area * pixel_size**2
            row["length_um"] = length * pixel_size
            row["mean_width_um"] = row["mean_width_px"] * pixel_size
        rows.append(row)
    table = pd.DataFrame(rows, columns=columns)
    floats = table.select_dtypes("float").columns
    table[floats] = table[floats].round(DECIMALS)
    return table
