"""Synthetic whole metaphases with exact truth (``chromoseg synth``), built from real single
chromosomes, in the ADIR format so that every trainer, evaluator and the export / fine-tune loop
read them unchanged.

Sources: single chromosomes (clusters of one, no overlap) of ADIR-format folders: ADIR's labelled
metaphases (``--part`` picks slides by the split), or what ``chromoseg mine-singles`` wrote from a
lab's own (or the G-band) images. Every source image's chromosome width is measured
(``pipeline.scale.chromosome_width``) and its singles are resized to ADIR's width
(``pipeline.scale.ADIR_WIDTH``), so that an image drawn at ``scale`` has chromosomes exactly
``scale`` times ADIR's width.

One metaphase (``draw_metaphase``), all drawn from ``rng``:

- ``chromosomes`` single chromosomes (46 in ``full_share`` of the images, else fewer), each
  resized by ``scale`` times a factor in ``size_range``, turned at random;
- laid out in an elliptic spread whose area is their total area over a fill fraction drawn from
  the image's density band (``DENSITY``: loose spreads like most of ADIR's, dense ones with
  chromosomes touching on all sides, as in slide V19); each chromosome crosses one already placed
  (``cross_share``: an overlap, each keeping at least a third of its pixels to itself), is slid
  against one until it touches (``touch_share``), or is placed free, at least ``gap`` px from all
  (falling back to touching when the spread has no room left);
- interphase nuclei (large textured discs) and specks of debris, unlabelled (0 in K, as in ADIR);
- DAPI style: intensity = background + halo around the spread + each chromosome's own intensity
  above its source's background, times a per-chromosome gain; overlaps add (fluorescence adds),
  times ``overlap_gain`` (below 1: saturation, partial occlusion; ADIR's measured overlap /
  single ratios of 0.88-1.49 are sums times 0.44-0.75);
- G-band style: the same chromosomes banded where their source is not (``segmenter.synthetic.
  banded``), as absorbance: transmitted light = illumination * exp(-absorbance), so overlaps are
  darker (absorbances add); a bright background, optionally RGB-tinted and JPEG-compressed;
- then uneven illumination (a linear ramp), Gaussian blur, gamma, gain and noise.

Truth: each chromosome's mask is where its resampled coverage is at least 0.5. K is
``pipeline.core.adir.labels_from_instances`` of the masks (255 where two overlap; no three ever
overlap, so K gives every mask back exactly), the ``Case Info`` 46,XX (every chromosome in the
image is labelled: a complete karyotype as far as K goes). Also written: ``instances.json``
(COCO, every chromosome's mask) and ``synth.json`` (every image's draw: scale, density band,
counts of crossings, touchings, nuclei and specks).

Layout: ``OUT/<density band>__46,XX/<style><seed>_<index>D.tif`` (and ``K.tif``): the density band
is the slide, so ``eval pipeline`` reports per band.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from pipeline.core import adir, imageio
from pipeline.core.errors import InputError
from pipeline.scale import ADIR_WIDTH, chromosome_width

STYLES = ("dapi", "gband")
ADIR_SHAPE = (517, 645)  # rows, cols of an ADIR metaphase: the canvas at scale 1
DENSITY = {"loose": (0.06, 0.12), "medium": (0.12, 0.25), "dense": (0.35, 0.55)}
CASE_INFO_TEXT = "46,XX"
SOURCE_LEVEL = 0.5  # every source image's median chromosome, above its background
SOURCE_MIN_LEVEL, SOURCE_MAX_AREA = 0.4, 3.0  # of the image's median: fainter / larger left out
_SQUARE3 = np.ones((3, 3), np.uint8)


@dataclass(frozen=True)
class SynthOptions:
    chromosomes: tuple[int, int] = (30, 46)  # count when not 46
    full_share: float = 0.6  # images with 46 chromosomes
    density: tuple[str, ...] = tuple(DENSITY)  # bands drawn from, uniformly
    scale: tuple[float, float] = (0.5, 3.0)  # chromosome width / ADIR's, log-uniform
    size_range: tuple[float, float] = (0.85, 1.15)  # per chromosome, on top of the scale
    cross_share: float = 0.08
    touch_share: float = 0.15
    gap: float = 2.0  # px at scale 1 between free chromosomes
    overlap_gain: tuple[float, float] = (0.45, 1.0)  # DAPI; G-band absorbances add fully
    nuclei: tuple[int, int] = (0, 3)
    specks: tuple[int, int] = (0, 30)
    halo: tuple[float, float] = (0.0, 0.12)
    illumination: tuple[float, float] = (0.0, 0.4)  # ramp amplitude, relative
    blur: tuple[float, float] = (0.0, 1.5)  # Gaussian sigma, px
    gamma: tuple[float, float] = (0.7, 1.4)
    noise: tuple[float, float] = (0.005, 0.04)  # Gaussian std, on [0, 1]
    band_depth: tuple[float, float] = (0.5, 0.85)  # G-band: bands given to unbanded sources
    absorbance: tuple[float, float] = (1.2, 2.4)  # G-band: per unit of source intensity
    rgb_share: float = 0.5  # G-band images written RGB
    jpeg_share: float = 0.5  # G-band images JPEG-compressed (quality 60-95)


@dataclass(frozen=True)
class Chromosome:
    """A single chromosome at ADIR's width: ``signal`` float32 ``(h, w)`` its intensity above its
    image's background (0 outside), ``mask`` bool ``(h, w)``, ``banded`` whether its source
    already shows G-bands."""

    signal: np.ndarray
    mask: np.ndarray
    banded: bool


@dataclass
class Metaphase:
    """One drawn metaphase: ``image`` uint8 ``(H, W)`` or ``(H, W, 3)`` as it would be stored,
    ``masks`` bool ``(N, H, W)`` the chromosomes, ``info`` what was drawn."""

    image: np.ndarray
    masks: np.ndarray
    info: dict = field(default_factory=dict)


def chromosomes_from_folder(folder: str | Path, part: str = "all") -> list[Chromosome]:
    """The single chromosomes of every labelled image of an ADIR-format folder (of the split part
    ``part``: ``train``, ``val``, ``test`` or ``all``), resized to ADIR's width, each image's
    brought to one intensity (its median chromosome ``SOURCE_LEVEL`` above its background);
    pieces fainter than ``SOURCE_MIN_LEVEL`` or larger than ``SOURCE_MAX_AREA`` times the image's
    median are left out. Sources whose ``Case Info`` says they were mined are taken as banded
    when drawn as G-band."""
    from segmenter.mining import CASE_INFO_TEXT as MINED
    from segmenter.synthetic import singles_from_image

    items = adir.find_images(folder)
    if part != "all":
        items = adir.select(items, part)
    out = []
    for item in items:
        raw, labels = adir.load(item)
        image = imageio.normalise(raw)
        width = chromosome_width(image)
        factor = 1.0 if width is None else ADIR_WIDTH / width
        banded = (adir.read_karyotype(item).text or "").startswith(MINED)
        singles = singles_from_image(image, labels, context=2)
        if not singles:
            continue
        signals = [np.clip(s.window - s.background, 0, None) * s.mask for s in singles]
        levels = np.array(
            [signal[s.mask].mean() for signal, s in zip(signals, singles, strict=True)]
        )
        areas = np.array([s.mask.sum() for s in singles])
        # each image's chromosomes brought to one level; faint pieces and blobs (a blurred
        # cluster labelled as one chromosome, debris) left out
        reference = float(np.median(levels))
        keep = (levels >= SOURCE_MIN_LEVEL * reference) & (
            areas <= SOURCE_MAX_AREA * np.median(areas)
        )
        for single, signal, kept in zip(singles, signals, keep, strict=True):
            if not kept or reference <= 0:
                continue
            signal = signal * np.float32(SOURCE_LEVEL / reference)
            if factor != 1.0:
                signal = cv2.resize(signal, None, fx=factor, fy=factor)
                mask = cv2.resize(single.mask.astype(np.float32), None, fx=factor, fy=factor)
                signal, mask = signal.astype(np.float32), mask >= 0.5
            else:
                mask = single.mask
            out.append(Chromosome(signal.astype(np.float32), mask, banded))
    return out


def _patch(chromosome: Chromosome, scale: float, degrees: float, band_depth, rng):
    """Signal and coverage of a chromosome resized by ``scale`` and turned by ``degrees``
    (counter-clockwise as seen), banded when ``band_depth`` is given: two float32 ``(s, s)``
    arrays, the signal 0 where the coverage is under 0.5."""
    from segmenter.synthetic import Cutout, axis_angle, banded, rotated

    signal, mask = chromosome.signal, chromosome.mask
    if band_depth is not None:
        signal = banded(signal, mask, 0.0, rng, band_depth, (1.5, 4.0))
    axis = axis_angle(mask)
    cutout = Cutout(np.float32(signal * mask), mask.astype(np.float32), axis)
    value, alpha = rotated(cutout, axis - np.radians(degrees), scale)
    return value * (alpha >= 0.5), alpha


class _Canvas:
    """Chromosomes placed so far: how many cover each pixel, and each one's patch."""

    def __init__(self, shape: tuple[int, int]):
        self.count = np.zeros(shape, np.uint8)
        self.placed: list[tuple[int, int, np.ndarray, np.ndarray]] = []  # y, x, value, mask

    def region(self, y: int, x: int, mask: np.ndarray) -> np.ndarray | None:
        height, width = mask.shape
        if y < 0 or x < 0 or y + height > self.count.shape[0] or x + width > self.count.shape[1]:
            return None
        return self.count[y : y + height, x : x + width]

    def add(self, y: int, x: int, value: np.ndarray, mask: np.ndarray) -> None:
        self.count[y : y + mask.shape[0], x : x + mask.shape[1]] += mask
        self.placed.append((y, x, value, mask))

    def full_mask(self, index: int) -> np.ndarray:
        y, x, _, mask = self.placed[index]
        out = np.zeros(self.count.shape, bool)
        out[y : y + mask.shape[0], x : x + mask.shape[1]] = mask
        return out


