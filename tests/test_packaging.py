"""The wheel carries what the commands need, and an installed chromoseg works from any folder."""

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_wheel_carries_the_configs_split_samples_and_models_and_runs_elsewhere(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(ROOT), "--no-deps", "--no-build-isolation"]
        + ["-q", "-w", str(tmp_path / "wheel")],
        check=True,
        capture_output=True,
    )
    (wheel,) = (tmp_path / "wheel").glob("chromoseg-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for name in (
        "pipeline/core/engine.py",
        "pipeline/shipped/configs/detector.yaml",
        "pipeline/shipped/configs/segmenter.yaml",
        "pipeline/shipped/configs/pipeline.yaml",
        "pipeline/shipped/data/adir_split.json",
        "pipeline/shipped/data/samples/adir/README.TXT",  # the samples' licence notices
        "pipeline/shipped/data/samples/gband/NOTICE.txt",
        "pipeline/shipped/data/samples/adir/A02__XY/A0201XYD.tif",
        "detector/pretrained/weights.pt",
        "segmenter/pretrained/weights.pt",
        "segmenter/pretrained_gband/weights.pt",
    ):
        assert name in names, name

    # installed apart from the checkout (its dependencies from this environment), run from an
    # empty folder with no arguments: the shipped samples are processed
    installed, elsewhere = tmp_path / "installed", tmp_path / "elsewhere"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(installed)]
        + [str(wheel)],
        check=True,
        capture_output=True,
    )
    elsewhere.mkdir()
    environment = {**os.environ, "PYTHONPATH": str(installed)}
    where = subprocess.run(
        [sys.executable, "-c", "import pipeline.core.resources as r; print(r.resource())"],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert Path(where) == installed / "pipeline" / "shipped"
    done = subprocess.run(
        [sys.executable, "-m", "pipeline.cli", "run", "--out", "out"],
        cwd=elsewhere,
        env=environment,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads((elsewhere / "out" / "run.json").read_text())
    assert str(installed) in json.dumps(summary["models"])  # the wheel's own models
    assert len(list((elsewhere / "out" / "images").rglob("*.labels.tif"))) == 4
