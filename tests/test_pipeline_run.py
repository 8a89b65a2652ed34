"""The batch engine and ``chromoseg run``: inputs, outputs, bad input, resume, determinism."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pytest
import tifffile
from test_pipeline_helpers import (
    BRIGHT,
    DIM,
    crossing_pair,
    fake_models,
    paint,
    scattered_bars,
    test_config,
)

from pipeline.cli import main
from pipeline.core.errors import InputError
from pipeline.core.files import write_atomic
from pipeline.inputs import find_jobs, parse_channels
from pipeline.outputs import decode_segmentation, read_label_tiff
from pipeline.run import run_batch

ROOT = Path(__file__).resolve().parent.parent


def metaphase(index: int, shape=(160, 200)) -> np.ndarray:
    """Seven bars, four of them in crossing pairs. (Seed 1 would leave the fake segmenter a
    29-pixel rim that counts as an eighth chromosome: the seeds start at 2.)"""
    return scattered_bars(shape, 3, 2, seed=index + 2)[0]


def make_slides(folder: Path, count: int = 5) -> list[Path]:
    paths = []
    for i in range(count):
        path = folder / f"slide{i % 2}" / f"m{i}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(path), metaphase(i))
        paths.append(path)
    return paths


def run(folder: Path, out: Path, models=None, config=None, **options):
    jobs = find_jobs([str(folder)], parse_channels(options.pop("channels", [])))
    config = config or test_config()
    return run_batch(jobs, models or fake_models(), config, out, quiet=True, **options)


def test_inputs_folders_globs_files_and_what_is_skipped(tmp_path):
    make_slides(tmp_path / "data", 3)
    adir = tmp_path / "data" / "A01__XY"
    adir.mkdir()
    cv2.imwrite(str(adir / "A0101XYD.tif"), metaphase(0))
    cv2.imwrite(str(adir / "A0101XYK.tif"), metaphase(1))  # ADIR labels: skipped
    cv2.imwrite(str(adir / "A0101XYD_fish.tif"), metaphase(2))  # its extra channel
    (tmp_path / "data" / "notes.txt").write_text("not an image")  # folders: images only
    jobs = find_jobs([str(tmp_path / "data")], parse_channels(["fish={stem}_fish.tif"]))
    assert [job.image for job in jobs] == [
        "A01__XY/A0101XYD.tif",
        "slide0/m0.png",
        "slide0/m2.png",
        "slide1/m1.png",
    ]
    assert [job.slide for job in jobs] == ["A01__XY", "slide0", "slide0", "slide1"]
    assert jobs[0].channels == {"fish": adir / "A0101XYD_fish.tif"}
    assert jobs[1].key == "slide0/m0"
    globbed = find_jobs([str(tmp_path / "data" / "slide*" / "*.png")])
    assert [job.image for job in globbed] == ["slide0/m0.png", "slide0/m2.png", "slide1/m1.png"]
    both = find_jobs(
        [
            str(tmp_path / "data" / "slide0"),
            str(tmp_path / "data" / "slide1"),
            str(tmp_path / "data" / "notes.txt"),
            str(tmp_path / "missing.png"),
        ]
    )
    assert [job.image for job in both] == ["m0.png", "m1.png", "m2.png", "missing.png", "notes.txt"]
    cv2.imwrite(str(tmp_path / "m0.png"), metaphase(0))
    clash = find_jobs([str(tmp_path / "data" / "slide0"), str(tmp_path / "m0.png")])
    assert len({job.image for job in clash}) == len({job.key for job in clash}) == 3
    with pytest.raises(InputError):
        find_jobs([str(tmp_path / "data" / "*.jpg")])
    inside = find_jobs([str(tmp_path / "data")], exclude=tmp_path / "data" / "slide1")
    assert "slide1/m1.png" not in {job.image for job in inside}
    for bad in (["fish"], ["fish=x.tif"], ["dapi={stem}.tif"], ["a b={stem}.tif"]):
        with pytest.raises(InputError):
            parse_channels(bad)


def test_outputs_of_a_run(tmp_path):
    make_slides(tmp_path / "data", 3)
    summary = run(tmp_path / "data", tmp_path / "out", pixel_size=0.2)
    assert summary.exit_code == 0 and summary.done == 3 and summary.chromosomes == 21
    out = tmp_path / "out"
    table = pd.read_csv(out / "chromosomes.csv")
    assert len(table) == 21 and list(table["image"].unique()) == [
        "slide0/m0.png",
        "slide0/m2.png",
        "slide1/m1.png",
    ]
    assert {"length_um", "area_um2", "mean_width_um"} <= set(table.columns)
    coco = json.loads((out / "instances.json").read_text())
    assert [image["file_name"] for image in coco["images"]] == list(table["image"].unique())
    assert len(coco["annotations"]) == 21
    for image in coco["images"]:
        key = Path(image["file_name"]).with_suffix("")
        planes = read_label_tiff(out / "images" / f"{key}.labels.tif")
        assert planes.shape == (2, image["height"], image["width"])
        with tifffile.TiffFile(out / "images" / f"{key}.labels.tif") as tiff:
            # one deflate page per plane, no ImageJ hyperstack header (ImageJ would read that
            # as contiguous uncompressed data)
            assert len(tiff.pages) == 2 and not tiff.is_imagej
            assert {page.compression for page in tiff.pages} == {tifffile.COMPRESSION.ADOBE_DEFLATE}
        per_image = pd.read_csv(out / "images" / f"{key}.csv")
        annotations = [a for a in coco["annotations"] if a["image_id"] == image["id"]]
        assert len(per_image) == len(annotations) == 7
        for annotation in annotations:
            mask = decode_segmentation(annotation)
            chromosome = annotation["chromosome_id"]
            assert ((planes[0] == chromosome) | (planes[1] == chromosome))[mask].all()
            row = per_image[per_image["chromosome_id"] == chromosome].iloc[0]
            assert row["area_px"] == mask.sum() == annotation["area"]
        assert (out / "images" / f"{key}.overlay.png").is_file()
    manifest = json.loads((out / "run.json").read_text())
    assert [entry["status"] for entry in manifest["images"]] == ["done"] * 3
    assert manifest["errors"] == [] and manifest["pixel_size_um"] == 0.2
    assert manifest["images"][0]["outputs"]["overlay"] == "images/slide0/m0.overlay.png"
    # seconds from this process's start (pytest's, here) to the run's first image; Linux only
    if Path("/proc/self/stat").is_file():
        assert 0 < manifest["startup_seconds"] < 24 * 3600
    else:
        assert manifest["startup_seconds"] is None
    assert not list(out.rglob(".*tmp*"))


def test_images_with_dark_chromosomes_go_to_the_dark_segmenter(tmp_path):
    """A bright metaphase and the same metaphase inverted (G-band-like: dark chromosomes on a
    bright background) in one batch: the inverted one's crops, and only those, go to
    ``segment_dark``; without one, both get the same chromosomes. An image left with no
    chromosome is done all the same, with its (empty) outputs."""
    folder = tmp_path / "data" / "slide"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "bright.png"), metaphase(0))
    cv2.imwrite(str(folder / "dark.png"), 255 - metaphase(0))
    counts = {}
    for name, dark in (("blind", background_only), ("none", None)):
        models = dataclasses.replace(fake_models(), segment_dark=dark)
        summary = run(tmp_path / "data", tmp_path / name, models)
        assert summary.exit_code == 0
        table = pd.read_csv(tmp_path / name / "chromosomes.csv")
        counts[name] = table["image"].value_counts().to_dict()
    assert counts["blind"] == {"slide/bright.png": 7}
    assert (tmp_path / "blind" / "images" / "slide" / "dark.overlay.png").is_file()
    assert counts["none"] == {"slide/bright.png": 7, "slide/dark.png": 7}


def test_each_segmenter_keeps_small_pieces_by_its_own_score(tmp_path):
    """Small pieces scoring below the segmenter's own ``min_segmenter_score`` are dropped: the
    dark-image segmenter's for the inverted metaphase, the other's for the bright one, unless the
    pipeline config sets one score for both (a box's only piece kept however unsure is off)."""
    folder = tmp_path / "data" / "slide"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "bright.png"), metaphase(0))
    cv2.imwrite(str(folder / "dark.png"), 255 - metaphase(0))
    models = dataclasses.replace(
        fake_models(), min_segmenter_score=0.0, min_segmenter_score_dark=1.01
    )
    jobs = find_jobs([str(tmp_path / "data")], {})
    counts = {}
    for name, score in (("own", None), ("set", 0.0)):
        stitch = {  # every piece small
            "uncertain_max_pixels": 10**6,
            "min_segmenter_score": score,
            "keep_sole_piece": False,
        }
        run_batch(jobs, models, test_config(stitch=stitch), tmp_path / name, quiet=True)
        table = pd.read_csv(tmp_path / name / "chromosomes.csv")
        counts[name] = table["image"].value_counts().to_dict()
    assert counts == {
        "own": {"slide/bright.png": 7},
        "set": {"slide/bright.png": 7, "slide/dark.png": 7},
    }


