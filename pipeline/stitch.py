"""From the U-Net's per-crop class probabilities to chromosome instances in full-image coordinates.

Each detector box gives one *window*: the segmenter's class probabilities (0 background,
1 chromosome A, 2 chromosome B, 3 overlap) resized back to the crop's square window and placed in
the image (``segmenter.crops`` does the geometry). Within a window, after the argmax:

- the instances are the 8-connected pieces of ``A | overlap`` and of ``B | overlap``, so overlap
  pixels belong to every chromosome lying there;
- a piece is dropped when it has fewer than ``min_fragment_pixels`` pixels (default 20, the size
  below which DESIGN.md treats a labelled component as noise), or when it holds no pixel of its
  own class (overlap only), or when it is smaller than ``uncertain_max_pixels`` (default 200) and
  its mean class probability (``segmenter_score``) is below ``min_segmenter_score`` (the
  pipeline takes the segmenter's own: 0.7 for the shipped DAPI one, 0.9 for the G-band one): a
  small piece the U-Net is unsure of is a fragment, while a chromosome-sized one is kept however
  unsure (dropping it would lose a chromosome, or a whole cluster). With ``keep_sole_piece``
  (default), a window of a detector box (``detector_score`` above 0) that would keep no piece
  keeps its largest unsure one that lies mostly inside the box and at least
  ``SOLE_PIECE_FOREGROUND`` in the image's foreground (where the caller gives it): the detector
  found a chromosome there, most often a small one the U-Net is unsure of, and the image shows
  something there (a faint smudge the detector boxed does not count). Boxes the pipeline adds
  around foreground the detector missed (score 0) get no such trust;
- a piece that touches an edge of the crop lying inside the image is *cut*: the chromosome may go
  on beyond the crop. A cut piece with less than ``min_inside_fraction`` (default 0.5) of its
  pixels inside its detector box is dropped: it is a neighbour caught in the crop's margin, found
  whole in its own box. A whole neighbour is kept (it may be one the detector missed; when the
  detector found it too, the two copies are merged below).

A chromosome longer than a window is seen by several windows in parts: two pieces of different
windows, at least one of them cut, that agree at IoU >= ``join_iou`` (default 0.5) where both
windows saw the image are joined into one (``join_cut_pieces``). Pieces reaching within
``CUT_BAND`` of a cut crop edge count as cut: the U-Net rarely labels right up to the edge.

Across windows whose boxes overlap, the same chromosome found twice is kept once: candidates are
taken whole ones first (a piece touching an edge of its crop that lies inside the image may be a
chromosome cut by the crop), then by falling segmenter confidence, and a candidate is dropped as a
duplicate of a kept instance when their mask IoU is >= ``duplicate_iou`` (default 0.5) or when at
least ``duplicate_containment`` (default 0.8) of its pixels lie in kept instances, one or several
(a piece of a chromosome found whole elsewhere, or a blob the U-Net made of chromosomes found
elsewhere). The kept copy carries the higher of the detector scores. (On the held-out ADIR
slides, with ground-truth labels standing in for the U-Net and the shipped detector's boxes,
containment in one kept instance took instance precision from 0.959 to 0.997 at the same
recall.)

Which copies are kept depends on the order they are taken in, so last, a kept instance with at
least ``redundant_coverage`` (default 0.9) of its pixels in the other kept ones is dropped, the
most covered first: in dense tangles a piece kept early is often covered whole by chromosomes
kept after it.

Masks are stored box-local (``Instance.mask`` over rows ``row0:row0+h``, cols ``col0:col0+w``), so
memory grows with the number of chromosomes, not with the image size.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

CHROMOSOME_A, CHROMOSOME_B, OVERLAP = 1, 2, 3  # class 0 is background
MIN_FRAGMENT_PIXELS = 20
MIN_INSIDE_FRACTION = 0.5
DUPLICATE_IOU = 0.5
DUPLICATE_CONTAINMENT = 0.8
REDUNDANT_COVERAGE = 0.9
JOIN_IOU = 0.5
CUT_BAND = 3 / 88  # of the window's side: 3 of the U-Net's 88 pixels
MIN_SEGMENTER_SCORE = 0.9  # with UNCERTAIN_MAX_PIXELS: chosen on the val slides (see
UNCERTAIN_MAX_PIXELS = 200  # configs/pipeline.yaml)
# share of a box's only, unsure piece in the image's foreground for it to be kept: on the val
# sets the small chromosomes kept so had 0.14 and more, the faint smudges none
SOLE_PIECE_FOREGROUND = 0.1


@dataclass(frozen=True)
class Window:
    """One detector box's segmentation in image coordinates.

    ``probabilities``: float32 ``(4, h, w)`` for image rows ``row0:row0+h`` and columns
    ``col0:col0+w`` (inside the image). ``box``: the detector box, float32 ``(4,)`` x0, y0, x1, y1
    in pixel edges. ``cluster_id``: the box's id in the image (1..M).
    """

    probabilities: np.ndarray
    row0: int
    col0: int
    box: np.ndarray
    detector_score: float
    cluster_id: int


@dataclass(frozen=True)
class Instance:
    """One chromosome: bool ``mask`` ``(h, w)`` tight around it, its top-left pixel ``row0, col0``
    in the image, the detector box it came from, and the two confidences in [0, 1].

    ``segmenter_score`` is the mean, over the chromosome's pixels, of the probability of the class
    predicted at that pixel. ``complete`` is False when the piece touches an edge of its crop
    window that lies inside the image (the chromosome may go on beyond the crop). ``seen``: the
    part of the image its window saw whole, x0, y0, x1, y1 pixel edges (the window less its
    edge pixels where the edge lies inside the image); None for instances not cut from a window.
    """

    row0: int
    col0: int
    mask: np.ndarray
    cluster_id: int
    detector_score: float
    segmenter_score: float
    complete: bool = True
    seen: tuple[int, int, int, int] | None = None

    @property
    def box(self) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1 in pixel edges (x1 = last column + 1)."""
        height, width = self.mask.shape
        return self.col0, self.row0, self.col0 + width, self.row0 + height

    @property
    def area(self) -> int:
        return int(self.mask.sum())

    def full_mask_part(self, x0: int, y0: int, x1: int, y1: int) -> np.ndarray:
        """The mask over image columns ``x0:x1`` and rows ``y0:y1``: bool ``(y1 - y0, x1 - x0)``."""
        out = np.zeros((y1 - y0, x1 - x0), bool)
        bx0, by0, bx1, by1 = self.box
        left, top, right, bottom = max(x0, bx0), max(y0, by0), min(x1, bx1), min(y1, by1)
        if left < right and top < bottom:
            out[top - y0 : bottom - y0, left - x0 : right - x0] = self.mask[
                top - by0 : bottom - by0, left - bx0 : right - bx0
            ]
        return out

    def full_mask(self, shape: tuple[int, int]) -> np.ndarray:
        """The mask as bool ``shape`` (the whole image)."""
        return self.full_mask_part(0, 0, shape[1], shape[0])


