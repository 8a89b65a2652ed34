"""The Dask engine on a LocalCluster on loopback: same outputs as in-process, resume, dead
workers. Fake models (tests/test_pipeline_helpers.py) stand in for the trained stages."""

from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import dask
import numpy as np
import pytest
from test_pipeline_helpers import fake_models, scattered_bars, test_config, threshold_detect

from pipeline.inputs import find_jobs
from pipeline.models import Models
from pipeline.run import run_batch

distributed = pytest.importorskip("distributed")
from pipeline.distributed import run_dask, worker_models  # noqa: E402

FATAL_SHAPE = (140, 180)  # the dying detector kills its worker on images of this shape


def make_images(folder: Path, shapes=((160, 200),) * 4) -> list:
    for i, shape in enumerate(shapes):
        path = folder / f"slide{i % 2}" / f"m{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), scattered_bars(shape, 3, 2, seed=i + 2)[0])
    (folder / "slide0" / "empty.png").write_bytes(b"")  # fails the same way in both engines
    return find_jobs([str(folder)])


def output_files(out: Path) -> dict[str, bytes | dict]:
    """Every output file except run.json, by path relative to ``out``; the per-image records
    without their timings."""
    files = {}
    for path in sorted(out.rglob("*")):
        name = path.relative_to(out).as_posix()
        if name.startswith("images/") and path.suffix == ".json":
            files[name] = {**json.loads(path.read_text()), "seconds": None}
        elif path.is_file() and name != "run.json":
            files[name] = path.read_bytes()
    return files


def statuses(out: Path) -> list[tuple]:
    manifest = json.loads((out / "run.json").read_text())
    return [(entry["image"], entry["status"], entry["error"]) for entry in manifest["images"]]


@pytest.fixture(scope="module")
def scheduler():
    """The address of a 2-worker LocalCluster on 127.0.0.1 (processes, 1 thread each)."""
    with distributed.LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        yield cluster.scheduler_address


def test_same_outputs_as_in_process(tmp_path, scheduler):
    jobs = make_images(tmp_path / "in")
    config = test_config()
    run_batch(jobs, fake_models(), config, tmp_path / "local", quiet=True)
    summary = run_dask(
        jobs,
        fake_models(),
        config,
        tmp_path / "dask",
        quiet=True,
        scheduler=scheduler,
        loader=fake_models,
    )
    assert (summary.done, summary.failed) == (4, 1)
    local, remote = output_files(tmp_path / "local"), output_files(tmp_path / "dask")
    assert sorted(local) == sorted(remote) and len(local) == 2 + 4 * 4
    assert local == remote
    assert statuses(tmp_path / "local") == statuses(tmp_path / "dask")
    manifest = json.loads((tmp_path / "dask" / "run.json").read_text())
    assert manifest["engine"]["workers"] == 2
    assert "empty" in manifest["errors"][0]


def test_resume_redoes_only_missing_images(tmp_path, scheduler):
    jobs = make_images(tmp_path / "in")
    config, out = test_config(), tmp_path / "out"
    options = {"quiet": True, "scheduler": scheduler, "loader": fake_models}
    run_dask(jobs, fake_models(), config, out, **options)
    before = output_files(out)
    (out / "images" / "slide1" / "m1.json").unlink()  # as if killed before m1 was finished
    (out / "chromosomes.csv").unlink()
    summary = run_dask(jobs, fake_models(), config, out, resume=True, **options)
    assert (summary.done, summary.resumed, summary.failed) == (1, 3, 1)
    assert output_files(out) == before


def test_models_load_once_per_worker(scheduler):
    with distributed.Client(scheduler) as client:
        loads = client.run(lambda: worker_models(fake_models) is worker_models(fake_models))
    assert list(loads.values()) == [True, True]


def dying_detect(image: np.ndarray):
    """threshold_detect, except that it kills its worker process on an image of FATAL_SHAPE."""
    if image.shape == FATAL_SHAPE:
        os._exit(1)
    return threshold_detect(image)


def dying_models() -> Models:
    models = fake_models()
    models.detect = dying_detect
    return models


def test_a_dead_worker_loses_no_image(tmp_path):
    """m2 kills every worker that runs it (dask retries nothing here: allowed-failures 0). Its
    task, and any task lost with the same worker, is run again image by image: only m2 fails."""
    jobs = make_images(tmp_path / "in", [(160, 200), (160, 200), FATAL_SHAPE, (160, 200)])
    config = test_config()
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}):
        summary = run_dask(
            jobs,
            fake_models(),
            config,
            tmp_path / "dask",
            quiet=True,
            workers=2,
            loader=dying_models,
        )
    assert (summary.done, summary.failed) == (3, 2)
    failed = {image: error for image, status, error in statuses(tmp_path / "dask") if error}
    assert sorted(failed) == ["slide0/empty.png", "slide0/m2.png"]
    assert "every worker that ran it died" in failed["slide0/m2.png"]
    good = [job for job in jobs if job.image != "slide0/m2.png"]
    run_batch(good, fake_models(), config, tmp_path / "local", quiet=True)
    assert output_files(tmp_path / "local") == output_files(tmp_path / "dask")