def _free(canvas: _Canvas, mask, centre, radii, gap: int, rng, tries: int = 40):
    halo = cv2.dilate(mask.astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8))
    for _ in range(tries):
        r, t = np.sqrt(rng.random()), rng.uniform(0, 2 * np.pi)
        y = int(centre[0] + r * radii[0] * np.sin(t)) - mask.shape[0] // 2
        x = int(centre[1] + r * radii[1] * np.cos(t)) - mask.shape[1] // 2
        region = canvas.region(y, x, mask)
        if region is not None and not (region & halo).any():
            return y, x
    return None


def _touching(canvas: _Canvas, mask, rng, tries: int = 30):
    """Slid from a random pixel of a placed chromosome in a random direction until it no longer
    overlaps any; kept when it then touches one."""
    touch = cv2.dilate(mask.astype(np.uint8), _SQUARE3)
    for _ in range(tries):
        y0, x0, _, other = canvas.placed[int(rng.integers(len(canvas.placed)))]
        rows, cols = np.nonzero(other)
        pick = int(rng.integers(len(rows)))
        start = np.array([y0 + rows[pick], x0 + cols[pick]], float) - np.array(mask.shape) // 2
        direction = rng.uniform(0, 2 * np.pi)
        step = np.array([np.sin(direction), np.cos(direction)])
        for distance in range(0, 2 * max(mask.shape) + 2):
            y, x = np.round(start + distance * step).astype(int)
            region = canvas.region(y, x, mask)
            if region is None:
                break
            if not (region & mask).any():
                # touching an overlap would make K give it the overlap too
                if (region & touch).any() and not ((region >= 2) & touch).any():
                    return y, x
                break
    return None