def tight(mask: np.ndarray, row0: int = 0, col0: int = 0) -> tuple[int, int, np.ndarray]:
    """Crop a bool mask to its nonzero rows/cols: ``(row0', col0', cropped)``; mask must be
    non-empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    cropped = mask[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    return row0 + int(rows[0]), col0 + int(cols[0]), cropped


def instances_from_masks(masks: np.ndarray) -> list[Instance]:
    """Instances from full-image bool masks ``(N, H, W)`` (ground truth, baselines); scores 1,
    cluster ids 0. Empty masks are skipped."""
    out = []
    for mask in masks:
        if mask.any():
            row0, col0, cropped = tight(mask)
            out.append(Instance(row0, col0, cropped.copy(), 0, 1.0, 1.0))
    return out


def window_instances(
    window: Window,
    image_shape: tuple[int, int],
    min_fragment_pixels: int = MIN_FRAGMENT_PIXELS,
    min_inside_fraction: float = MIN_INSIDE_FRACTION,
    min_segmenter_score: float = MIN_SEGMENTER_SCORE,
    uncertain_max_pixels: int = UNCERTAIN_MAX_PIXELS,
    keep_sole_piece: bool = True,
    foreground: Callable[[], np.ndarray] | None = None,
) -> list[Instance]:
    """The chromosomes of one window (see the module docstring for the rules). ``foreground``:
    gives bool ``(h, w)``, the window's pixels in the image's foreground, asked for only when a
    box's only piece is unsure (None: not checked)."""
    probabilities = window.probabilities
    labels = probabilities.argmax(axis=0)
    confidence = probabilities.max(axis=0)
    height, width = labels.shape
    x0, y0, x1, y1 = window.box
    rows = np.arange(height)[:, None] + window.row0 + 0.5
    cols = np.arange(width)[None, :] + window.col0 + 0.5
    inside = (rows > y0) & (rows < y1) & (cols > x0) & (cols < x1)
    # the bands along the crop's edges that lie inside the image: the U-Net rarely labels a
    # chromosome right up to the crop's edge, so a piece that reaches into them is cut
    band = max(1, round(CUT_BAND * max(height, width)))
    top, left = band * (window.row0 > 0), band * (window.col0 > 0)
    bottom = band * (window.row0 + height < image_shape[0])
    right = band * (window.col0 + width < image_shape[1])
    cut_edge = np.ones((height, width), bool)
    cut_edge[top : height - bottom, left : width - right] = False
    seen = (
        window.col0 + left,
        window.row0 + top,
        window.col0 + width - right,
        window.row0 + height - bottom,
    )
    overlap = labels == OVERLAP
    kept, unsure = [], []  # (piece, score, whole)
    for chromosome_class in (CHROMOSOME_A, CHROMOSOME_B):
        own = labels == chromosome_class
        count, pieces = cv2.connectedComponents((own | overlap).astype(np.uint8), connectivity=8)
        for index in range(1, count):
            piece = pieces == index
            area = int(piece.sum())
            if area < min_fragment_pixels or not (own & piece).any():
                continue
            whole = not (piece & cut_edge).any()
            inside_pixels = int((piece & inside).sum())
            if not whole and inside_pixels < min_inside_fraction * area:
                continue
            score = float(confidence[piece].mean())
            if score >= min_segmenter_score or area >= uncertain_max_pixels:
                kept.append((piece, score, whole))
            elif 2 * inside_pixels >= area:
                unsure.append((piece, score, whole))
    if keep_sole_piece and not kept and unsure and window.detector_score > 0:
        piece = max(unsure, key=lambda entry: entry[0].sum())
        if foreground is None or foreground()[piece[0]].mean() >= SOLE_PIECE_FOREGROUND:
            kept.append(piece)
    out = []
    for piece, score, whole in kept:
        row0, col0, cropped = tight(piece, window.row0, window.col0)
        out.append(
            Instance(
                row0=row0,
                col0=col0,
                mask=cropped,
                cluster_id=window.cluster_id,
                detector_score=float(window.detector_score),
                segmenter_score=score,
                complete=whole,
                seen=seen,
            )
        )
    return out


