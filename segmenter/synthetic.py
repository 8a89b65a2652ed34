"""Synthetic clusters made from single chromosomes of real metaphases: the segmenter's main supply.

As the seed's 13,434-pair set was made, real single chromosomes are laid over each other; here the
first chromosome stays in its real surroundings (its neighbours remain in the picture, labelled
background, as in real cluster crops) and one to four more are pasted around it, each in one of
these ways (``KINDS``), relative to a chromosome already placed:

- ``cross``: centred on a random pixel of it, at a random angle (crossings at every angle and
  place along the arms), each chromosome keeping at least a third of its pixels to itself;
- ``touch``: slid away from such a crossing in a random direction until they no longer overlap;
- ``side_by_side``: nearly parallel to it, slid sideways until they just touch;
- ``end_to_end``: at 20-50 degrees to it, slid along its axis until the ends just touch (two
  chromosomes exactly in line look like one, to a person too);
- ``parallel``: nearly parallel, 1-4 px apart (neighbours that do not touch).

A cluster of one (a lone chromosome, re-rendered) is a kind of its own when banded (below).

Bent chromosomes (``bend_share`` of them, each one drawn so, the first too when ``exact_edges``):
real chromosomes often lie bent, at the centromere or elsewhere, into an L or a V; a kink is not
where one chromosome ends (``end_to_end`` meetings are kinks of two).

Overlap intensity, two models, one drawn per cluster (``additive_share``):

- measured: ``overlap_ratios`` measures, for every overlap region (``K == 255``) of the given
  (training) metaphases, ``mean(overlap pixels) / mean(single-chromosome pixels within 3 px)`` on
  the normalised image (ADIR training slides: median 1.19, 10th-90th percentile 0.88-1.49, 279
  regions); an overlap pixel is then ``ratio * mean(a, b, ...)`` of the chromosomes' own
  intensities there, ``ratio`` drawn from those measured ratios;
- additive (fluorescence adds; absorbances add in an inverted brightfield image): an overlap pixel
  is ``background + gain * sum(intensity - background)``, ``gain`` uniform in
  ``additive_gain`` (default 0.6-1.0: 1 adds fully, less for saturation or partial occlusion).

Banding (``band_fraction`` of clusters): every chromosome gets dark bands across its long axis,
intensity above background multiplied by ``1 - depth`` in bands ``band_width`` px wide
(``depth`` uniform in ``band_depth``), as an inverted G-banded chromosome looks: the network
learns that a dark band does not end a chromosome. A share ``bright_bands`` of the bands brighten
instead (``1 + depth``): a bright band is then not always an overlap. Pasted chromosomes are
scaled by a factor in ``size_range``.

Exact edges (``exact_edges``): every chromosome is drawn from its mask, the first one too (its
place in the window, blurred rim included, is filled in from the background around it and the
chromosome pasted back), and the drawn cluster is then blurred (Gaussian sigma uniform in
``edge_blur`` source pixels, as optics would). Every chromosome's edge in the image is then its
mask's edge, the truth is exact, and no chromosome can be told from the others by how its edge was
made: with the first one left as it was (blurred real edge, K's drawn mask) and the pasted ones cut
out sharply, a network learns to separate the two by their edges, which real clusters do not have.

Targets come from ``segmenter.targets.target_from_instances`` (pixels of two or more chromosomes
-> overlap, A/B two-coloured over the touch graph); pixels that the source labels cannot vouch for
(``Single.ignore``: unlabelled bright pieces) are ``IGNORE``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import cv2
import numpy as np

from segmenter import crops
from segmenter.config import KINDS as KINDS  # re-exported: the kinds this module makes
from segmenter.config import SyntheticOptions
from segmenter.targets import IGNORE, OVERLAP, cluster_targets, target_from_instances

RING_PIXELS = 3  # single-chromosome pixels this close to an overlap region are its reference
MIN_REGION_PIXELS = 5
_SQUARE3 = np.ones((3, 3), np.uint8)
TOUCHING_KINDS = ("touch", "side_by_side", "end_to_end")


@dataclass(frozen=True)
class Single:
    """One single-chromosome cluster in its surroundings (a square window of the normalised image).

    ``window`` float32 ``(S, S)``; ``mask`` bool ``(S, S)`` the chromosome; ``others`` bool
    ``(S, S)`` other labelled chromosomes in the window; ``ignore`` bool ``(S, S)`` pixels the
    labels cannot vouch for (unlabelled bright pieces); ``background`` the image's background
    level (padding value).
    """

    window: np.ndarray
    mask: np.ndarray
    others: np.ndarray
    ignore: np.ndarray
    background: float


def overlap_ratios(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Measured ``overlap / nearby single-chromosome`` intensity ratios of one metaphase.

    ``image`` normalised float32 ``(H, W)``, ``labels`` the K image. Returns float32 ``(R,)``, one
    per overlap region of at least 5 pixels with single-chromosome pixels around it.
    """
    count, regions = cv2.connectedComponents((labels == 255).astype(np.uint8), connectivity=8)
    single = (labels > 0) & (labels < 255)
    kernel = np.ones((2 * RING_PIXELS + 1,) * 2, np.uint8)
    ratios = []
    for index in range(1, count):
        region = regions == index
        if region.sum() < MIN_REGION_PIXELS:
            continue
        ring = cv2.dilate(region.astype(np.uint8), kernel).astype(bool) & single
        reference = image[ring].mean() if ring.sum() >= MIN_REGION_PIXELS else 0.0
        if reference > 0:
            ratios.append(image[region].mean() / reference)
    return np.asarray(ratios, np.float32)