def _crossing(canvas: _Canvas, mask, rng, tries: int = 30):
    """Centred on a random pixel of a placed chromosome, overlapping it by at least 4 px, each of
    the two keeping at least a third of its pixels to itself; no third chromosome in or next to
    the overlap, and no other overlap touched (K could not tell the chromosomes apart there)."""
    for _ in range(tries):
        index = int(rng.integers(len(canvas.placed)))
        y0, x0, _, other = canvas.placed[index]
        rows, cols = np.nonzero(other)
        pick = int(rng.integers(len(rows)))
        y = y0 + rows[pick] - mask.shape[0] // 2 + int(rng.integers(-3, 4))
        x = x0 + cols[pick] - mask.shape[1] // 2 + int(rng.integers(-3, 4))
        region = canvas.region(y, x, mask)
        if region is None:
            continue
        shared = region.astype(bool) & mask
        grown = cv2.dilate(mask.astype(np.uint8), _SQUARE3).astype(bool)
        if shared.sum() < 4 or ((region >= 2) & grown).any():
            continue
        other_full = canvas.full_mask(index)
        other_region = other_full[y : y + mask.shape[0], x : x + mask.shape[1]]
        halo = cv2.dilate(shared.astype(np.uint8), _SQUARE3).astype(bool)
        if ((region > 0) & ~other_region & (halo | shared)).any():  # a third chromosome
            continue
        if mask.sum() - shared.sum() < mask.sum() / 3:
            continue
        if other.sum() - shared.sum() < other.sum() / 3:
            continue
        return y, x
    return None