def mask_iou(a: Instance, b: Instance) -> float:
    """IoU of two instances' masks (0 when their boxes do not meet)."""
    intersection = intersection_pixels(a, b)
    if intersection == 0:
        return 0.0
    return intersection / (a.area + b.area - intersection)


def intersection_pixels(a: Instance, b: Instance) -> int:
    """Pixels two instances share."""
    ax0, ay0, ax1, ay1 = a.box
    bx0, by0, bx1, by1 = b.box
    x0, y0, x1, y1 = max(ax0, bx0), max(ay0, by0), min(ax1, bx1), min(ay1, by1)
    if x0 >= x1 or y0 >= y1:
        return 0
    part_a = a.mask[y0 - ay0 : y1 - ay0, x0 - ax0 : x1 - ax0]
    part_b = b.mask[y0 - by0 : y1 - by0, x0 - bx0 : x1 - bx0]
    return int((part_a & part_b).sum())


def boxes_meet(boxes: np.ndarray) -> np.ndarray:
    """bool ``(N, N)``: whether integer boxes ``(N, 4)`` x0, y0, x1, y1 share any pixel."""
    x0, y0, x1, y1 = (boxes[:, i] for i in range(4))
    return (np.maximum(x0[:, None], x0[None]) < np.minimum(x1[:, None], x1[None])) & (
        np.maximum(y0[:, None], y0[None]) < np.minimum(y1[:, None], y1[None])
    )