def singles_from_image(
    image: np.ndarray, labels: np.ndarray, context: int, ignore: np.ndarray | None = None
) -> list[Single]:
    """Every single-chromosome cluster of one metaphase, with ``context`` pixels around its box.

    ``image`` normalised float32 ``(H, W)``; ``labels`` the K image; ``ignore`` bool ``(H, W)``
    pixels not to train on (None: none).
    """
    background = crops.background_level(image)
    labelled = labels > 0
    ignore = np.zeros(labels.shape, bool) if ignore is None else ignore
    out = []
    for box, target, count in cluster_targets(labels):
        if count != 1 or (target == OVERLAP).any():
            continue
        geometry = crops.window_for_box(box, context)
        mask = crops.cut_window(target, geometry, 0) > 0
        others = crops.cut_window(labelled, geometry, False) & ~mask
        window = crops.cut_window(image, geometry, background)
        out.append(
            Single(window, mask, others, crops.cut_window(ignore, geometry, False), background)
        )
    return out


def axis_angle(mask: np.ndarray) -> float:
    """Direction of the long axis of a bool mask, in radians, as (cos, sin) of (x, y) in pixel
    coordinates (y down)."""
    rows, cols = np.nonzero(mask)
    if len(rows) < 2:
        return 0.0
    covariance = np.cov(np.stack([cols, rows]).astype(np.float64))
    values, vectors = np.linalg.eigh(covariance)
    major = vectors[:, np.argmax(values)]
    return float(np.arctan2(major[1], major[0]))


