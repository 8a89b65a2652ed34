"""The ``chromoseg`` command: a thin argparse layer; each stage registers its own subcommands.

Every stage module named in ``STAGE_CLIS`` has ``register(groups)``, where ``groups`` maps
``"top"``, ``"train"`` and ``"eval"`` to argparse sub-parser collections. A registered parser sets
``func`` to a callable taking the parsed arguments and returning an exit code. Heavy imports
(torch) happen inside those callables, so ``chromoseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import importlib
import logging
import multiprocessing
import os
import sys

from pipeline import __version__
from pipeline.core.errors import InputError

STAGE_CLIS = (
    "segmenter.cli",
    "detector.cli",
    "pipeline.run_cli",
    "pipeline.report",
    "pipeline.export",
    "pipeline.synth",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="chromoseg",
        description="Separate overlapping chromosomes in metaphase images and measure them.",
    )
    parser.add_argument("--version", action="version", version=f"chromoseg {__version__}")
    top = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    train = top.add_parser("train", help="train a stage on your own data")
    evaluate = top.add_parser("eval", help="evaluate a stage on labelled data")
    groups = {
        "top": top,
        "train": train.add_subparsers(dest="stage", required=True, metavar="STAGE"),
        "eval": evaluate.add_subparsers(dest="stage", required=True, metavar="STAGE"),
    }
    for name in STAGE_CLIS:
        importlib.import_module(name).register(groups)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except InputError as error:
        print(f"chromoseg: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("chromoseg: interrupted", file=sys.stderr)
        return 130


def keep_freed_memory() -> None:
    """Ask glibc's malloc to keep freed blocks of up to 32 MB (crops, probabilities, image
    planes) for the next image instead of giving them back to the kernel, which zeroes every page
    of the next array again on first touch: on this machine a 20-image run took 189,000-212,000
    page faults and 1.0-1.7 s of system time without this, 131,000 and 0.7 s with it
    (docs/results.md, "Whole processes"). Nothing happens off Linux or where the C library has
    no ``mallopt``."""
    if not sys.platform.startswith("linux"):
        return
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return
    trim_threshold, top_pad, mmap_threshold = -1, -2, -3  # glibc's M_* parameters
    mallopt(mmap_threshold, 32 << 20)  # arrays below it come from the heap (32 MB: glibc's max)
    mallopt(trim_threshold, 1 << 30)  # the heap's free top is kept up to 1 GB
    mallopt(top_pad, 64 << 20)  # the heap grows 64 MB at a time


def entry() -> None:
    """The ``chromoseg`` program: ``main``, then exit. Every output is written and closed by
    then, so, with no child process left to wait for, it leaves without the interpreter's
    teardown (unloading torch takes about 0.17 s: docs/results.md, "Whole processes"); with one
    (a data loader, dask), after freezing the objects left, which spares the last garbage
    collections a walk through torch's. The process keeps freed memory (``keep_freed_memory``)."""
    keep_freed_memory()
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    if not multiprocessing.active_children():
        logging.shutdown()
        os._exit(code)
    gc.freeze()
    sys.exit(code)


if __name__ == "__main__":
    entry()
