"""``chromoseg export-training``: a run's results as training data, to fine-tune on your own slides.

Run ``chromoseg run``, correct the label TIFFs where the pipeline went wrong (napari or Fiji:
plane 0 holds each chromosome, plane 1 the second chromosome at overlap pixels; see
``pipeline.outputs``), then export: every image the run processed becomes an ADIR-format pair
(``pipeline.core.adir``) that ``chromoseg train detector|segmenter --init ...`` reads:

- ``<id>__<slide>/<image>D.tif``: the image as the run saw it (``pipeline.imageio.normalise``
  with the run's polarity, chromosomes bright), uint8;
- ``<id>__<slide>/<image>K.tif``: its chromosomes from the label TIFF
  (``pipeline.core.adir.labels_from_instances``: 255 at overlaps, colours 1..24 elsewhere).

ADIR names a slide by the first three characters of its folder, so each slide of the run gets a
three-digit ``<id>`` (001, 002, ... in sorted order); ``slides.json`` maps them back. Training
splits the exported folder by these slides (a fresh split, saved in the model folder).
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import tifffile

from pipeline.core.adir import labels_from_instances
from pipeline.core.errors import InputError
from pipeline.core.files import write_atomic, write_json
from pipeline.core.imageio import normalise, read_image

MANIFEST = "run.json"


def label_masks(planes: np.ndarray) -> np.ndarray:
    """Chromosome masks bool ``(N, H, W)`` of a label image: the 2-plane uint16 ``(2, H, W)`` of
    ``chromoseg run`` (chromosome ``i`` is ``plane0 == i | plane1 == i``) or a single plane
    ``(H, W)`` of instance ids (0 background). Ids without pixels are skipped."""
    planes = np.asarray(planes)
    planes = planes[None] if planes.ndim == 2 else planes
    if planes.ndim != 3 or len(planes) > 2:
        raise InputError(f"a label image must be (H, W) or (2, H, W), got {planes.shape}")
    ids = np.unique(planes)
    ids = ids[ids > 0]
    return (
        np.stack([(planes == i).any(axis=0) for i in ids])
        if len(ids)
        else np.zeros((0, *planes.shape[1:]), bool)
    )


def _name(text: str) -> str:
    """A file-system-safe version of a slide or image name."""
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_") or "image"


def export_run(run_dir: str | Path, out_dir: str | Path) -> dict:
    """Write the ADIR-format training folder of a run's processed images into ``out_dir``;
    returns ``slides.json``'s content ``{id: {"slide", "images": [{"image", "file", "name"}]}}``.
    Raises InputError when ``run_dir`` is not a run's output folder or has no processed image."""
    from pipeline.outputs import read_label_tiff  # pandas: not at import (``chromoseg`` imports us)

    run_dir, out_dir = Path(run_dir), Path(out_dir)
    if not (run_dir / MANIFEST).is_file():
        raise InputError(f"{run_dir}: no {MANIFEST}: not the output folder of chromoseg run")
    manifest = json.loads((run_dir / MANIFEST).read_text())
    done = [entry for entry in manifest["images"] if entry["status"] == "done"]
    if not done:
        raise InputError(f"{run_dir}: the run processed no image")
    polarity = manifest["config"]["polarity"]
    slides = sorted({entry["slide"] for entry in done})
    ids = {slide: f"{number:03d}" for number, slide in enumerate(slides, start=1)}
    record = {ids[slide]: {"slide": slide, "images": []} for slide in slides}
    for entry in done:
        folder = out_dir / f"{ids[entry['slide']]}__{_name(entry['slide'])}"
        folder.mkdir(parents=True, exist_ok=True)
        image = np.round(normalise(read_image(entry["file"]), polarity) * 255).astype(np.uint8)
        masks = label_masks(read_label_tiff(run_dir / entry["outputs"]["labels"]))
        if masks.shape[1:] != image.shape:
            raise InputError(
                f"{entry['outputs']['labels']} is {masks.shape[1:]}, its image {image.shape}"
            )
        name = _name(Path(entry["image"]).stem)
        names = [item["name"] for item in record[ids[entry["slide"]]]["images"]]
        if name in names:  # two images of one slide with one stem (m0.png, m0.tif)
            name = f"{name}_{len(names) + 1}"
        for suffix, array in (("D", image), ("K", labels_from_instances(masks))):
            write_atomic(
                folder / f"{name}{suffix}.tif",
                lambda temporary, array=array: tifffile.imwrite(temporary, array),
            )
        record[ids[entry["slide"]]]["images"].append(
            {"image": entry["image"], "file": entry["file"], "name": name}
        )
    write_json(out_dir / "slides.json", record)
    return record


def register(groups) -> None:
    """Add ``chromoseg export-training`` (see pipeline.cli)."""
    parser = groups["top"].add_parser(
        "export-training",
        help="turn a run's (corrected) label TIFFs into an ADIR-format training folder",
        description="Write every image a `chromoseg run` processed, with the chromosomes of its "
        "label TIFF (as the run wrote it, or as you corrected it in napari or Fiji), as an "
        "ADIR-format pair (*D.tif + *K.tif) under OUT, one folder per slide, for `chromoseg "
        "train detector|segmenter --data OUT --init ...`. OUT/slides.json maps the three-digit "
        "slide ids back to the run's slides.",
    )
    parser.add_argument("run", metavar="RUN_DIR", help="output folder of chromoseg run")
    parser.add_argument("--out", required=True, help="training folder to write")
    parser.set_defaults(func=export_command)


def export_command(args) -> int:
    record = export_run(args.run, args.out)
    images = sum(len(slide["images"]) for slide in record.values())
    print(f"{images} images of {len(record)} slides exported to {args.out}")
    return 0