def banded(
    window: np.ndarray,
    mask: np.ndarray,
    background: float,
    rng,
    depth: float,
    width: tuple[float, float] = (1.5, 4.0),
    bright: float = 0.0,
):
    """``window`` with dark bands across the long axis of ``mask``: intensity above
    ``background`` multiplied by ``1 - depth`` at the bands' centres, each band ``width`` px
    wide (uniform in the range); a share ``bright`` of the bands brighten instead (``1 +
    depth``), as the G-dark bands of an inverted G-banded chromosome do. Returns float32."""
    out = window.astype(np.float32).copy()
    rows, cols = np.nonzero(mask)
    angle = axis_angle(mask)
    along = cols * np.cos(angle) + rows * np.sin(angle)
    low, high = along.min(), along.max()
    length = max(high - low, 1.0)
    darkness, brightness = np.zeros(len(rows)), np.zeros(len(rows))
    for _ in range(max(1, int(rng.integers(int(length // 8) + 1, int(length // 4) + 3)))):
        centre, half = rng.uniform(low, high), rng.uniform(*width) / 2
        band = rng.uniform(0.6, 1.0) * np.exp(-0.5 * ((along - centre) / half) ** 2)
        if bright and rng.random() < bright:
            brightness = np.maximum(brightness, band)
        else:
            darkness = np.maximum(darkness, band)
    factor = (1 - depth * darkness) * (1 + depth * brightness)
    out[rows, cols] = background + (window[rows, cols] - background) * factor
    return out


def erased(window: np.ndarray, mask: np.ndarray, others: np.ndarray) -> np.ndarray:
    """``window`` float32 ``(S, S)`` with the chromosome ``mask`` and its blurred rim (2 px
    around it) filled in from the background around them (OpenCV's Telea inpainting); pixels
    within 1 px of ``others`` (neighbouring chromosomes) are kept."""
    rim = cv2.dilate(mask.astype(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5)))
    keep = cv2.dilate(others.astype(np.uint8), _SQUARE3).astype(bool)
    region = (rim.astype(bool) & ~keep).astype(np.uint8)
    # 16-bit: OpenCV's float inpainting leaves speckles on the region's edge
    levels = np.round(np.clip(window, 0.0, 1.0) * 65535).astype(np.uint16)
    return cv2.inpaint(levels, region, 3, cv2.INPAINT_TELEA).astype(np.float32) / 65535


@dataclass(frozen=True)
class Cutout:
    """A chromosome cut out of its window: intensity and coverage on its tight box, and the
    direction of its long axis (radians, as ``axis_angle``)."""

    value: np.ndarray
    alpha: np.ndarray
    axis: float


def _cutout(
    single: Single,
    rng,
    band_depth: float | None,
    band_width: tuple[float, float],
    bright_bands: float = 0.0,
) -> Cutout:
    """The chromosome of ``single`` cut out, flipped at random, banded when ``band_depth`` is
    set (bands ``band_width`` px wide, a share ``bright_bands`` of them bright)."""
    rows = np.flatnonzero(single.mask.any(axis=1))
    cols = np.flatnonzero(single.mask.any(axis=0))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    mask, window = single.mask[box], single.window[box]
    if band_depth is not None:
        window = banded(window, mask, single.background, rng, band_depth, band_width, bright_bands)
    if rng.random() < 0.5:
        mask, window = mask[::-1], window[::-1]
    alpha = np.ascontiguousarray(mask, np.float32)
    return Cutout(np.ascontiguousarray(window * alpha, np.float32), alpha, axis_angle(mask))


def rotated(cutout: Cutout, angle: float, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """``cutout`` scaled and rotated so that its long axis points along ``angle`` (radians):
    intensity and coverage (alpha in [0, 1]) on a square patch, float32 each."""
    height, width = cutout.alpha.shape
    side = int(np.ceil(np.hypot(height, width) * scale)) + 2
    # cv2's angle turns the image counter-clockwise as seen (y down): axis angle - degrees
    turn = np.degrees(cutout.axis - angle)
    matrix = cv2.getRotationMatrix2D(((width - 1) / 2, (height - 1) / 2), turn, scale)
    matrix[:, 2] += ((side - width) / 2, (side - height) / 2)
    warp = {"dsize": (side, side), "flags": cv2.INTER_LINEAR}
    alpha = cv2.warpAffine(cutout.alpha, matrix, **warp)
    value = cv2.warpAffine(cutout.value, matrix, **warp)
    return value / np.maximum(alpha, 1e-3), alpha


def bent(cutout: Cutout, rng, angles: tuple[float, float]) -> Cutout:
    """``cutout`` bent at a point 25-75 % along its long axis: the arm beyond turned about the
    centre line's point there by an angle uniform in ``angles`` (radians, either way), the
    joint filled by the arm's first pixels turned through the angles between. Shape, intensity
    and bands follow the chromosome; where the arms meet on the inner side the brighter wins."""
    value, alpha = rotated(cutout, 0.0, 1.0)  # long axis along x
    side = value.shape[0]
    pad = side // 2
    value = np.pad(value * alpha, pad)  # premultiplied, room for the turned arm
    alpha = np.pad(alpha, pad)
    rows, cols = np.nonzero(alpha > 0.5)
    if len(cols) < 2:
        return cutout
    pivot_x = cols.min() + rng.uniform(0.25, 0.75) * np.ptp(cols)
    near = np.abs(cols - pivot_x) < 1.5
    pivot = (float(pivot_x), float(rows[near].mean() if near.any() else rows.mean()))
    x = np.arange(alpha.shape[1])[None, :]
    far = (x > pivot_x).astype(np.float32)
    joint = far * (x <= pivot_x + 2)
    angle = np.degrees(rng.uniform(*angles)) * rng.choice([-1.0, 1.0])
    warp = {"dsize": alpha.shape[::-1], "flags": cv2.INTER_LINEAR}
    out_value, out_alpha = value * (1 - far), alpha * (1 - far)
    steps = [(a, joint) for a in np.linspace(0.0, angle, max(2, int(abs(angle) // 5) + 2))]
    for turn, part in [*steps, (angle, far)]:
        matrix = cv2.getRotationMatrix2D(pivot, turn, 1.0)
        out_value = np.maximum(out_value, cv2.warpAffine(value * part, matrix, **warp))
        out_alpha = np.maximum(out_alpha, cv2.warpAffine(alpha * part, matrix, **warp))
    mask = out_alpha > 0.5
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    box = slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)
    return Cutout(
        np.ascontiguousarray(out_value[box], np.float32),
        np.ascontiguousarray(out_alpha[box], np.float32),
        axis_angle(mask[box]),
    )


def _bent_in_place(first: Single, forbidden: np.ndarray, rng, options: SyntheticOptions):
    """The chromosome of ``first`` bent (``bent``) and drawn back centred where it lay:
    intensity and coverage on its window, float32 ``(S, S)`` each; None when the bent
    chromosome leaves the window or meets ``forbidden`` pixels."""
    rows, cols = np.nonzero(first.mask)
    turned = bent(_cutout(first, rng, None, options.band_width), rng, options.bend_angle)
    value, alpha = rotated(turned, turned.axis, 1.0)
    top = int(round(rows.mean() - alpha.shape[0] / 2))
    left = int(round(cols.mean() - alpha.shape[1] / 2))
    value, alpha = (_placed(patch, first.mask.shape, top, left) for patch in (value, alpha))
    if alpha is None or ((alpha > 0.5) & forbidden).any():
        return None
    return value, alpha


def _placed(patch: np.ndarray, shape: tuple[int, int], y: int, x: int) -> np.ndarray | None:
    """``patch`` with its top-left at ``(y, x)`` on a zero array of ``shape``; None if it leaves."""
    height, width = patch.shape
    if y < 0 or x < 0 or y + height > shape[0] or x + width > shape[1]:
        return None
    out = np.zeros(shape, patch.dtype)
    out[y : y + height, x : x + width] = patch
    return out


def _hits(patch: np.ndarray, canvas: np.ndarray, y: int, x: int) -> bool | None:
    """Whether bool ``patch`` at top-left ``(y, x)`` meets ``canvas``; None if it leaves it."""
    height, width = patch.shape
    if y < 0 or x < 0 or y + height > canvas.shape[0] or x + width > canvas.shape[1]:
        return None
    return bool((canvas[y : y + height, x : x + width] & patch).any())


def _touches(a: np.ndarray, b: np.ndarray) -> bool:
    return bool((cv2.dilate(a.astype(np.uint8), _SQUARE3).astype(bool) & b).any())


def _orientation(kind: str, axis: float, rng) -> float:
    """Direction (radians) of a new chromosome's long axis placed as ``kind`` by a chromosome
    whose long axis points along ``axis``."""
    if kind in ("side_by_side", "parallel"):
        return axis + rng.uniform(-0.25, 0.25)
    if kind == "end_to_end":  # a kink of 20-50 degrees: in line, two would look like one
        return axis + rng.choice([-1, 1]) * rng.uniform(0.35, 0.9)
    return rng.uniform(0, 2 * np.pi)


def _place(kind: str, patch: np.ndarray, reference: np.ndarray, axis: float, placed, rng):
    """Top-left ``(y, x)`` for a chromosome's ``patch`` mask next to the ``reference`` mask (one
    already placed, its long axis along ``axis``; ``placed`` all of them) the way ``kind`` says,
    and its mask on the canvas; None when it does not fit. The touching kinds slide the patch
    from a start in one direction until it no longer overlaps ``placed`` (``parallel`` then 2-4
    px further)."""
    half = patch.shape[0] // 2
    rows, cols = np.nonzero(reference)
    if kind in ("cross", "touch"):
        pick = rng.integers(len(rows))
        centre = np.array([rows[pick], cols[pick]], np.float64)
        direction = rng.uniform(0, 2 * np.pi)
    else:
        centre = np.array([rows.mean(), cols.mean()])
        if kind == "end_to_end":
            direction = axis + np.pi * int(rng.integers(2))
        else:
            length = np.ptp(rows) + np.ptp(cols)
            centre += np.array([np.sin(axis), np.cos(axis)]) * rng.uniform(-0.3, 0.3) * length
            direction = axis + np.pi / 2 + np.pi * int(rng.integers(2))
    if kind == "cross":
        offset = np.round(centre - half + rng.integers(-3, 4, 2)).astype(int)
    else:
        step = np.array([np.sin(direction), np.cos(direction)])
        for distance in range(0, 4 * half + 4):
            offset = np.round(centre - half + distance * step).astype(int)
            hit = _hits(patch, placed, *offset)
            if hit is None:
                return None
            if not hit:
                break
        else:
            return None
        if kind == "parallel":
            offset = np.round(centre - half + (distance + rng.integers(2, 5)) * step).astype(int)
    mask = _placed(patch, reference.shape, *offset)
    return None if mask is None else (tuple(offset), mask)


def _acceptable(kind: str, mask: np.ndarray, reference: np.ndarray, masks: list, forbidden):
    """Whether a new chromosome ``mask`` placed as ``kind`` gives the cluster ``kind`` claims."""
    if (mask & forbidden).any():
        return False
    union = np.logical_or.reduce(masks)
    if kind == "cross":
        if (mask & reference).sum() < 4:
            return False
        counts = np.sum([*masks, mask], axis=0)
        return all(((m & (counts == 1)).sum() >= m.sum() / 3) for m in [*masks, mask])
    if (mask & union).any():
        return False
    if kind == "parallel":
        return not _touches(mask, union)
    return _touches(mask, reference)


def make_cluster(
    singles: list[Single],
    ratio: float,
    rng: np.random.Generator,
    margin: int,
    kinds: list[str],
    options: SyntheticOptions | None = None,
    tries: int = 20,
) -> tuple[np.ndarray, np.ndarray] | None:
    """One synthetic cluster as a segmenter crop: ``(image (88, 88) float32, target (88, 88)
    uint8)``; None when a placement is not found in ``tries`` attempts per chromosome.

    ``singles[0]`` stays in its window; ``singles[i]`` (i >= 1) is placed the way ``kinds[i - 1]``
    says (``KINDS``) next to a random chromosome already placed, never touching the window's
    other chromosomes or ignored pixels. ``options``: the overlap, banding and size
    settings (None: the defaults).
    """
    options = options or SyntheticOptions()
    first = singles[0]
    band_depth = rng.uniform(*options.band_depth) if rng.random() < options.band_fraction else None
    window = first.window
    if band_depth is not None:
        window = banded(
            window,
            first.mask,
            first.background,
            rng,
            band_depth,
            options.band_width,
            options.bright_bands,
        )
    background = first.background
    forbidden = cv2.dilate((first.others | first.ignore).astype(np.uint8), _SQUARE3).astype(bool)
    image, first_mask, first_value = window.astype(np.float32), first.mask, window
    if options.exact_edges:
        clear = erased(image, first.mask, first.others)
        image = np.where(first.mask, image, clear)
        if options.bend_share and rng.random() < options.bend_share:
            turned = _bent_in_place(replace(first, window=window), forbidden, rng, options)
            if turned is not None:
                first_value, alpha = turned
                first_mask = alpha > 0.5
                image = clear * (1 - alpha) + first_value * alpha
    masks, axes, values, alphas = [first_mask], [axis_angle(first_mask)], [], []
    for single, kind in zip(singles[1:], kinds, strict=True):
        cutout = _cutout(single, rng, band_depth, options.band_width, options.bright_bands)
        if options.bend_share and rng.random() < options.bend_share:
            cutout = bent(cutout, rng, options.bend_angle)
        for _ in range(tries):
            which = int(rng.integers(len(masks)))
            angle = _orientation(kind, axes[which], rng)
            value, alpha = rotated(cutout, angle, rng.uniform(*options.size_range))
            placed = np.logical_or.reduce(masks)
            found = _place(kind, alpha > 0.5, masks[which], axes[which], placed, rng)
            if found is None or not _acceptable(kind, found[1], masks[which], masks, forbidden):
                continue
            offset, mask = found
            masks.append(mask)
            axes.append(angle)
            values.append(_placed(value, mask.shape, *offset))
            alphas.append(_placed(alpha, mask.shape, *offset))
            break
        else:
            return None
    for value, alpha in zip(values, alphas, strict=True):
        image = image * (1 - alpha) + value * alpha
    stack = np.stack(masks)
    shared = stack.sum(axis=0) >= 2
    if shared.any():
        own = np.stack([first_value, *values])[:, shared]
        present = stack[:, shared]
        if rng.random() < options.additive_share:
            gain = rng.uniform(*options.additive_gain)
            level = background + gain * ((own - background) * present).sum(axis=0)
        else:
            level = ratio * (own * present).sum(axis=0) / present.sum(axis=0)
        image[shared] = np.clip(level, 0.0, 1.0)
    sigma = rng.uniform(*options.edge_blur)
    if sigma > 0.05:
        image = cv2.GaussianBlur(image, (0, 0), sigma)
    target = target_from_instances(stack)
    target[first.ignore & (target == 0)] = IGNORE
    rows = np.flatnonzero(stack.any(axis=(0, 2)))
    cols = np.flatnonzero(stack.any(axis=(0, 1)))
    geometry = crops.window_for_box((cols[0], rows[0], cols[-1] + 1, rows[-1] + 1), margin)
    return crops.crop_image(image, geometry, background), crops.crop_labels(target, geometry)


def draw_kinds(rng: np.random.Generator, options: SyntheticOptions | None = None) -> list[str]:
    """The kinds of a random cluster: its size from ``cluster_sizes``, each added chromosome's
    kind from ``kinds``; a pair of a given kind only with a size of 2."""
    options = options or SyntheticOptions()
    sizes = {int(k): float(v) for k, v in options.cluster_sizes.items()}
    weights = {k: float(v) for k, v in options.kinds.items()}
    size = int(rng.choice(list(sizes), p=np.asarray(list(sizes.values())) / sum(sizes.values())))
    p = np.asarray(list(weights.values())) / sum(weights.values())
    return [str(rng.choice(list(weights), p=p)) for _ in range(size - 1)]


def make_clusters(
    singles: list[Single],
    ratios: np.ndarray,
    count: int,
    seed: int,
    margin: int,
    options: SyntheticOptions | None = None,
    kinds: tuple[str, ...] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``count`` synthetic clusters: images ``(count, 88, 88)`` float32, targets uint8,
    reproducible for a given ``seed``. With ``kinds``, every cluster is a pair of one of those
    kinds (evaluation sets); else sizes and kinds are drawn from ``options``, no larger than the
    singles allow. Raises ValueError with fewer than two singles or no ratios."""
    if len(singles) < 2 or not len(ratios):
        raise ValueError("synthetic clusters need at least two single chromosomes and one ratio")
    rng = np.random.default_rng(seed)
    images, targets = [], []
    while len(images) < count:
        chosen = [str(rng.choice(kinds))] if kinds else draw_kinds(rng, options)
        chosen = chosen[: len(singles) - 1]
        picks = rng.choice(len(singles), len(chosen) + 1, replace=False)
        cluster = make_cluster(
            [singles[i] for i in picks], float(rng.choice(ratios)), rng, margin, chosen, options
        )
        if cluster is not None:
            images.append(cluster[0])
            targets.append(cluster[1])
    return np.stack(images).astype(np.float32), np.stack(targets).astype(np.uint8)
