"""The ``chromoseg`` command: a thin argparse layer; each stage registers its own subcommands.

Every stage module named in ``STAGE_CLIS`` has ``register(groups)``, where ``groups`` maps
``"top"``, ``"train"`` and ``"eval"`` to argparse sub-parser collections. A registered parser sets
``func`` to a callable taking the parsed arguments and returning an exit code. Heavy imports
(torch) happen inside those callables, so ``chromoseg --help`` stays fast.
"""

from __future__ import annotations

import argparse
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


def entry() -> None:
    """The ``chromoseg`` program: ``main``, then exit. Every output is written and closed by
    then, so, with no child process left to wait for, it leaves without the interpreter's
    teardown (unloading torch takes about 0.17 s: docs/results.md, "Whole processes"); with one
    (a data loader, dask), after freezing the objects left, which spares the last garbage
    collections a walk through torch's."""
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
