"""``chromoseg run`` and ``chromoseg eval pipeline`` (registered by pipeline.cli)."""

from __future__ import annotations

import argparse
import sys
from functools import partial
from pathlib import Path

from pipeline.core.config import to_dict
from pipeline.core.errors import InputError
from pipeline.core.resources import resource

SAMPLES = resource("data", "samples")
DEFAULT_OUT = "chromoseg-results"


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}")
    return value


def scale_argument(text: str):
    """argparse type of ``--scale``: ``auto`` or a positive number (``run``, ``eval pipeline``,
    ``detect``)."""
    return "auto" if text == "auto" else _positive_float(text)


def _add_model_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="pipeline YAML (see configs/pipeline.yaml; any subset)")
    parser.add_argument(
        "--detector-model",
        metavar="DIR",
        help="detector model folder (default: the config's, else the shipped model)",
    )
    parser.add_argument(
        "--segmenter-model",
        metavar="DIR",
        help="segmenter model folder (default: the config's, else the shipped model)",
    )
    parser.add_argument(
        "--segmenter-model-dark",
        metavar="DIR",
        help="segmenter model folder for images whose chromosomes are dark, G-banded brightfield "
        "(default: the config's, else the shipped segmenter/pretrained_gband)",
    )
    parser.add_argument(
        "--scale",
        type=scale_argument,
        metavar="X",
        help="the factor both stages see every image at, instead of the config's (default auto: "
        "measured per image from its chromosome width)",
    )
    parser.add_argument(
        "--device",
        choices=("cpu", "cuda"),
        default=None,
        help="where the models run (default: cuda if available, else cpu)",
    )