def merge_duplicates(
    instances: list[Instance],
    duplicate_iou: float = DUPLICATE_IOU,
    duplicate_containment: float = DUPLICATE_CONTAINMENT,
) -> list[Instance]:
    """Keep one copy of each chromosome found more than once.

    Candidates are taken complete ones first (not cut by their crop's edge), then by falling
    segmenter confidence; a candidate is a duplicate of a kept instance when their mask IoU is
    >= ``duplicate_iou``, or when at least ``duplicate_containment`` of its pixels lie in kept
    instances (a piece of a chromosome found whole elsewhere, or a blob the U-Net made of several
    found elsewhere; then it is counted a duplicate of the one it shares most with). The kept copy
    takes the higher detector score.
    Returns the kept instances in the order of the input.
    """
    if not instances:
        return []
    order = sorted(
        range(len(instances)),
        key=lambda i: (
            not instances[i].complete,
            -instances[i].segmenter_score,
            instances[i].box,
            i,
        ),
    )
    meet = boxes_meet(np.array([instance.box for instance in instances]))
    kept: dict[int, Instance] = {}
    for index in order:
        candidate = instances[index]
        near = [k for k in kept if meet[index, k]]
        shared = {k: intersection_pixels(candidate, instances[k]) for k in near}
        duplicate_of = next(
            (
                k
                for k in near
                if shared[k]
                and shared[k] / (candidate.area + instances[k].area - shared[k]) >= duplicate_iou
            ),
            None,
        )
        if duplicate_of is None and any(shared.values()):
            covered = covered_pixels(candidate, [instances[k] for k in near])
            if covered >= duplicate_containment * candidate.area:
                duplicate_of = max(near, key=shared.__getitem__)
        if duplicate_of is None:
            kept[index] = candidate
        elif candidate.detector_score > kept[duplicate_of].detector_score:
            kept[duplicate_of] = replace(
                kept[duplicate_of], detector_score=candidate.detector_score
            )
    return [kept[i] for i in sorted(kept)]


def without_covered(
    instances: list[Instance], redundant_coverage: float = REDUNDANT_COVERAGE
) -> list[Instance]:
    """``instances`` less those with at least ``redundant_coverage`` of their pixels in the others
    that stay, dropped one at a time, the most covered first (ties: the later in the list).
    Returns the rest in the order of the input."""
    if len(instances) < 2:
        return list(instances)
    meet = boxes_meet(np.array([instance.box for instance in instances]))
    np.fill_diagonal(meet, False)
    alive = np.ones(len(instances), bool)

    def coverage(i: int) -> float:
        others = [instances[k] for k in np.nonzero(meet[i] & alive)[0]]
        return covered_pixels(instances[i], others) / instances[i].area if others else 0.0

    shares = np.array([coverage(i) for i in range(len(instances))])
    while True:
        worst = len(shares) - 1 - int(np.argmax(shares[::-1]))
        if shares[worst] < redundant_coverage:
            break
        alive[worst] = False
        shares[worst] = -1.0
        for k in np.nonzero(meet[worst] & alive)[0]:
            shares[k] = coverage(k)
    return [instance for instance, keep in zip(instances, alive, strict=True) if keep]


def covered_pixels(instance: Instance, others: list[Instance]) -> int:
    """Pixels of ``instance`` that lie in any of ``others``."""
    x0, y0, x1, y1 = instance.box
    covered = np.zeros(instance.mask.shape, bool)
    for other in others:
        ox0, oy0, ox1, oy1 = other.box
        left, top, right, bottom = max(x0, ox0), max(y0, oy0), min(x1, ox1), min(y1, oy1)
        if left < right and top < bottom:
            covered[top - y0 : bottom - y0, left - x0 : right - x0] |= other.mask[
                top - oy0 : bottom - oy0, left - ox0 : right - ox0
            ]
    return int((covered & instance.mask).sum())


def in_reading_order(instances: list[Instance]) -> list[Instance]:
    """Instances sorted top to bottom, then left to right (box corner), then by size: the order
    that numbers chromosomes 1..N, the same on every run."""
    return sorted(instances, key=lambda inst: (inst.row0, inst.col0, -inst.area, inst.cluster_id))


def join_cut_pieces(pieces: list[Instance], join_iou: float = JOIN_IOU) -> list[Instance]:
    """One instance for each chromosome that windows saw in parts: two pieces of different
    windows, at least one of them cut (``complete`` False), are parts of one chromosome when,
    where both windows saw the image (the overlap of their ``seen``), their pixels agree at IoU
    >= ``join_iou``; parts are joined transitively into the union of their masks, ``complete``
    when every pixel of it lies in a part's ``seen``, scored by the parts' area-weighted segmenter
    score and best detector score. The rest are returned as they are, joined instances after
    them."""
    windowed = [i for i, piece in enumerate(pieces) if piece.seen is not None]
    parent = {i: i for i in windowed}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    if len(windowed) > 1:
        meet = boxes_meet(np.array([pieces[i].box for i in windowed]))
        for a, b in zip(*np.nonzero(np.triu(meet, 1)), strict=True):
            first, second = pieces[windowed[a]], pieces[windowed[b]]
            if (
                not (first.complete and second.complete)
                and first.seen != second.seen
                and _agree(first, second, join_iou)
            ):
                parent[root(windowed[a])] = root(windowed[b])
    groups: dict[int, list[int]] = {}
    for i in windowed:
        groups.setdefault(root(i), []).append(i)
    joined = [group for group in groups.values() if len(group) > 1]
    parts = {i for group in joined for i in group}
    return [piece for i, piece in enumerate(pieces) if i not in parts] + [
        _union([pieces[i] for i in group]) for group in joined
    ]