def test_each_segmenter_sets_the_tolerance_of_the_automatic_scale(tmp_path):
    """The same metaphase, bright and inverted: measured alike, but seen at its measured scale
    only where its segmenter's ``scale_tolerance`` says (here the dark one's: 1.0, every
    measured image resized; the bright one's: any width is taken as it is), unless the pipeline
    config sets one for both."""
    from pipeline.core.imageio import normalise
    from pipeline.scale import ADIR_WIDTH, chromosome_width

    folder = tmp_path / "data" / "slide"
    folder.mkdir(parents=True)
    cv2.imwrite(str(folder / "bright.png"), metaphase(0))
    cv2.imwrite(str(folder / "dark.png"), 255 - metaphase(0))
    models = dataclasses.replace(
        fake_models(), scale_tolerance=(100.0, 100.0), scale_tolerance_dark=(1.0, 1.0)
    )
    jobs = find_jobs([str(tmp_path / "data")], {})
    runs = {}
    for name, setting in (("own", None), ("set", 100.0)):
        config = test_config(scale="auto", scale_tolerance=setting)
        run_batch(jobs, models, config, tmp_path / name, quiet=True)
        runs[name] = {
            item["image"]: (item["scale"], item["chromosome_width_px"])
            for item in json.loads((tmp_path / name / "run.json").read_text())["images"]
        }
    scales = runs["own"]
    width = chromosome_width(normalise(metaphase(0)))
    assert scales["slide/bright.png"] == (1.0, pytest.approx(width, abs=0.01))
    assert scales["slide/dark.png"] == (
        pytest.approx(ADIR_WIDTH / width, abs=1e-3),
        pytest.approx(width, abs=0.01),
    )
    assert abs(ADIR_WIDTH / width - 1) > 0.05  # the two differ
    assert runs["set"]["slide/dark.png"][0] == 1.0  # the pipeline config's, for both