def _blob(shape, centre, radii, angle) -> np.ndarray:
    out = np.zeros(shape, np.float32)
    axes = (max(1, int(radii[1])), max(1, int(radii[0])))
    cv2.ellipse(out, (int(centre[1]), int(centre[0])), axes, angle, 0, 360, 1.0, -1)
    return out


def draw_metaphase(
    chromosomes: list[Chromosome], style: str, rng: np.random.Generator, options=SynthOptions()
) -> Metaphase:
    """One synthetic metaphase as the module docstring describes. Raises ValueError for an
    unknown style or no chromosomes."""
    if style not in STYLES:
        raise ValueError(f"style must be one of {STYLES}, not {style!r}")
    if not chromosomes:
        raise ValueError("synthetic metaphases need single chromosomes to draw from")
    scale = float(np.exp(rng.uniform(*np.log(options.scale))))
    count = 46 if rng.random() < options.full_share else int(rng.integers(*options.chromosomes))
    band = str(rng.choice(list(options.density)))
    gband = style == "gband"
    band_depth = rng.uniform(*options.band_depth)
    patches = []
    for pick in rng.choice(len(chromosomes), count, replace=count > len(chromosomes)):
        chromosome = chromosomes[int(pick)]
        depth = band_depth if gband and not chromosome.banded else None
        size = scale * rng.uniform(*options.size_range)
        patches.append(_patch(chromosome, size, rng.uniform(0, 360), depth, rng))
    area = sum(float((alpha >= 0.5).sum()) for _, alpha in patches)
    fill = rng.uniform(*DENSITY[band])
    aspect = rng.uniform(1.0, 1.5)
    radius = np.sqrt(area / fill / np.pi)
    radii = np.array([radius / np.sqrt(aspect), radius * np.sqrt(aspect)])
    longest = max(alpha.shape[0] for _, alpha in patches)
    shape = tuple(
        int(max(round(side * scale), 2 * r + 2 * longest))
        for side, r in zip(ADIR_SHAPE, radii, strict=True)
    )
    centre = np.array(shape) / 2 + rng.uniform(-0.1, 0.1, 2) * np.array(shape)
    centre = np.clip(centre, radii + longest / 2, np.array(shape) - radii - longest / 2)

    canvas = _Canvas(shape)
    gap = max(1, int(round(options.gap * scale)))
    kinds = {"free": 0, "cross": 0, "touch": 0, "dropped": 0}
    for value, alpha in patches:
        mask = alpha >= 0.5
        if not mask.any():
            continue
        draw = rng.random()
        spot, kind = None, "free"
        if canvas.placed and draw < options.cross_share:
            spot, kind = _crossing(canvas, mask, rng), "cross"
        elif canvas.placed and draw < options.cross_share + options.touch_share:
            spot, kind = _touching(canvas, mask, rng), "touch"
        if spot is None:
            spot, kind = _free(canvas, mask, centre, radii, gap, rng), "free"
        if spot is None and canvas.placed:
            spot, kind = _touching(canvas, mask, rng), "touch"
        if spot is None:
            kinds["dropped"] += 1
            continue
        kinds[kind] += 1
        canvas.add(*spot, value * rng.uniform(0.75, 1.25), mask)

    signal = np.zeros(shape, np.float32)
    for y, x, value, mask in canvas.placed:
        signal[y : y + mask.shape[0], x : x + mask.shape[1]] += value * mask
    overlap = canvas.count >= 2
    if not gband:
        signal[overlap] *= rng.uniform(*options.overlap_gain)

    rows, cols = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    distance = np.hypot((rows - centre[0]) / radii[0], (cols - centre[1]) / radii[1])
    halo = rng.uniform(*options.halo) * np.exp(-0.5 * (distance / 1.2) ** 2)
    clutter = np.zeros(shape, np.float32)
    occupied = cv2.dilate(
        (canvas.count > 0).astype(np.uint8), np.ones((2 * gap + 1,) * 2, np.uint8)
    )
    nuclei = specks = 0
    for _ in range(int(rng.integers(options.nuclei[0], options.nuclei[1] + 1))):
        r = rng.uniform(18, 30) * scale
        where = rng.uniform(0, 1, 2) * np.array(shape)
        disc = _blob(shape, where, (r, r * rng.uniform(0.7, 1.0)), rng.uniform(0, 180))
        if (disc.astype(bool) & occupied.astype(bool)).any():
            continue
        texture = cv2.GaussianBlur(rng.random(shape).astype(np.float32), (0, 0), 2 * scale + 0.5)
        clutter += disc * rng.uniform(0.25, 0.6) * (0.8 + 0.4 * texture)
        nuclei += 1
    for _ in range(int(rng.integers(options.specks[0], options.specks[1] + 1))):
        r = rng.uniform(0.7, 2.5) * scale
        where = rng.uniform(0, 1, 2) * np.array(shape)
        dot = _blob(shape, where, (r, r), 0.0)
        if (dot.astype(bool) & occupied.astype(bool)).any():
            continue
        clutter += dot * rng.uniform(0.15, 0.8)
        specks += 1

    angle = rng.uniform(0, 2 * np.pi)
    ramp = np.cos(angle) * cols / shape[1] + np.sin(angle) * rows / shape[0]
    illumination = 1.0 + rng.uniform(*options.illumination) * (ramp - ramp.mean())
    if gband:
        absorbance = (signal + 0.6 * clutter + 0.5 * halo) * rng.uniform(*options.absorbance)
        light = rng.uniform(0.75, 0.95) * illumination * np.exp(-absorbance)
    else:
        light = rng.uniform(0.02, 0.12) + halo + clutter + signal * rng.uniform(0.6, 1.0)
        light = light * illumination
    sigma = rng.uniform(*options.blur)
    if sigma > 0.05:
        light = cv2.GaussianBlur(light, (0, 0), sigma)
    light = np.clip(light, 0, None) / max(float(np.percentile(light, 99.9)), 1e-6)
    light = np.clip(light, 0, 1) ** rng.uniform(*options.gamma) * rng.uniform(0.7, 1.0)
    light = light + rng.normal(0, rng.uniform(*options.noise), shape).astype(np.float32)
    image = np.round(np.clip(light, 0, 1) * 255).astype(np.uint8)
    rgb = gband and rng.random() < options.rgb_share
    quality = int(rng.integers(60, 96)) if gband and rng.random() < options.jpeg_share else None
    if rgb:
        tint = rng.uniform(0.85, 1.0, 3)
        image = np.round(image[..., None] * tint).astype(np.uint8)
    if quality is not None:
        ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        image = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED)
    masks = np.stack([canvas.full_mask(i) for i in range(len(canvas.placed))])
    info = {
        "style": style,
        "scale": round(scale, 4),
        "chromosome_width_px": round(scale * ADIR_WIDTH, 2),
        "density": band,
        "fill": round(float(fill), 3),
        "chromosomes": len(canvas.placed),
        "crossing": kinds["cross"],
        "touching": kinds["touch"],
        "not_placed": kinds["dropped"],
        "nuclei": nuclei,
        "specks": specks,
        "rgb": bool(rgb),
        "jpeg_quality": quality,
    }
    return Metaphase(image, masks, info)


