"""What ``chromoseg run`` imports, and how long it takes: ``python -X importtime``, summed.

    python benchmarks/importtime.py [--tree DIR] [--repeats 3] [--json OUT]

Runs ``python -X importtime -m pipeline.cli run IMAGE --out TMP --quiet`` on one ADIR sample
``--repeats`` times in a fresh process each, with the source tree ``--tree`` (default: this one;
another checkout, e.g. ``git worktree add /tmp/before COMMIT``, gives the before figures) first on
the import path. Prints, as medians over the repeats: the process's wall time, the time spent
importing, and per package the time its own modules took to import (``self`` times summed;
torch's compiler, ``torch._dynamo``, apart from the rest of torch). Writes them to ``--json``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from pipeline.core.files import write_json

ROOT = Path(__file__).resolve().parents[1]
IMAGE = ROOT / "data" / "samples" / "adir" / "A02__XY" / "A0201XYD.tif"


def seconds_by_package(stderr: str) -> dict[str, float]:
    """Seconds of ``-X importtime`` output per package (the first part of each module's name;
    ``torch._dynamo`` on its own), each module's own time (``self``): they add up to the whole
    import time, with no module counted twice (torch's modules count for torch whichever package
    imported them)."""
    seconds = defaultdict(float)
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, _, name = line[len("import time:") :].split("|")
        name = name.strip()
        package = "torch._dynamo" if name.startswith("torch._dynamo") else name.split(".")[0]
        seconds[package] += int(own) / 1e6
    return dict(seconds)


def one_run(tree: Path) -> tuple[float, dict[str, float]]:
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-X", "importtime", "-m", "pipeline.cli", "run", str(IMAGE)]
        env = {**os.environ, "PYTHONPATH": str(tree)}
        started = time.perf_counter()
        process = subprocess.run(
            [*command, "--out", out, "--quiet"], env=env, cwd=tree, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
    if process.returncode != 0:
        raise SystemExit(process.stderr.splitlines()[-1])
    return wall, seconds_by_package(process.stderr)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tree", type=Path, default=ROOT, help="source tree to run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args(argv)
    runs = [one_run(args.tree.resolve()) for _ in range(args.repeats)]
    packages = sorted({name for _, seconds in runs for name in seconds})
    median = {
        name: statistics.median(seconds.get(name, 0.0) for _, seconds in runs) for name in packages
    }
    results = {
        "tree": str(args.tree),
        "repeats": args.repeats,
        "process_seconds": [wall for wall, _ in runs],
        "median_process_seconds": statistics.median(wall for wall, _ in runs),
        "median_import_seconds": statistics.median(sum(seconds.values()) for _, seconds in runs),
        "median_seconds_by_package": dict(sorted(median.items(), key=lambda item: -item[1])),
    }
    print(
        f"{args.tree}: process {results['median_process_seconds']:.2f} s, importing "
        f"{results['median_import_seconds']:.2f} s (medians of {args.repeats})"
    )
    for name, seconds in list(results["median_seconds_by_package"].items())[:12]:
        print(f"  {name:24} {seconds:6.3f} s")
    if args.json:
        write_json(args.json, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