def test_every_bad_input_fails_alone_with_one_clear_line(tmp_path, capsys):
    data = tmp_path / "data"
    good = make_slides(data, 1)[0]
    image = metaphase(5)
    (data / "zero.png").write_bytes(b"")
    png = cv2.imencode(".png", image)[1].tobytes()
    (data / "truncated.png").write_bytes(png[: len(png) // 2])
    tifffile.imwrite(data / "whole.tif", image)
    (data / "truncated.tif").write_bytes((data / "whole.tif").read_bytes()[:300])
    (data / "whole.tif").unlink()
    (data / "text.tif").write_text("this is not an image\n")
    cv2.imwrite(str(data / "one_pixel.png"), np.zeros((1, 1), np.uint8))
    cv2.imwrite(str(data / "blank.png"), np.full((50, 60), 77, np.uint8))
    tifffile.imwrite(data / "sixteen.tif", image.astype(np.uint16) * 257)
    rgb = np.repeat(image[..., None], 3, axis=2)
    cv2.imwrite(str(data / "rgb.png"), rgb)
    cv2.imwrite(str(data / "rgba.png"), np.dstack([rgb, np.full(image.shape, 255, np.uint8)]))
    for name in ("sixteen", "rgb", "rgba", good.stem):
        target = data / good.parent.name if name == good.stem else data
        cv2.imwrite(str(target / f"{name}_fish.tif"), image // 2)
    cv2.imwrite(str(data / "small_channel.png"), image)
    cv2.imwrite(str(data / "small_channel_fish.tif"), image[:50])
    cv2.imwrite(str(data / "no_channel.png"), image)
    summary = run(data, tmp_path / "out", channels=["fish={stem}_fish.tif"])
    failing = [
        "blank.png",
        "no_channel.png",
        "one_pixel.png",
        "small_channel.png",
        "text.tif",
        "truncated.png",
        "truncated.tif",
        "zero.png",
    ]
    assert summary.exit_code == 1
    assert summary.failed == len(failing) and summary.done == 4
    stderr = capsys.readouterr().err.strip().splitlines()
    assert len(stderr) == len(failing)
    assert all(line.startswith("chromoseg: ") for line in stderr)
    # worker processes report failures as they finish: one line per image, in any order
    assert sorted(name for line in stderr for name in failing if name in line) == failing
    manifest = json.loads((tmp_path / "out" / "run.json").read_text())
    errors = {e["image"]: e["error"] for e in manifest["images"] if e["status"] == "failed"}
    assert sorted(errors) == failing
    assert "empty" in errors["zero.png"] and "blank" in errors["blank.png"]
    assert "sizes must match" in errors["small_channel.png"]
    assert "too small" in errors["one_pixel.png"]
    assert "no such file" in errors["no_channel.png"]
    assert all("\n" not in error for error in errors.values())
    table = pd.read_csv(tmp_path / "out" / "chromosomes.csv")
    counts = table.groupby("image").size().to_dict()
    assert counts == {"rgb.png": 7, "rgba.png": 7, "sixteen.tif": 7, "slide0/m0.png": 7}
    by_image = table.groupby("image")["fish_mean"].mean()
    assert by_image["rgb.png"] == pytest.approx(by_image["sixteen.tif"])


class Interrupt:
    """A detector that is 'killed' on its ``at``-th call, counted over every process: by a
    KeyboardInterrupt, or with ``exit_status`` its process ends at once (``os._exit``)."""

    def __init__(self, at: int, exit_status: int | None = None):
        import multiprocessing

        self.calls, self.at, self.exit_status = multiprocessing.Value("i", 0), at, exit_status

    def __call__(self, image):
        with self.calls.get_lock():
            self.calls.value += 1
            killed = self.calls.value == self.at
        if killed and self.exit_status is not None:
            os._exit(self.exit_status)
        if killed:
            raise KeyboardInterrupt
        return fake_models().detect(image)


def test_resume_after_an_interrupted_run_gives_the_same_tables(tmp_path):
    make_slides(tmp_path / "data", 5)
    run(tmp_path / "data", tmp_path / "whole")
    killed = fake_models()
    killed.detect = Interrupt(at=4)  # batches of 2 images: the first batch is written
    alone = test_config(batch={"processes": 1})  # Ctrl-C stops the run at once
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "data", tmp_path / "resumed", models=killed, config=alone)
    assert not (tmp_path / "resumed" / "chromosomes.csv").exists()
    summary = run(tmp_path / "data", tmp_path / "resumed", resume=True)
    assert summary.resumed == 2 and summary.done == 3
    for name in ("chromosomes.csv", "instances.json"):
        assert (tmp_path / "resumed" / name).read_bytes() == (
            tmp_path / "whole" / name
        ).read_bytes()
    assert not list((tmp_path / "resumed").rglob(".*tmp*"))
    again = run(tmp_path / "data", tmp_path / "resumed", resume=True)
    assert again.resumed == 5 and again.done == 0


def test_a_worker_process_that_dies_loses_only_its_own_images(tmp_path, capsys):
    make_slides(tmp_path / "data", 6)
    run(tmp_path / "data", tmp_path / "whole")
    killed = fake_models()
    killed.detect = Interrupt(at=3, exit_status=3)  # one worker ends on the third detection
    summary = run(tmp_path / "data", tmp_path / "out", models=killed)
    assert summary.failed == 2 and summary.done == 4  # the dead worker's group of 2 images
    assert summary.exit_code == 1
    assert all("worker process ended (exit status 3)" in error for error in summary.errors)
    assert len(capsys.readouterr().err.strip().splitlines()) == summary.failed
    assert (tmp_path / "out" / "chromosomes.csv").exists()
    again = run(tmp_path / "data", tmp_path / "out", resume=True)
    assert again.resumed == 4 and again.done == 2
    for name in ("chromosomes.csv", "instances.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes()


def test_two_runs_give_identical_outputs(tmp_path):
    make_slides(tmp_path / "data", 3)
    run(tmp_path / "data", tmp_path / "a")
    run(tmp_path / "data", tmp_path / "b", workers=2)
    compared = 0
    for path in sorted((tmp_path / "a").rglob("*")):
        if path.is_file() and path.suffix != ".json" or path.name == "instances.json":
            twin = tmp_path / "b" / path.relative_to(tmp_path / "a")
            assert path.read_bytes() == twin.read_bytes()
            compared += 1
    assert compared == 2 + 3 * 3  # batch table, instances.json; per image table, TIFF, PNG


@pytest.mark.parametrize("on_cpu", [True, False])
def test_images_are_finished_beside_the_networks_only_on_a_gpu(tmp_path, monkeypatch, on_cpu):
    import threading

    from pipeline import run as engine

    writers = []
    write = engine.write_image_outputs

    def recording(*args):
        writers.append(threading.current_thread() is threading.main_thread())
        return write(*args)

    monkeypatch.setattr(engine, "write_image_outputs", recording)
    make_slides(tmp_path / "data", 3)
    run(tmp_path / "data", tmp_path / "cpu")  # in two worker processes
    writers.clear()
    run(
        tmp_path / "data",
        tmp_path / "out",
        models=dataclasses.replace(fake_models(), on_cpu=on_cpu),
        config=test_config(batch={"processes": 1}),  # this process alone
    )
    assert writers == [on_cpu] * 3
    for name in ("chromosomes.csv", "instances.json"):
        assert (tmp_path / "out" / name).read_bytes() == (tmp_path / "cpu" / name).read_bytes()


def test_a_failed_write_leaves_no_file(tmp_path):
    def broken(temporary: Path):
        temporary.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        write_atomic(tmp_path / "table.csv", broken)
    assert list(tmp_path.iterdir()) == []


def test_cli_run_with_injected_models(tmp_path, monkeypatch, capsys):
    shape = (120, 120)
    first, second = crossing_pair(shape, (60, 60), 70, 20)
    cv2.imwrite(str(tmp_path / "cross.png"), paint(shape, [(first, DIM), (second, BRIGHT)]))
    (tmp_path / "broken.png").write_bytes(b"\x89PNG garbage")
    monkeypatch.setattr("pipeline.models.load_models", lambda config, device: fake_models())
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(tmp_path / "cross.png"),
            str(tmp_path / "broken.png"),
            "--out",
            str(out),
            "--device",
            "cpu",
        ]
    )
    captured = capsys.readouterr()
    assert code == 1
    assert "1 processed" in captured.out and "1 failed" in captured.out
    assert len(pd.read_csv(out / "chromosomes.csv")) == 2
    assert main(["run", str(tmp_path / "nothing*.png"), "--out", str(out)]) == 2
    assert "chromoseg: error: no image found" in capsys.readouterr().err


def test_segmenter_model_options_reach_the_config(tmp_path, monkeypatch):
    """``--segmenter-model-dark`` sets ``segmenter.model_dark`` alone."""
    seen = {}

    def load(config, device):
        seen["segmenter"] = config.segmenter
        return fake_models()

    monkeypatch.setattr("pipeline.models.load_models", load)
    cv2.imwrite(str(tmp_path / "m.png"), metaphase(0))
    args = ["run", str(tmp_path / "m.png"), "--out", str(tmp_path / "out")]
    assert main(args + ["--segmenter-model-dark", str(tmp_path / "gband")]) == 0
    assert seen["segmenter"].model is None
    assert seen["segmenter"].model_dark == tmp_path / "gband"


def test_a_dark_segmenter_of_another_margin_is_refused(tmp_path):
    from pipeline.config import load_config
    from pipeline.core.errors import ConfigError
    from pipeline.core.modelfolder import ModelFolder
    from pipeline.models import load_models
    from segmenter.config import load_config as segmenter_config
    from segmenter.model import build_model

    config = segmenter_config(
        None,
        model={"channels": [4, 8]},
        data={"margin": 9},
        inference={
            "min_segmenter_score": 0.5,
            "scale_tolerance": 1.1,
            "scale_tolerance_thick": None,
        },
    )
    ModelFolder.save(tmp_path, build_model(config.model), config, "segmenter")
    with pytest.raises(ConfigError, match="margin"):
        load_models(load_config(None, segmenter={"model_dark": tmp_path}), "cpu")
    models = load_models(load_config(None, segmenter={"model_dark": tmp_path, "margin": 4}), "cpu")
    assert models.info["segmenter_dark"]["folder"] == str(tmp_path)
    # each segmenter's own score for small pieces, or the pipeline config's for both
    shipped = load_models(load_config(None), "cpu")
    assert models.min_score_for(True) == 0.5
    assert models.min_score_for(False) == shipped.min_score_for(False) != 0.5
    assert models.min_score_for(True, 0.3) == models.min_score_for(False, 0.3) == 0.3
    # and its own tolerance of the automatic scale
    assert models.scale_tolerance_for(True) == (1.1, 1.1)  # no thick-side factor: as thinner
    assert models.scale_tolerance_for(False) == shipped.scale_tolerance_for(False) == (1.3, 1.7)
    assert models.scale_tolerance_for(True, 1.0) == models.scale_tolerance_for(False, 1.0)
    assert models.scale_tolerance_for(False, 1.0) == (1.0, 1.0)


SHIPPED = all(
    (ROOT / stage / "pretrained" / "weights.pt").is_file() for stage in ("detector", "segmenter")
)


@pytest.mark.skipif(not SHIPPED, reason="the shipped models are not there yet")
def test_cli_end_to_end_on_a_sample_image(tmp_path, capsys):
    sample = ROOT / "data" / "samples" / "adir" / "A02__XY" / "A0201XYD.tif"
    out = tmp_path / "out"
    assert main(["run", str(sample), "--out", str(out), "--device", "cpu"]) == 0
    table = pd.read_csv(out / "chromosomes.csv")
    assert 30 <= len(table) <= 60
    assert (out / "images" / "A0201XYD.labels.tif").is_file()
    assert "1 processed" in capsys.readouterr().out


def adir_folder(folder: Path, count: int = 2) -> Path:
    """ADIR-format metaphases (``*D.tif`` + ``*K.tif``) of crossing pairs and lone bars, in a
    slide the split file does not know (so every image is evaluated)."""
    slide = folder / "Z90__XY"
    slide.mkdir(parents=True)
    for index in range(count):
        image, masks = scattered_bars((160, 200), 3, 2, seed=index + 2)
        labels = np.zeros(image.shape, np.uint8)
        for chromosome_class, mask in enumerate(masks, start=1):
            labels[mask & (labels == 0)] = chromosome_class
            labels[mask & (labels > 0) & (labels != chromosome_class)] = 255
        tifffile.imwrite(slide / f"Z90{index:02d}XYD.tif", image)
        tifffile.imwrite(slide / f"Z90{index:02d}XYK.tif", labels)
    return folder


def test_eval_pipeline_against_the_baseline(tmp_path, monkeypatch, capsys):
    data = adir_folder(tmp_path / "adir")
    monkeypatch.setattr("pipeline.models.load_models", lambda config, device: fake_models())
    code = main(
        [
            "eval",
            "pipeline",
            "--data",
            str(data),
            "--json",
            str(tmp_path / "e.json"),
            "--device",
            "cpu",
        ]
    )
    assert code == 0
    figures = json.loads((tmp_path / "e.json").read_text())
    ours, baseline = figures["pipeline"], figures["baseline"]
    assert ours["images"] == 2 and ours["true"] == 14
    assert ours["f1"] == 1.0 and ours["mean_matched_iou"] > 0.9
    assert ours["count_error"]["histogram"] == {"0": 2}
    assert baseline["predicted"] == 10 and baseline["recall"] < ours["recall"]
    assert "baseline" in capsys.readouterr().out


def background_only(crops: np.ndarray) -> np.ndarray:
    """A segmenter that sees no chromosome: probabilities (N, 4, 88, 88), all background."""
    probabilities = np.zeros((len(crops), 4, *crops.shape[1:]), np.float32)
    probabilities[:, 0] = 1.0
    return probabilities


def test_eval_pipeline_true_segmentation_replaces_the_unet(tmp_path, monkeypatch):
    """With a segmenter that finds nothing, only --true-segmentation finds the chromosomes."""
    data = adir_folder(tmp_path / "adir")
    blind = dataclasses.replace(fake_models(), segment=background_only)
    monkeypatch.setattr("pipeline.models.load_models", lambda config, device: blind)
    figures = {}
    for flag in ([], ["--true-segmentation"]):
        out = tmp_path / f"e{len(flag)}.json"
        args = ["eval", "pipeline", "--data", str(data), "--json", str(out), "--device", "cpu"]
        assert main(args + flag) == 0
        figures[bool(flag)] = json.loads(out.read_text())
    assert figures[False]["pipeline"]["predicted"] == 0
    truth = figures[True]
    assert truth["true_segmentation"] and truth["pipeline"]["true"] == 14
    assert truth["pipeline"]["f1"] == 1.0 and truth["pipeline"]["mean_matched_iou"] > 0.95


def test_eval_pipeline_views_of_the_truth(tmp_path, monkeypatch):
    """One metaphase whose Case Info says a chromosome is missing from K, and K indeed leaves
    one bar out: found, it counts as a false positive against K as it is, and not at all in the
    view that does not count unlabelled pieces; the complete-karyotype view leaves the
    metaphase out."""
    data = adir_folder(tmp_path / "adir", count=1)
    slide = data / "Z90__XY"
    labels = tifffile.imread(slide / "Z9000XYK.tif")
    single = [v for v in np.unique(labels) if v not in (0, 255) and (labels == v).sum() > 30]
    labels[labels == single[-1]] = 0
    tifffile.imwrite(slide / "Z9000XYK.tif", labels)
    (slide / "Case Info").write_text("45,XY,-2\n")
    monkeypatch.setattr("pipeline.models.load_models", lambda config, device: fake_models())
    out = tmp_path / "e.json"
    assert main(["eval", "pipeline", "--data", str(data), "--json", str(out)]) == 0
    figures = json.loads(out.read_text())
    raw, fair = figures["pipeline"], figures["pipeline_unlabelled_not_counted"]
    assert raw["predicted"] == raw["matched"] + 1 and raw["precision"] < 1.0
    assert fair["predicted"] == fair["matched"] and fair["precision"] == 1.0
    assert figures["per_image"][0]["pipeline_unlabelled_not_counted"]["not_counted"] == 1
    assert figures["pipeline_complete_karyotypes"]["images"] == 0
    assert figures["per_slide"]["Z90"]["images"] == 1