def write_set(
    chromosomes: list[Chromosome],
    out: str | Path,
    count: int,
    style: str,
    seed: int,
    options: SynthOptions = SynthOptions(),
    progress=None,
) -> list[dict]:
    """``count`` metaphases drawn with seeds ``(seed, index)`` written to ``out`` as the module
    docstring lays out; returns the per-image records of ``synth.json``."""
    import tifffile

    from pipeline.outputs import coco_annotations, coco_document
    from pipeline.stitch import instances_from_masks

    out = Path(out)
    records, coco = [], []
    for index in range(count):
        metaphase = draw_metaphase(
            chromosomes, style, np.random.default_rng([seed, index]), options
        )
        info = metaphase.info
        folder = out / f"{info['density']}__{CASE_INFO_TEXT}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / adir.CASE_INFO).write_text(CASE_INFO_TEXT + "\n")
        name = f"{style}{seed}_{index:04d}"
        tifffile.imwrite(folder / f"{name}D.tif", metaphase.image, compression="deflate")
        labels = adir.labels_from_instances(metaphase.masks)
        tifffile.imwrite(folder / f"{name}K.tif", labels, compression="deflate")
        shape = labels.shape
        instances = instances_from_masks(metaphase.masks)
        coco.append(
            {
                "file_name": f"{folder.name}/{name}D.tif",
                "width": shape[1],
                "height": shape[0],
                "slide": info["density"],
                "annotations": coco_annotations(instances, shape, [1.0] * len(instances)),
            }
        )
        records.append({"name": name, "seed": [seed, index], **info})
        if progress is not None:
            progress(index + 1, count)
    (out / "instances.json").write_text(json.dumps(coco_document(coco)) + "\n")
    manifest = {"style": style, "seed": seed, "options": asdict(options), "images": records}
    (out / "synth.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return records


def register(groups) -> None:
    parser = groups["top"].add_parser(
        "synth",
        help="synthetic whole metaphases with exact truth, from real single chromosomes",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("--out", required=True, help="output folder (ADIR format)")
    parser.add_argument("--count", type=int, required=True, help="metaphases to draw")
    parser.add_argument("--style", choices=STYLES, default="dapi")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--singles",
        action="append",
        required=True,
        help="ADIR-format folder to take single chromosomes from (ADIR itself, or what "
        "mine-singles wrote); repeat for several",
    )
    parser.add_argument(
        "--part",
        choices=("train", "val", "test", "all"),
        default="all",
        help="slides of the split to take singles from (folders the split does not know: all)",
    )
    parser.add_argument(
        "--scale",
        nargs=2,
        type=float,
        metavar=("LOW", "HIGH"),
        default=SynthOptions.scale,
        help="chromosome width relative to ADIR's, drawn log-uniform in this range (default "
        f"{SynthOptions.scale[0]} {SynthOptions.scale[1]}; training sets for the models, which "
        "see images at ADIR's width, need no more than about 0.7 1.4)",
    )
    parser.set_defaults(func=_synth)


def _synth(args) -> int:
    from tqdm import tqdm

    if args.count < 1:
        raise InputError(f"--count must be at least 1, not {args.count}")
    low, high = args.scale
    if not 0 < low <= high:
        raise InputError(f"--scale needs 0 < LOW <= HIGH, not {low} {high}")
    chromosomes = [c for folder in args.singles for c in chromosomes_from_folder(folder, args.part)]
    if not chromosomes:
        raise InputError(f"no single chromosomes in {', '.join(args.singles)}")
    print(f"{len(chromosomes)} single chromosomes")
    with tqdm(total=args.count, desc="synth", unit="image") as bar:
        write_set(
            chromosomes,
            args.out,
            args.count,
            args.style,
            args.seed,
            SynthOptions(scale=(low, high)),
            progress=lambda done, total: bar.update(1),
        )
    print(f"{args.count} metaphases in {args.out}")
    return 0
