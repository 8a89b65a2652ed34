"""The in-process batch engine of ``chromoseg run``: images in, chromosomes and tables out.

Per image (``process_image`` does all of it for one image; other engines call it on workers):
read and normalise (``load_image``), detect cluster boxes (tiled when the image is large), cut one
88x88 crop per box (``segmenter.crops``: the geometry the U-Net was trained with), segment the
crops, map their class probabilities back and keep the chromosomes of each, merge duplicates and
segment large chromosomes again alone (``segment_images``), and measure (``build_result``).
``run_batch`` does this for a list of images, sending the crops of ``batch.images`` images
through the U-Net together (on the CPU in forked worker processes, one core each:
``pipeline.forked``), writes every output (``pipeline.outputs``, layout below), and survives bad
images: each failure is one line on stderr and in ``run.json``.

Output folder::

    chromosomes.csv            every chromosome of the batch (images in ``image`` order)
    instances.json             COCO instances of the batch
    run.json                   versions, config, model hashes, per-image status/timings, errors,
                               seconds from process start to the first image (startup_seconds)
    images/<key>.csv           one image's table
    images/<key>.labels.tif    its label planes (pipeline.outputs)
    images/<key>.overlay.png   its overlay
    images/<key>.json          its COCO annotations and record: written last, so it marks the
                               image complete (``--resume`` skips complete images whose settings
                               and models are unchanged)

The exit status (``RunSummary.exit_code``): 0 when every image was processed, 1 when some failed.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import sys
import time
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline import __version__, resegment
from pipeline.config import PipelineConfig, StitchSettings, TilingSettings
from pipeline.core.config import to_dict
from pipeline.core.errors import InputError, one_line
from pipeline.core.files import write_bytes, write_json
from pipeline.core.imageio import read_image, to_grey
from pipeline.coverage import (
    foreground_part,
    uncovered_boxes,
    unsegmented_boxes,
    without_blobs,
    without_enclosed,
)
from pipeline.forked import forked_outcomes, forked_processes
from pipeline.inputs import ImageJob
from pipeline.models import Models
from pipeline.normalised import NormalisedImage
from pipeline.scale import image_scale
from pipeline.stitch import Instance, Window, in_reading_order, merge_pieces, window_instances
from pipeline.tiling import detect_tiled, order_boxes
from segmenter.crops import CropGeometry, probabilities_to_image, window_for_box, windows_for_box

if TYPE_CHECKING:
    import pandas

# crops handed to the segmenter at once (it runs them segmenter.batch_size at a time): enough
# that the extra views of its crops of 2+ chromosomes fill whole network batches
CROPS_PER_CALL = 256
MAPS_IN_FLIGHT = 4  # segmenter calls whose probabilities may wait to be mapped back

MANIFEST_EVERY_S = 5.0  # run.json is rewritten at most this often while images finish
DIM_PERCENTILE = 99.5  # of a crop's values: its brightness (``brightened``)

OUTPUT_SUFFIXES = {
    "table": ".csv",
    "labels": ".labels.tif",
    "overlay": ".overlay.png",
    "record": ".json",
}


class ImageError(InputError):
    """An image that was read but cannot be processed (blank, mismatched channel)."""


@dataclass
class LoadedImage:
    """``channels``: ``"dapi"``, the image's values ``(H, W)`` as stored (luminance float32 for
    colour images), and each extra channel, raw: intensities are measured on them;
    ``normalised``: the view of the image the models see (float32 in [0, 1], chromosomes bright,
    computed per region)."""

    job: ImageJob
    normalised: NormalisedImage
    channels: dict[str, np.ndarray]
    notes: list[str]


@dataclass
class Detected:
    """An image with its crop windows (``geometries``), each with its box (float32 ``(M, 4)``:
    the detector box, or for a box covered by several windows the window's core,
    ``segmenter.crops.windows_for_box``), the detector's score and the detector box it came from
    (``cluster_ids``, 1..), and the crop padding level. ``scale``: the factor both stages saw the
    image at; ``chromosome_width``: the width (px) it was measured from (None: not measured).
    ``pieces`` collects the chromosomes found in its crops as they are segmented
    (``segment_images``), before duplicates are merged; ``chromosomes``: the image's chromosomes
    once they are (``settle``)."""

    image: LoadedImage
    boxes: np.ndarray
    scores: np.ndarray
    geometries: list[CropGeometry]
    background: float
    cluster_ids: np.ndarray
    scale: float = 1.0
    chromosome_width: float | None = None
    pieces: list[Instance] = field(default_factory=list)
    chromosomes: list[Instance] = field(default_factory=list)

    def crop(self, index: int) -> np.ndarray:
        """The 88x88 float32 crop of box ``index``."""
        return self.image.normalised.crop(self.geometries[index], self.background)


@dataclass
class ImageResult:
    """One processed image: its chromosomes (id = index + 1) and their table."""

    job: ImageJob
    shape: tuple[int, int]
    instances: list[Instance]
    table: pandas.DataFrame
    normalised: NormalisedImage
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    scale: float = 1.0
    chromosome_width: float | None = None


def process_age() -> float | None:
    """Seconds since this process started (Linux's /proc; None elsewhere)."""
    try:
        fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return round(uptime - int(fields[19]) / os.sysconf("SC_CLK_TCK"), 3)
    except (OSError, ValueError, IndexError):
        return None


def load_image(job: ImageJob, polarity: str = "auto") -> LoadedImage:
    """Read and normalise an image and its extra channels; InputError (one-line message) for
    unreadable, blank or mismatched input."""
    raw = read_image(job.path)
    notes = []
    if raw.ndim == 3:
        notes.append(f"{'RGBA' if raw.shape[2] == 4 else 'RGB'} image: measured as grey")
    if raw.dtype != np.uint8:
        notes.append(f"{raw.dtype} image")
    grey = to_grey(raw) if raw.ndim == 3 else raw
    normalised = NormalisedImage(grey, polarity)
    if normalised.blank:
        raise ImageError(f"{job.path}: blank image (no contrast): nothing to segment")
    channels = {"dapi": grey}
    for name, path in job.channels.items():
        values = read_image(path)
        values = to_grey(values) if values.ndim == 3 else values
        if values.shape != grey.shape:
            raise ImageError(
                f"{path}: channel {name!r} is {values.shape[1]}x{values.shape[0]}, its image "
                f"{job.path.name} {grey.shape[1]}x{grey.shape[0]}: sizes must match"
            )
        channels[name] = values
    return LoadedImage(job, normalised, channels, notes)


def detect_boxes(
    models: Models, normalised: NormalisedImage, tiling: TilingSettings, scale: float = 1.0
):
    """Cluster boxes and scores of a normalised image, in ``order_boxes`` order, the detector
    seeing it resized by ``scale`` (boxes come back in the image's pixels); detected in tiles
    when its longer side, resized, exceeds ``tiling.max_side`` (tiling sizes are the detector's
    pixels). Also returns how many detector calls
    (tiles) gave as many boxes as the detector can return (``Models.max_boxes``): there,
    clusters may have been missed."""
    full = []

    def detect(image: np.ndarray):
        if scale != 1.0:
            shrink = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
            image = cv2.resize(image, None, fx=scale, fy=scale, interpolation=shrink)
        boxes, scores = models.detect(image)
        if models.max_boxes is not None and len(boxes) >= models.max_boxes:
            full.append(image.shape)
        return np.asarray(boxes, np.float32).reshape(-1, 4) / scale, scores

    if max(normalised.shape) * scale > tiling.max_side:  # the tiling's sizes: model pixels
        tile, overlap = int(round(tiling.tile / scale)), int(round(tiling.overlap / scale))
        boxes, scores = detect_tiled(detect, normalised, tile, overlap)
    else:
        boxes, scores = detect(normalised.full())
        boxes, scores = order_boxes(
            np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(scores)
        )
    return boxes, scores, len(full)


def cluster_boxes(normalised: NormalisedImage, models: Models, config: PipelineConfig):
    """The scale an image is seen at (within its segmenter's tolerance:
    ``Models.scale_tolerance_for``), the chromosome width it was measured from (None: not
    measured), its cluster boxes float32 ``(M, 4)`` and scores ``(M,)`` in ``order_boxes`` order:
    the detector's (``detect_boxes``) and, with ``detector.fill_uncovered``, those around the
    foreground they leave uncovered (``pipeline.coverage``; score 0, not the detector's); and how
    many detector calls gave as many boxes as it can return."""
    tolerance = models.scale_tolerance_for(normalised.flip, config.scale_tolerance)
    scale, width = image_scale(normalised, config.scale, tolerance)
    boxes, scores, full = detect_boxes(models, normalised, config.tiling, scale)
    if config.detector.fill_uncovered:
        extra = uncovered_boxes(normalised, boxes, width, scale)
        boxes, scores = order_boxes(
            np.concatenate([boxes, extra]), np.concatenate([scores, np.zeros(len(extra))])
        )
    return scale, width, boxes, scores, full


def detect_image(image: LoadedImage, models: Models, config: PipelineConfig) -> Detected:
    """Scale, boxes (``cluster_boxes``) and crop windows (``add_windows``) of one image."""
    scale, width, boxes, scores, full = cluster_boxes(image.normalised, models, config)
    if full:
        image.notes.append(
            f"the detector returned its maximum of {models.max_boxes} boxes in {full} tile(s): "
            "clusters may be missing there (set a smaller tiling.tile)"
        )
    empty = np.zeros((0, 4), np.float32)
    detected = Detected(
        image,
        empty,
        np.zeros(0, np.float32),
        [],
        image.normalised.background(),
        np.zeros(0, np.int64),
        scale,
        width,
    )
    add_windows(detected, boxes, scores, models, config)
    return detected


def add_windows(
    detected: Detected,
    boxes: np.ndarray,
    scores: np.ndarray,
    models: Models,
    config: PipelineConfig,
) -> None:
    """Append the crop windows of ``boxes`` float32 ``(M, 4)`` (the image's pixel edges) with
    their ``scores`` ``(M,)`` to ``detected``, each box a new cluster: the crop margin and the
    largest window (``segmenter.max_window``) are the models' pixels, so in the image's pixels
    they are divided by the scale."""
    margin = int(round(models.margin / detected.scale))
    first = int(detected.cluster_ids.max(initial=0)) + 1
    windows = [
        (geometry, core, score, cluster)
        for cluster, (box, score) in enumerate(zip(boxes, scores, strict=True), start=first)
        for geometry, core in windows_for_box(
            box, margin, config.segmenter.max_window / detected.scale
        )
    ]
    detected.geometries += [w[0] for w in windows]
    detected.boxes = np.concatenate(
        [detected.boxes, np.asarray([w[1] for w in windows], np.float32).reshape(-1, 4)]
    )
    detected.scores = np.concatenate(
        [detected.scores, np.asarray([w[2] for w in windows], np.float32)]
    )
    detected.cluster_ids = np.concatenate(
        [detected.cluster_ids, np.asarray([w[3] for w in windows], np.int64)]
    )


def crop_pieces(
    detected: Detected,
    index: int,
    probabilities: np.ndarray,
    stitch_config: StitchSettings,
    min_segmenter_score: float,
) -> list[Instance]:
    """The chromosomes in crop ``index`` of an image, from its class probabilities
    ``(4, 88, 88)`` resized back to the crop's window (``pipeline.stitch.window_instances``; the
    config's piece sizes are pixels at the models' scale, turned into the image's here; small
    pieces scoring below ``min_segmenter_score`` are dropped, unless one is a detector box's only
    piece, in the image's foreground, and ``stitch.keep_sole_piece`` keeps it)."""
    shape = detected.image.normalised.shape
    geometry = detected.geometries[index]
    maps, (x0, y0, x1, y1) = probabilities_to_image(probabilities, geometry, shape)
    if x1 <= x0 or y1 <= y0:
        return []
    window = Window(
        probabilities=maps,
        row0=y0,
        col0=x0,
        box=detected.boxes[index],
        detector_score=float(detected.scores[index]),
        cluster_id=int(detected.cluster_ids[index]),
    )
    area = 1 / detected.scale**2  # image pixels per pixel at the models' scale
    return window_instances(
        window,
        shape,
        round(stitch_config.min_fragment_pixels * area),
        stitch_config.min_inside_fraction,
        min_segmenter_score,
        round(stitch_config.uncertain_max_pixels * area),
        stitch_config.keep_sole_piece,
        lambda: foreground_part(detected.image.normalised, y0, x0, y1 - y0, x1 - x0),
    )


def brightened(crops: np.ndarray, level: float | None) -> np.ndarray:
    """Crop windows ``(N, H, W)`` float32 in [0, 1] with each crop whose ``DIM_PERCENTILE``th
    percentile lies below ``level`` scaled so that it lies at ``level`` (clipped to [0, 1]); the
    others unchanged, to the bit. The U-Net learnt chromosomes about as bright as the brightest
    in their image; where a bright nucleus or a bright part of the spread sets the image's
    normalisation, the chromosomes of a dim part come out faint, and the U-Net returned few of
    them (docs/results.md, "Dim crops brightened"). None: ``crops`` as they are."""
    if level is None or len(crops) == 0:
        return crops
    tops = np.percentile(crops.reshape(len(crops), -1), DIM_PERCENTILE, axis=1)
    dim = (tops > 0) & (tops < level)
    if not dim.any():
        return crops
    crops = crops.copy()
    gains = (level / tops[dim]).astype(np.float32)
    crops[dim] = np.minimum(crops[dim] * gains[:, None, None], np.float32(1.0))
    return crops


def _chunk_pieces(
    chunk: list, probabilities: np.ndarray, stitch_config: StitchSettings, min_score: float
):
    """``crop_pieces`` of every ``(Detected, box index)`` of ``chunk``, in order."""
    return [
        crop_pieces(item, index, crop_probabilities, stitch_config, min_score)
        for (item, index), crop_probabilities in zip(chunk, probabilities, strict=True)
    ]


class InlineExecutor(Executor):
    """An executor that runs each task at once, in the calling thread (no thread beside it)."""

    def submit(self, fn, /, *args, **kwargs) -> Future:
        future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:
            future.set_exception(error)
        return future


def segment_images(
    detected: list[Detected],
    models: Models,
    config: PipelineConfig,
    pool: Executor | None = None,
) -> None:
    """Cut, segment and map back every crop of these images, ``CROPS_PER_CALL`` crops per
    segmenter call (dim crops of bright-chromosome images brightened: ``brightened``), adding
    each crop's chromosomes to its image's ``pieces`` (in box order). Images
    whose chromosomes were dark (G-band) go through ``Models.segment_dark``. With
    ``segmenter.second_pass``, foreground that no chromosome then covers gets boxes of its own
    (``pipeline.coverage.unsegmented_boxes``, score 0), and their crops are segmented too.

    The crops of all the images share the calls; the segmenter gives every network call the same
    number of crops (``segmenter.batch_size``; ``segmenter.api.segment``), so a crop's result does
    not depend on which other images share its batch: resumed and uninterrupted runs give the same
    masks. With ``pool``, its threads map one call's probabilities back while the network runs the
    next call. Memory
    is bounded by a few calls' crops and probabilities (about 32 MB a call), however many crops
    an image has.
    """
    _segment_windows([(item, 0) for item in detected], models, config, pool)
    if config.segmenter.second_pass:
        firsts = []
        for item in detected:
            firsts.append((item, len(item.boxes)))
            extra = unsegmented_boxes(
                item.image.normalised, item.pieces, item.chromosome_width, item.scale
            )
            add_windows(item, extra, np.zeros(len(extra), np.float32), models, config)
        _segment_windows(firsts, models, config, pool)
    for item in detected:
        settle(item, config.stitch)
    segment_alone(detected, models, config)


def settle(detected: Detected, stitch: StitchSettings) -> None:
    """``detected.chromosomes`` from its ``pieces``: duplicates merged, parts joined
    (``pipeline.stitch.merge_pieces``), blobs and pieces of nuclei dropped
    (``pipeline.coverage.without_blobs``, ``without_enclosed``)."""
    chromosomes = merge_pieces(
        detected.pieces,
        stitch.duplicate_iou,
        stitch.duplicate_containment,
        stitch.join_iou,
        stitch.redundant_coverage,
    )
    chromosomes = without_blobs(chromosomes, stitch.max_thickness)
    detected.chromosomes = without_enclosed(
        chromosomes, detected.image.normalised, stitch.max_surround
    )


def segment_alone(detected: list[Detected], models: Models, config: PipelineConfig) -> None:
    """Each image's large chromosomes segmented again alone, and replaced by the pieces they
    split into (``pipeline.resegment``; at the segmenter's own size, ``Models.resegment_for``;
    none with ``segmenter.resegment`` false)."""

    def margin_of(item: Detected) -> int:  # the models' crop margin in the image's pixels
        return int(round(models.margin / item.scale))

    for dark in (False, True):  # each polarity has its own segmenter (Models.segmenter_for)
        factor = models.resegment_for(dark) if config.segmenter.resegment else None
        images = [item for item in detected if item.image.normalised.flip == dark]
        work = [  # (image, chromosome index, its window)
            (item, index, window_for_box(item.chromosomes[index].box, margin_of(item)))
            for item in images
            for index in resegment.candidates(item.chromosomes, factor)
        ]
        if not work:
            continue
        crops = [
            resegment.alone_crop(
                item.image.normalised,
                item.chromosomes[index],
                geometry,
                item.background,
                max(1, round(resegment.GROW / item.scale)),
            )
            for item, index, geometry in work
        ]
        probabilities = np.asarray(models.segmenter_for(dark)(np.stack(crops)))
        medians = {id(item): np.median([c.area for c in item.chromosomes]) for item in images}
        swaps = {}
        for (item, index, geometry), crop_probabilities in zip(work, probabilities, strict=True):
            maps, region = probabilities_to_image(
                crop_probabilities, geometry, item.image.normalised.shape
            )
            pieces = resegment.split(item.chromosomes[index], maps, region, medians[id(item)])
            if pieces:
                swaps[id(item), index] = pieces
        for item in images:
            item.chromosomes = in_reading_order(
                [
                    piece
                    for index, chromosome in enumerate(item.chromosomes)
                    for piece in swaps.get((id(item), index), [chromosome])
                ]
            )


def _segment_windows(
    detected: list[tuple[Detected, int]],
    models: Models,
    config: PipelineConfig,
    pool: Executor | None,
) -> None:
    """``segment_images`` for the windows of each image from the given index on."""
    pool = pool or InlineExecutor()
    in_flight: deque = deque()

    def settle(limit: int) -> None:
        while len(in_flight) > limit:
            chunk, future = in_flight.popleft()
            for (item, _), pieces in zip(chunk, future.result(), strict=True):
                item.pieces += pieces

    for dark in (False, True):  # each polarity has its own segmenter (Models.segmenter_for)
        segment = models.segmenter_for(dark)
        items = [
            (item, index)
            for item, first in detected
            if item.image.normalised.flip == dark
            for index in range(first, len(item.boxes))
        ]
        for start in range(0, len(items), CROPS_PER_CALL):
            chunk = items[start : start + CROPS_PER_CALL]
            crops = np.stack([item.crop(index) for item, index in chunk])
            if not dark:  # G-band crops as cut: the real G-band images' counts grew with it
                crops = brightened(crops, config.segmenter.dim_crop_level)
            probabilities = np.asarray(segment(crops))
            future = pool.submit(
                _chunk_pieces,
                chunk,
                probabilities,
                config.stitch,
                models.min_score_for(dark, config.stitch.min_segmenter_score),
            )
            in_flight.append((chunk, future))
            settle(MAPS_IN_FLIGHT)
    settle(0)


def build_result(
    detected: Detected, config: PipelineConfig, pixel_size: float | None
) -> ImageResult:
    """The chromosomes (``Detected.chromosomes``, in reading order) and table of one segmented
    image."""
    from pipeline.measure import measure  # pandas, scipy, scikit-image: off the start-up path

    image = detected.image
    instances = detected.chromosomes
    table = measure(instances, image.channels, image.job.slide, image.job.image, pixel_size)
    shape = image.normalised.shape
    return ImageResult(
        image.job,
        shape,
        instances,
        table,
        image.normalised,
        image.notes,
        scale=detected.scale,
        chromosome_width=detected.chromosome_width,
    )


def process_image(
    job: ImageJob, models: Models, config: PipelineConfig, pixel_size: float | None = None
) -> ImageResult:
    """Everything for one image, nothing written (for engines that spread images over workers).
    Raises InputError for bad input."""
    started = time.perf_counter()
    image = load_image(job, config.polarity)
    loaded = time.perf_counter()
    detected = detect_image(image, models, config)
    found = time.perf_counter()
    segment_images([detected], models, config)
    segmented = time.perf_counter()
    result = build_result(detected, config, pixel_size)
    result.seconds = {
        "read": loaded - started,
        "detect": found - loaded,
        "segment": segmented - found,
        "stitch_measure": time.perf_counter() - segmented,
    }
    return result


def output_paths(out_dir: Path, key: str) -> dict[str, Path]:
    return {name: out_dir / "images" / f"{key}{suffix}" for name, suffix in OUTPUT_SUFFIXES.items()}


def fingerprint(
    job: ImageJob, models: Models, config: PipelineConfig, pixel_size: float | None
) -> str:
    """Hash of everything an image's outputs depend on (not batch sizes or workers)."""
    settings = {key: value for key, value in to_dict(config).items() if key != "batch"}
    settings["segmenter"] = {k: v for k, v in settings["segmenter"].items() if k != "batch_size"}
    text = json.dumps(
        {
            "version": __version__,
            "image": job.image,
            "file": str(job.path.resolve()),
            "channels": {name: str(path.resolve()) for name, path in job.channels.items()},
            "config": settings,
            "margin": models.margin,
            "models": models.info,
            "pixel_size": pixel_size,
        },
        sort_keys=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def write_image_outputs(result: ImageResult, out_dir: Path, stamp: str) -> dict:
    """Write one image's table, label TIFF, overlay and, last, its record; returns the record."""
    from pipeline.outputs import coco_annotations, write_label_tiff, write_overlay, write_table

    paths = output_paths(out_dir, result.job.key)
    started = time.perf_counter()
    write_table(paths["table"], result.table)
    write_label_tiff(paths["labels"], result.instances, result.shape)
    write_overlay(paths["overlay"], result.normalised.to_uint8(), result.instances)
    scores = [i.detector_score * i.segmenter_score for i in result.instances]
    seconds = {**result.seconds, "write": time.perf_counter() - started}
    record = {
        "image": result.job.image,
        "slide": result.job.slide,
        "file_name": result.job.image,
        "width": result.shape[1],
        "height": result.shape[0],
        "fingerprint": stamp,
        "chromosomes": len(result.instances),
        "scale": round(result.scale, 4),
        "chromosome_width_px": (
            None if result.chromosome_width is None else round(result.chromosome_width, 2)
        ),
        "notes": result.notes,
        "seconds": {name: round(value, 4) for name, value in seconds.items()},
        "annotations": coco_annotations(result.instances, result.shape, scores),
    }
    write_json(paths["record"], record)
    return record


def read_record(out_dir: Path, job: ImageJob, stamp: str) -> dict | None:
    """The record of an image whose outputs are all there and were made with ``stamp``."""
    paths = output_paths(out_dir, job.key)
    if not all(path.is_file() for path in paths.values()):
        return None
    try:
        record = json.loads(paths["record"].read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return record if record.get("fingerprint") == stamp else None


@dataclass
class RunSummary:
    """What a run did: counts, time, where the outputs are, and the failures."""

    out_dir: Path
    images: int = 0
    done: int = 0
    resumed: int = 0
    failed: int = 0
    chromosomes: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return 1 if self.failed else 0

    def text(self) -> str:
        """The one-screen summary printed at the end of a run."""
        per_image = self.seconds / self.done if self.done else 0.0
        lines = [
            f"chromoseg run: {self.images} images: {self.done} processed, {self.resumed} already "
            f"done (--resume), {self.failed} failed",
            f"  chromosomes: {self.chromosomes} in {self.done + self.resumed} images",
            f"  time: {self.seconds:.1f} s ({per_image:.2f} s per processed image)",
            f"  outputs: {self.out_dir}/ (chromosomes.csv, instances.json, run.json, "
            "report.html, images/)",
        ]
        if self.errors:
            lines.append(f"  failed images ({self.failed}), also in run.json:")
            lines += [f"    {error}" for error in self.errors[:10]]
            if len(self.errors) > 10:
                lines.append(f"    ... and {len(self.errors) - 10} more")
        return "\n".join(lines)


def versions() -> dict:
    import cv2

    out = {
        "chromoseg": __version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "numpy": np.__version__,
        "pandas": metadata.version("pandas"),
        "opencv": cv2.__version__,
        "scikit-image": metadata.version("scikit-image"),
    }
    if "torch" in sys.modules:
        out["torch"] = sys.modules["torch"].__version__
    return out


def assemble(jobs: list[ImageJob], out_dir: Path, records: dict[str, dict], header: list[str]):
    """Write the batch table and instances.json from the per-image files of ``records``
    (image -> record), in job order. Returns the number of chromosomes."""
    from pipeline.outputs import coco_document

    lines = [",".join(header) + "\n"]
    images = []
    for job in jobs:
        record = records.get(job.image)
        if record is None:
            continue
        text = output_paths(out_dir, job.key)["table"].read_text()
        lines.append(text.split("\n", 1)[1])
        images.append(record)
    write_bytes(out_dir / "chromosomes.csv", "".join(lines).encode())
    write_json(out_dir / "instances.json", coco_document(images))
    return sum(record["chromosomes"] for record in images)


class _BatchRun:
    """The state of one ``run_batch`` call: outputs so far, manifest, summary, progress bar."""

    def __init__(self, jobs, models, config, out_dir, pixel_size, workers, command, quiet):
        from tqdm import tqdm

        self.tqdm = tqdm
        self.jobs, self.models, self.config = jobs, models, config
        self.out_dir, self.pixel_size, self.workers = out_dir, pixel_size, max(1, workers)
        self.started = time.perf_counter()
        self.summary = RunSummary(out_dir=out_dir, images=len(jobs))
        self.stamps = {job.image: fingerprint(job, models, config, pixel_size) for job in jobs}
        self.entries: dict[str, dict] = {}
        self.records: dict[str, dict] = {}
        self.quiet = quiet
        self.manifest = {
            "command": command,
            "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "versions": versions(),
            "config": to_dict(config),
            "crop_margin": models.margin,
            "pixel_size_um": pixel_size,
            "models": models.info,
            "images": [],
            "errors": [],
        }

    def entry(self, job: ImageJob, status: str, error: str | None = None, record=None) -> dict:
        outputs = output_paths(self.out_dir, job.key) if error is None else {}
        return {
            "image": job.image,
            "slide": job.slide,
            "file": str(job.path),
            "status": status,
            "error": error,
            "chromosomes": record["chromosomes"] if record else None,
            "scale": record.get("scale") if record else None,
            "chromosome_width_px": record.get("chromosome_width_px") if record else None,
            "notes": record["notes"] if record else [],
            "seconds": record["seconds"] if record and status == "done" else {},
            "outputs": {
                name: str(path.relative_to(self.out_dir)) for name, path in outputs.items()
            },
        }

    def fail(self, job: ImageJob, error: BaseException) -> None:
        message = one_line(error)
        if str(job.path) not in message:
            message = f"{job.image}: {message}"
        self.entries[job.image] = self.entry(job, "failed", message)
        self.summary.failed += 1
        self.summary.errors.append(message)
        self.tqdm.write(f"chromoseg: {message}", file=sys.stderr)

    def succeed(self, job: ImageJob, record: dict, status: str) -> None:
        self.records[job.image] = record
        self.entries[job.image] = self.entry(job, status, record=record)
        if status == "done":
            self.summary.done += 1
        else:
            self.summary.resumed += 1

    def write_manifest(self) -> None:
        self.manifest["images"] = [
            self.entries[job.image] for job in self.jobs if job.image in self.entries
        ]
        self.manifest["errors"] = self.summary.errors
        self.manifest["seconds"] = round(time.perf_counter() - self.started, 3)
        write_json(self.out_dir / "run.json", self.manifest)

    def load(self, job: ImageJob):
        """(job, LoadedImage or the exception, seconds)."""
        started = time.perf_counter()
        try:
            image = load_image(job, self.config.polarity)
        except Exception as error:  # one bad image must not stop the batch
            image = error
        return job, image, time.perf_counter() - started

    def finish(self, detected: Detected, seconds: dict):
        """(job, record or the exception)."""
        job = detected.image.job
        try:
            started = time.perf_counter()
            result = build_result(detected, self.config, self.pixel_size)
            result.seconds = {**seconds, "stitch_measure": time.perf_counter() - started}
            return job, write_image_outputs(result, self.out_dir, self.stamps[job.image])
        except Exception as error:
            return job, error

    def networks(self, loaded: list[Future], pool: Executor):
        """Detect and segment the loaded images of one batch (``load`` futures): their
        ``Detected``, per-image seconds, and ``(job, exception)`` of those that failed. ``pool``
        maps the probabilities back (``segment_images``)."""
        detected, seconds, failed = [], [], []
        for future in loaded:
            job, image, read_seconds = future.result()
            try:
                if isinstance(image, BaseException):
                    raise image
                before = time.perf_counter()
                detected.append(detect_image(image, self.models, self.config))
                seconds.append({"read": read_seconds, "detect": time.perf_counter() - before})
            except Exception as error:
                failed.append((job, error))
        counts = [len(item.boxes) for item in detected]
        before = time.perf_counter()
        segment_images(detected, self.models, self.config, pool)
        segment_seconds = time.perf_counter() - before
        for item_seconds, count in zip(seconds, counts, strict=True):
            item_seconds["segment"] = segment_seconds * count / max(1, sum(counts))
        return detected, seconds, failed

    def outcomes(self, batches: Iterator[list[ImageJob]], pool: Executor):
        """``(job, record or exception)`` of every image of ``batches``, as each is done. The
        networks run on this thread, one batch at a time, while the pool's threads read the next
        batch. On a GPU they also map back, stitch, measure and write the previous batch
        meanwhile; on the CPU that is done here, in order, after each batch's networks: the
        networks use every core given to them, and a thread beside them made the 20 images of a
        run 7 % slower on this 2-core machine (docs/results.md, "Whole processes")."""
        beside = InlineExecutor() if self.models.on_cpu else pool
        loading = [pool.submit(self.load, job) for job in next(batches, [])]
        finishing: list[Future] = []
        while loading:
            loaded = loading
            loading = [pool.submit(self.load, job) for job in next(batches, [])]
            detected, seconds, failed = self.networks(loaded, beside)
            yield from failed
            yield from (future.result() for future in finishing)
            finishing = [
                beside.submit(self.finish, item, item_seconds)
                for item, item_seconds in zip(detected, seconds, strict=True)
            ]
        yield from (future.result() for future in finishing)

    def record(self, job: ImageJob, outcome: dict | BaseException) -> None:
        """Record one image's outcome (``outcomes``)."""
        if isinstance(outcome, BaseException):
            self.fail(job, outcome)
        else:
            self.succeed(job, outcome, "done")

    def process(self, batch: list[ImageJob], pool: Executor, progress) -> None:
        """One batch of images, start to end (``outcomes``), recorded."""
        for job, outcome in self.outcomes(iter([batch]), pool):
            self.record(job, outcome)
            progress.update()

    def pending(self, resume: bool) -> list[ImageJob]:
        """The jobs still to do; with ``resume``, complete ones are recorded as resumed."""
        todo = []
        for job in self.jobs:
            record = read_record(self.out_dir, job, self.stamps[job.image]) if resume else None
            if record is None:
                todo.append(job)
            else:
                self.succeed(job, record, "resumed")
        return todo

    def run(self, resume: bool) -> RunSummary:
        self.manifest["startup_seconds"] = process_age()  # imports and models: before any image
        todo = self.pending(resume)
        processes = forked_processes(self.config.batch.processes, self.models, len(todo))
        size = max(1, self.config.batch.images)
        if processes > 1:
            size = group_size(len(todo), processes, size)
        batches = [todo[first : first + size] for first in range(0, len(todo), size)]
        self.manifest["engine"] = {"name": "inprocess", "processes": processes}
        with ThreadPoolExecutor(max_workers=self.workers) as pool:
            if processes > 1:  # forked before any thread of this run starts
                import pipeline.measure  # noqa: F401  (imported once, here, not in each worker)
                import pipeline.outputs  # noqa: F401

                outcomes = forked_outcomes(self, batches, processes)
            else:
                outcomes = self.outcomes(iter(batches), pool)
            progress = self.tqdm(
                total=len(self.jobs), initial=self.summary.resumed, unit="image", disable=self.quiet
            )
            written = time.perf_counter()
            for job, outcome in outcomes:
                self.record(job, outcome)
                progress.update()
                if time.perf_counter() - written > MANIFEST_EVERY_S:
                    self.write_manifest()
                    written = time.perf_counter()
        progress.close()
        from pipeline.measure import column_names

        channels = list(self.jobs[0].channels) if self.jobs else []
        header = column_names(channels, self.pixel_size is not None)
        self.summary.chromosomes = assemble(self.jobs, self.out_dir, self.records, header)
        self.summary.seconds = time.perf_counter() - self.started
        self.manifest["finished"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.write_manifest()
        return self.summary


def group_size(images: int, workers: int, batch_images: int) -> int:
    """Images per group handed to one of ``workers`` processes: the in-process batch size
    (``batch.images``), but small enough that every worker gets at least two groups (so that
    none waits idle for the last one)."""
    return max(1, min(batch_images, math.ceil(images / (2 * max(1, workers)))))


def run_batch(
    jobs: list[ImageJob],
    models: Models,
    config: PipelineConfig,
    out_dir: str | Path,
    pixel_size: float | None = None,
    resume: bool = False,
    quiet: bool = False,
    workers: int = 1,
    command: list[str] | None = None,
) -> RunSummary:
    """Process ``jobs`` into ``out_dir`` (module docstring); never raises for a bad image.

    ``workers`` threads read the next batch of images while the networks run on the current one
    and, where the networks run on a GPU (``Models.on_cpu`` false), stitch, measure and write the
    previous one meanwhile. Where they run on the CPU (Linux), ``batch.processes`` forked worker
    processes share the images, one core each (``pipeline.forked``), with the same outputs.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _BatchRun(jobs, models, config, out_dir, pixel_size, workers, command, quiet).run(resume)