def register(groups) -> None:
    """Add ``run`` and ``eval pipeline`` (see pipeline.cli)."""
    run = groups["top"].add_parser(
        "run",
        help="whole metaphase images in: separated chromosomes, tables and masks out",
        description="Detect chromosome clusters, separate overlapping chromosomes, measure each "
        "chromosome and write tables (CSV), COCO instances, label TIFFs, overlays and run.json. "
        "Exit status: 0 all images done, 1 some images failed (each named on stderr and in "
        "run.json; the others are done), 2 bad command line, config or model.",
    )
    run.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="image files, folders "
        "(searched recursively; one folder = one slide) or glob patterns "
        f"(default: the sample images in {SAMPLES})",
    )
    run.add_argument(
        "--out",
        metavar="DIR",
        default=DEFAULT_OUT,
        help=f"output folder (default: ./{DEFAULT_OUT})",
    )
    run.add_argument(
        "--pixel-size",
        type=_positive_float,
        metavar="UM",
        help="µm per pixel: adds µm and µm² columns",
    )
    run.add_argument(
        "--channel",
        action="append",
        default=[],
        metavar="NAME=PATTERN",
        help="an extra channel to measure under each chromosome, found beside "
        "each image by file name: {stem} is the image's name without suffix, e.g. "
        "fish={stem}_fish.tif (repeatable)",
    )
    run.add_argument(
        "--resume",
        action="store_true",
        help="skip images whose outputs in --out are complete (same settings)",
    )
    run.add_argument(
        "--workers",
        type=int,
        default=1,
        metavar="N",
        help="threads that read the next images while the networks run (default 1); on a GPU "
        "they also stitch, measure and write the previous ones",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument(
        "--engine",
        choices=("inprocess", "dask"),
        default="inprocess",
        help="inprocess (default), or dask: images spread over a dask.distributed cluster, "
        "--scheduler's or else a local one of --workers processes (see pipeline/distributed.py)",
    )
    run.add_argument("--scheduler", metavar="ADDRESS", help="dask scheduler, e.g. tcp://host:8786")
    _add_model_options(run)
    run.set_defaults(func=run_command)

    evaluate = groups["eval"].add_parser(
        "pipeline",
        help="end-to-end instance F1, IoU and count error on labelled metaphases",
        description="Evaluate detector + segmenter + stitching on ADIR-format labelled images "
        "(held-out test slides of the split file; every image of a folder whose slides it does "
        "not know), with the Otsu + connected-components baseline on the same images.",
    )
    evaluate.add_argument("--data", required=True, metavar="DIR", help="ADIR-format folder")
    evaluate.add_argument("--json", metavar="OUT", help="write every figure to this JSON file")
    evaluate.add_argument(
        "--part",
        default="test",
        choices=("train", "val", "test"),
        help="which slides of the split (default: test)",
    )
    evaluate.add_argument(
        "--true-segmentation",
        action="store_true",
        help="the ground truth stands in for the U-Net in every crop: what the detector, crop "
        "geometry and stitching alone reach (a ceiling for a perfect segmenter)",
    )
    _add_model_options(evaluate)
    evaluate.set_defaults(func=eval_command)


def _config_and_models(args):
    from pipeline.config import load_config
    from pipeline.models import load_models

    overrides = {}
    if args.detector_model:
        overrides["detector"] = {"model": args.detector_model}
    segmenter = {"model": args.segmenter_model, "model_dark": args.segmenter_model_dark}
    segmenter = {key: value for key, value in segmenter.items() if value}
    if segmenter:
        overrides["segmenter"] = segmenter
    if args.scale is not None:
        overrides["scale"] = args.scale
    config = load_config(args.config, **overrides)
    return config, load_models(config, args.device)


def run_command(args) -> int:
    from pipeline.inputs import find_jobs, parse_channels
    from pipeline.run import run_batch

    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    inputs = args.inputs or [str(SAMPLES)]
    if not args.inputs and not SAMPLES.is_dir():
        raise InputError(f"no INPUT given and no sample images in {SAMPLES}")
    jobs = find_jobs(inputs, parse_channels(args.channel), exclude=Path(args.out))
    config, models = _config_and_models(args)
    engine = run_batch
    if args.engine == "dask":
        from pipeline.distributed import run_dask

        engine = partial(run_dask, scheduler=args.scheduler, device=args.device)
    summary = engine(
        jobs,
        models,
        config,
        Path(args.out),
        pixel_size=args.pixel_size,
        resume=args.resume,
        quiet=args.quiet,
        workers=args.workers,
        command=sys.argv,
    )
    from pipeline.report import write_report

    write_report(Path(args.out))
    if not args.quiet:
        print(summary.text())
    return summary.exit_code


def eval_command(args) -> int:
    from tqdm import tqdm

    from pipeline.core.adir import find_images, select
    from pipeline.evaluate import evaluate

    images = select(find_images(args.data), args.part)
    config, models = _config_and_models(args)
    results = evaluate(
        images,
        models,
        config,
        progress=lambda items: tqdm(items, unit="image"),
        true_segmentation=args.true_segmentation,
    )
    results = {
        "data": str(args.data),
        "part": args.part,
        "true_segmentation": args.true_segmentation,
        "models": models.info,
        "crop_margin": models.margin,
        "config": to_dict(config),
        **results,
    }
    rows = [
        ("pipeline, all metaphases", results["pipeline"]),
        ("  unlabelled pieces not counted", results["pipeline_unlabelled_not_counted"]),
        ("  complete karyotypes only", results["pipeline_complete_karyotypes"]),
        *((f"  slide {slide}", figures) for slide, figures in results["per_slide"].items()),
        ("baseline (Otsu + components)", results["baseline"]),
    ]
    print(f"{len(images)} metaphases ({args.part} slides of {args.data})")
    print(
        f"{'':30} {'precision':>9} {'recall':>7} {'F1':>6} {'mean IoU':>8} {'|count err|<=1':>14}"
    )
    for name, figures in rows:
        print(
            f"{name:30} {figures['precision']:9.3f} {figures['recall']:7.3f} "
            f"{figures['f1']:6.3f} {figures['mean_matched_iou']:8.3f} "
            f"{figures['count_error']['within_1']:14.1%}"
        )
    print(
        f"count error (predicted - true) per metaphase: "
        f"{results['pipeline']['count_error']['histogram']}"
    )
    for name, key in (("all metaphases", "pipeline"), ("complete", "pipeline_complete_karyotypes")):
        errors = results[key]["errors"]
        print(
            f"why unmatched, {name}: true "
            + ", ".join(f"{kind} {count}" for kind, count in errors["true"].items())
            + "; predicted "
            + ", ".join(f"{kind} {count}" for kind, count in errors["predicted"].items())
        )
    if args.json:
        from pipeline.core.files import write_json

        write_json(Path(args.json), results)
    return 0
