"""Command-line subcommands of the segmenter stage (registered by pipeline.cli):
``chromoseg train segmenter``, ``chromoseg eval segmenter``, ``chromoseg segment`` and
``chromoseg mine-singles``."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.core.resources import resource

DEFAULT_CONFIG = str(resource("configs", "segmenter.yaml"))
CROP_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".bmp")


def _train(args) -> int:
    from pipeline.core.engine import MODEL_FOLDER
    from segmenter.config import load_config
    from segmenter.train import train

    config = load_config(args.config)
    train(
        config,
        args.data,
        args.out,
        args.resume,
        args.epochs,
        args.device,
        args.h5,
        args.init,
        args.singles,
    )
    print(f"model folder: {Path(args.out) / MODEL_FOLDER}")
    return 0


def _load_model(args):
    """The model of ``--model`` on ``--device``, without its mirrored passes under
    ``--no-flip-average``."""
    from segmenter.api import load_model

    model = load_model(args.model, args.device)
    if args.no_flip_average:
        model.config.inference.views = 1
    return model


def _eval(args) -> int:
    from pipeline.core.adir import DatasetError
    from pipeline.core.modelfolder import SPLIT_FILE
    from segmenter import api, evaluate

    if args.data is None and args.h5 is None:
        raise DatasetError("give --data DIR (ADIR-format folder) and/or --h5 FILE")
    model = _load_model(args)
    folder = api.PRETRAINED if args.model is None else Path(args.model)
    split_file = folder / SPLIT_FILE
    split = json.loads(split_file.read_text()) if split_file.is_file() else None
    sets = evaluate.held_out_sets(
        args.data, split, model.config.data, args.h5, args.workers, args.part
    )
    labels = evaluate.predict(model, sets, args.batch_size or api.BATCH_SIZE)
    results = evaluate.score(sets, labels)
    print(evaluate.format_table(results))
    if args.montage:
        _write_montages(sets, labels, Path(args.montage))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


def _write_montages(sets: dict, labels: dict, folder: Path) -> None:
    """``<set>_worst.png`` in ``folder`` for every set with predicted ``labels``: its 24 worst
    crops."""
    from pipeline.core.files import write_png
    from segmenter import evaluate

    folder.mkdir(parents=True, exist_ok=True)
    for name, predicted in labels.items():
        images, targets = sets[name]
        chosen = evaluate.worst(predicted, targets)
        picture = evaluate.montage(images[chosen], targets[chosen], predicted[chosen])
        write_png(folder / f"{name}_worst.png", picture)
    print(f"montages of the worst crops (image | truth | prediction) in {folder}")


def read_crops(paths: list[str]):
    """Crops from ``.npy`` / ``.npz`` stacks (``(N, H, W)`` or ``(H, W)``; float taken as
    normalised [0, 1], integers scaled by their dtype's maximum; an .npz's first array) or image
    files (one crop each, scaled by the dtype's maximum). Crops not 88x88 are resized as
    ``segmenter.crops`` does. Returns float32 ``(N, 88, 88)``."""
    import cv2
    import numpy as np

    from pipeline.core.adir import DatasetError
    from pipeline.core.imageio import read_image, to_grey
    from segmenter.crops import CROP_SIZE

    stacks = []
    for name in paths:
        path = Path(name)
        if path.suffix == ".npy" or path.suffix == ".npz":
            if not path.is_file():
                raise DatasetError(f"{path}: no such file")
            array = np.load(path)
            array = array[array.files[0]] if path.suffix == ".npz" else array
        elif path.suffix.lower() in CROP_SUFFIXES:
            raw = read_image(path)
            array = to_grey(raw)
            if np.issubdtype(raw.dtype, np.integer):
                array = array / np.iinfo(raw.dtype).max
        else:
            raise DatasetError(f"{path}: crops must be .npy, .npz or image files {CROP_SUFFIXES}")
        if np.issubdtype(array.dtype, np.integer):
            array = array / np.iinfo(array.dtype).max
        array = np.asarray(array, np.float32)
        array = array[None] if array.ndim == 2 else array
        if array.ndim != 3 or min(array.shape[1:], default=0) < 2:
            raise DatasetError(f"{path}: crops must be (N, H, W) or (H, W), got {array.shape}")
        for crop in array:
            if crop.shape != (CROP_SIZE, CROP_SIZE):
                shrinking = max(crop.shape) > CROP_SIZE
                crop = cv2.resize(
                    crop,
                    (CROP_SIZE, CROP_SIZE),
                    interpolation=cv2.INTER_AREA if shrinking else cv2.INTER_LINEAR,
                )
            stacks.append(crop)
    return np.stack(stacks)


def _segment(args) -> int:
    import numpy as np

    from pipeline.core.files import write_png
    from segmenter.api import BATCH_SIZE, segment

    crops = read_crops(args.crops)
    model = _load_model(args)
    labels, probabilities = segment(model, crops, args.batch_size or BATCH_SIZE)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.format in ("npy", "both"):
        np.save(out / "labels.npy", labels)
        if args.probabilities:
            np.save(out / "probabilities.npy", probabilities)
    if args.format in ("png", "both"):
        for index, label in enumerate(labels):
            write_png(out / f"labels_{index:05d}.png", label)
    print(f"{len(labels)} crops segmented into {out}")
    return 0


def _mine(args) -> int:
    from pipeline.inputs import find_jobs
    from segmenter.mining import write_mined

    out = Path(args.out)
    jobs = find_jobs(args.images, exclude=out)
    total = 0
    for job in jobs:
        name = job.key.replace("/", "__")
        count = write_mined(job.path, name, out)
        total += count
        print(f"{job.image}: {count} single chromosomes")
    print(f"{total} single chromosomes from {len(jobs)} images in {out}")
    return 0


def _add_inference_options(parser) -> None:
    """Options shared by ``eval segmenter`` and ``segment``: which model runs where, and how."""
    parser.add_argument("--model", help="model folder (default: the shipped model)")
    parser.add_argument("--device", help="cpu, cuda (default: cuda when available, else cpu)")
    parser.add_argument(
        "--batch-size", type=int, help="crops per network call (default: 16, the fastest here)"
    )
    parser.add_argument(
        "--no-flip-average",
        action="store_true",
        help="the network's single pass alone, without the mirrored passes that the "
        "model's config (inference.views) asks for",
    )


def register(groups) -> None:
    """Add this stage's subcommands to groups (see pipeline.cli)."""
    train = groups["train"].add_parser(
        "segmenter",
        help="train the overlap U-Net on an ADIR-format folder",
        description="Train the overlap U-Net (88x88 cluster crops -> background, chromosome A, "
        "chromosome B, overlap) on real clusters and synthetic pairs of an ADIR-format folder, "
        "split by slide (data/adir_split.json, or a fresh split for unknown slides). Writes a "
        "model folder (config.yaml, weights.pt of the best validation epoch or, with "
        "train.keep: last, of the last, metrics.json of the test split, train_log.csv) plus "
        "checkpoint.pt every epoch.",
    )
    train.add_argument(
        "--config", default=DEFAULT_CONFIG, help=f"YAML config (default: {DEFAULT_CONFIG})"
    )
    train.add_argument("--data", required=True, help="ADIR-format folder (*D.tif + *K.tif)")
    train.add_argument("--h5", help="also train on a LowRes_13434_overlapping_pairs.h5-style file")
    train.add_argument(
        "--singles",
        action="append",
        default=[],
        metavar="DIR",
        help="also lay these single chromosomes into synthetic clusters: a folder written by "
        "chromoseg mine-singles, or any ADIR-format folder (repeatable)",
    )
    train.add_argument(
        "--out",
        default="runs/segmenter",
        help="run folder; the model goes to OUT/model (default: runs/segmenter)",
    )
    train.add_argument("--resume", action="store_true", help="continue from --out/checkpoint.pt")
    train.add_argument("--epochs", type=int, help="override the config's epoch count")
    train.add_argument(
        "--init",
        metavar="MODEL_DIR",
        help="start from this model folder's weights (fine-tune, e.g. segmenter/pretrained on "
        "your own slides); its network must be the config's",
    )
    train.add_argument("--device", help="cpu, cuda (default: cuda when available, else cpu)")
    train.set_defaults(func=_train)

    evaluate = groups["eval"].add_parser(
        "segmenter",
        help="per-class IoU/Dice of a segmenter model on held-out data",
        description="Per-class IoU and Dice pooled over all held-out pixels at 88x88, with A/B "
        "as labelled and permutation-invariant, on the test (or --part val) slides' clusters "
        "(two chromosomes, two or more, all), synthetic pairs of the same slides, and an h5 "
        "file's test part. A folder whose slides the split does not know is evaluated whole.",
    )
    _add_inference_options(evaluate)
    evaluate.add_argument("--data", help="ADIR-format folder")
    evaluate.add_argument(
        "--part",
        choices=("val", "test"),
        default="test",
        help="which held-out slides of the model's split (default: test; val to choose "
        "settings without looking at the test slides)",
    )
    evaluate.add_argument("--h5", help="LowRes_13434_overlapping_pairs.h5-style file")
    evaluate.add_argument("--json", help="write every printed figure to this JSON file")
    evaluate.add_argument(
        "--montage",
        metavar="DIR",
        help="write <set>_worst.png here for every set: its 24 worst crops, image | truth | "
        "prediction (A red, B blue, overlap white, ignored green)",
    )
    evaluate.add_argument(
        "--workers", type=int, default=1, help="processes preparing crops (default: 1)"
    )
    evaluate.set_defaults(func=_eval)

    segment = groups["top"].add_parser(
        "segment",
        help="segment cluster crops (88x88) into A / B / overlap label maps",
        description="Segment crops: .npy/.npz stacks (N, H, W) (float = normalised [0, 1], "
        "chromosomes bright) or image files, one crop each. Writes labels.npy (N, 88, 88) "
        "uint8 and/or labels_NNNNN.png (values 0 background, 1 A, 2 B, 3 overlap).",
    )
    segment.add_argument("crops", nargs="+", help=".npy/.npz stacks or crop image files")
    _add_inference_options(segment)
    segment.add_argument("--out", default="segmented", help="output folder (default: segmented)")
    segment.add_argument(
        "--format", choices=("npy", "png", "both"), default="npy", help="default: npy"
    )
    segment.add_argument(
        "--probabilities",
        action="store_true",
        help="also write probabilities.npy (N, 4, 88, 88) float32",
    )
    segment.set_defaults(func=_segment)

    mine = groups["top"].add_parser(
        "mine-singles",
        help="find single chromosomes in unlabelled images, for training the segmenter",
        description="Find isolated, elongated foreground pieces of single-chromosome size in "
        "unlabelled metaphase images (any stain: polarity is automatic) and write them in the "
        "ADIR format, one folder per image (D.tif, K.tif with the singles, Case Info, and "
        "_singles.png to check by eye). Train on them with chromoseg train segmenter --singles "
        "DIR: the segmenter adapts to your microscope without a drawn label.",
    )
    mine.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    mine.add_argument("--out", required=True, help="output folder")
    mine.set_defaults(func=_mine)