def _agree(first: Instance, second: Instance, join_iou: float) -> bool:
    """Whether two pieces agree at IoU >= ``join_iou`` where both their windows saw the image."""
    x0, y0 = max(first.seen[0], second.seen[0]), max(first.seen[1], second.seen[1])
    x1, y1 = min(first.seen[2], second.seen[2]), min(first.seen[3], second.seen[3])
    if x0 >= x1 or y0 >= y1:
        return False
    a, b = (piece.full_mask_part(x0, y0, x1, y1) for piece in (first, second))
    shared = int((a & b).sum())
    return shared > 0 and shared >= join_iou * int((a | b).sum())


def _union(parts: list[Instance]) -> Instance:
    x0 = min(part.box[0] for part in parts)
    y0 = min(part.box[1] for part in parts)
    x1 = max(part.box[2] for part in parts)
    y1 = max(part.box[3] for part in parts)
    mask = np.zeros((y1 - y0, x1 - x0), bool)
    seen = np.zeros_like(mask)
    for part in parts:
        px0, py0, px1, py1 = part.box
        mask[py0 - y0 : py1 - y0, px0 - x0 : px1 - x0] |= part.mask
        sx0, sy0, sx1, sy1 = part.seen
        seen[max(sy0 - y0, 0) : max(sy1 - y0, 0), max(sx0 - x0, 0) : max(sx1 - x0, 0)] = True
    areas = np.array([part.area for part in parts], np.float64)
    scores = np.array([part.segmenter_score for part in parts])
    return Instance(
        row0=y0,
        col0=x0,
        mask=mask,
        cluster_id=parts[0].cluster_id,
        detector_score=max(part.detector_score for part in parts),
        segmenter_score=float(areas @ scores / areas.sum()),
        complete=not (mask & ~seen).any(),
    )


def merge_pieces(
    pieces: list[Instance],
    duplicate_iou: float = DUPLICATE_IOU,
    duplicate_containment: float = DUPLICATE_CONTAINMENT,
    join_iou: float | None = JOIN_IOU,
    redundant_coverage: float | None = REDUNDANT_COVERAGE,
) -> list[Instance]:
    """The chromosomes of an image from the pieces of all its windows: parts seen by several
    windows joined (``join_cut_pieces``; not with ``join_iou`` None), duplicates merged, those
    covered by the rest dropped (``without_covered``; not with ``redundant_coverage`` None), in
    reading order (the chromosome id of ``result[i]`` is ``i + 1``)."""
    if join_iou is not None:
        pieces = join_cut_pieces(pieces, join_iou)
    chromosomes = merge_duplicates(pieces, duplicate_iou, duplicate_containment)
    if redundant_coverage is not None:
        chromosomes = without_covered(chromosomes, redundant_coverage)
    return in_reading_order(chromosomes)


def stitch(
    windows: list[Window],
    image_shape: tuple[int, int],
    min_fragment_pixels: int = MIN_FRAGMENT_PIXELS,
    min_inside_fraction: float = MIN_INSIDE_FRACTION,
    min_segmenter_score: float = MIN_SEGMENTER_SCORE,
    uncertain_max_pixels: int = UNCERTAIN_MAX_PIXELS,
    keep_sole_piece: bool = True,
    duplicate_iou: float = DUPLICATE_IOU,
    duplicate_containment: float = DUPLICATE_CONTAINMENT,
    join_iou: float | None = JOIN_IOU,
    redundant_coverage: float | None = REDUNDANT_COVERAGE,
) -> list[Instance]:
    """All chromosomes of an image ``(H, W)`` from its windows (``window_instances`` of each,
    then ``merge_pieces``)."""
    pieces = [
        instance
        for window in windows
        for instance in window_instances(
            window,
            image_shape,
            min_fragment_pixels,
            min_inside_fraction,
            min_segmenter_score,
            uncertain_max_pixels,
            keep_sole_piece,
        )
    ]
    return merge_pieces(pieces, duplicate_iou, duplicate_containment, join_iou, redundant_coverage)
