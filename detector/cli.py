"""Command-line subcommands of the detector stage (registered by pipeline.cli).

- ``chromoseg train detector --config configs/detector.yaml --data DIR [--resume] [--out DIR]
  [--epochs N] [--device cpu|cuda] [--init MODEL_DIR] [--synthetic DIR ...]
  [--synthetic-val DIR ...]``
- ``chromoseg eval detector [--model DIR] --data DIR [--part test] --json OUT
  [--predictions PRED.json] [--overlays DIR]``
- ``chromoseg detect INPUT... --out DIR [--model DIR] [--polarity auto|bright|dark]
  [--threshold T] [--scale auto|S]``: ``<stem>.boxes.json`` and ``<stem>.overlay.png`` per image.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from pipeline.core.resources import resource
from pipeline.run_cli import scale_argument

IMAGE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp")


def register(groups) -> None:
    """Add this stage's subcommands to groups (see pipeline.cli)."""
    train = groups["train"].add_parser("detector", help="train the cluster detector")
    train.add_argument(
        "--config",
        default=str(resource("configs", "detector.yaml")),
        help="YAML config (default: the shipped configs/detector.yaml)",
    )
    train.add_argument("--data", required=True, help="ADIR-format folder (*D.tif + *K.tif)")
    train.add_argument(
        "--out",
        default="runs/detector",
        help="run folder; the model goes to OUT/model (default: runs/detector)",
    )
    train.add_argument("--resume", action="store_true", help="continue from OUT/checkpoint.pt")
    train.add_argument("--epochs", type=int, help="override the config's train.epochs")
    train.add_argument("--device", choices=("cpu", "cuda"), help="default: cuda if available")
    train.add_argument(
        "--init",
        metavar="MODEL_DIR",
        help="start from this model folder's weights (fine-tune, e.g. detector/pretrained on "
        "your own slides); its model section must be the config's",
    )
    train.add_argument(
        "--synthetic",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of synthetic metaphases (chromoseg synth) to train on beside --data "
        "(repeatable)",
    )
    train.add_argument(
        "--synthetic-val",
        action="append",
        default=[],
        metavar="DIR",
        help="a folder of synthetic metaphases to validate on beside the val slides (repeatable)",
    )
    train.set_defaults(func=run_train)

    evaluate = groups["eval"].add_parser("detector", help="evaluate the detector and a baseline")
    evaluate.add_argument("--model", help="model folder (default: the shipped model)")
    evaluate.add_argument("--data", required=True, help="ADIR-format folder (*D.tif + *K.tif)")
    evaluate.add_argument(
        "--part",
        default="test",
        choices=("train", "val", "test"),
        help="split part to evaluate (unknown slides: every image)",
    )
    evaluate.add_argument("--json", required=True, help="write the metrics here")
    evaluate.add_argument("--predictions", help="write every box in COCO results format here")
    evaluate.add_argument(
        "--overlays",
        metavar="DIR",
        help="write a picture per image here: boxes that match a true cluster green, false "
        "positives red, missed true clusters yellow",
    )
    evaluate.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    evaluate.set_defaults(func=run_eval)

    detect = groups["top"].add_parser("detect", help="find chromosome clusters in images")
    detect.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders")
    detect.add_argument("--out", required=True, help="output folder")
    detect.add_argument("--model", help="model folder (default: the shipped model)")
    detect.add_argument(
        "--polarity",
        default="auto",
        choices=("auto", "bright", "dark"),
        help="chromosomes bright (DAPI), dark (G-banding), or guess (default)",
    )
    detect.add_argument("--threshold", type=float, help="score threshold (default: the model's)")
    detect.add_argument(
        "--scale",
        type=scale_argument,
        default="auto",
        help="resize images by this before detecting, times the model's input_scale (default "
        "auto: measured per image from its chromosome width, as chromoseg run does)",
    )
    detect.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    detect.set_defaults(func=run_detect)


def run_train(args) -> int:
    from detector.config import load_config
    from detector.train import train

    config = load_config(args.config)
    folder = train(
        config,
        args.data,
        args.out,
        args.epochs,
        args.resume,
        args.device,
        args.init,
        args.synthetic,
        args.synthetic_val,
    )
    print(f"model folder: {folder}")
    print((folder / "metrics.json").read_text())
    return 0


def run_eval(args) -> int:
    from detector.api import load_model
    from detector.evaluate import evaluate
    from pipeline.core import adir

    model = load_model(args.model, args.device)
    chosen = adir.select(adir.find_images(args.data), args.part)
    if not chosen:
        raise adir.DatasetError(f"no labelled images of the {args.part} slides under {args.data}")
    overlays = Path(args.overlays) if args.overlays else None
    metrics, predictions = evaluate(model, chosen, args.part, overlays)
    text = json.dumps(metrics, indent=2)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(text + "\n")
    if args.predictions:
        Path(args.predictions).parent.mkdir(parents=True, exist_ok=True)
        Path(args.predictions).write_text(json.dumps(predictions) + "\n")
    print(text)
    return 0


def expand(inputs: list[str]) -> list[Path]:
    """Files as given; folders replaced by the image files directly inside them (sorted)."""
    paths = []
    for name in inputs:
        path = Path(name)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            paths.append(path)
    return paths


def run_detect(args) -> int:
    from detector.api import RED, detect, draw_boxes, load_model
    from pipeline.core.files import write_png
    from pipeline.core.imageio import ImageReadError, normalise, read_image
    from pipeline.scale import image_scale

    model = load_model(args.model, args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    failures, used = 0, set()
    for path in expand(args.inputs):
        try:
            image = normalise(read_image(path), args.polarity)
        except ImageReadError as error:  # report it and go on with the other images
            print(f"chromoseg: error: {error}", file=sys.stderr)
            failures += 1
            continue
        scale, width = image_scale(image, args.scale)
        input_scale = scale * model.config.model.input_scale
        boxes, scores = detect(model, image, args.threshold, input_scale)
        record = {
            "file": str(path),
            "height": image.shape[0],
            "width": image.shape[1],
            "polarity": args.polarity,
            "input_scale": input_scale,
            "chromosome_width_px": width,
            "score_threshold": model.score_threshold if args.threshold is None else args.threshold,
            "boxes_xyxy": [[round(v, 2) for v in box] for box in boxes.tolist()],
            "scores": [round(s, 5) for s in scores.tolist()],
        }
        stem = path.stem
        while stem in used:  # same name from another folder: do not overwrite
            stem += "_"
        used.add(stem)
        (out / f"{stem}.boxes.json").write_text(json.dumps(record, indent=1) + "\n")
        write_png(out / f"{stem}.overlay.png", draw_boxes(image, (boxes, RED)))
        print(f"{path}: {len(boxes)} clusters")
    return 2 if failures else 0
