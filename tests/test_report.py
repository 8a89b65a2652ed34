"""report.html from a synthetic run output folder that the test builds."""

from __future__ import annotations

import base64
import json
import re

import cv2
import numpy as np
import pandas as pd
import pytest

from pipeline.core.errors import InputError
from pipeline.report import (
    REPORT_NAME,
    ReportOptions,
    image_summary,
    read_run,
    register,
    unresolved_clusters,
    write_report,
)


def _chromosome_rows(slide, image, count, rng, low_scores=0, merged_cluster=False):
    rows = []
    for index in range(count):
        rows.append(
            {
                "slide": slide,
                "image": image,
                "chromosome_id": index + 1,
                "cluster_id": index // 2 + 1,
                "area_px": float(rng.uniform(150, 400)),
                "length_px": float(rng.uniform(20, 60)),
                "detector_score": 0.3 if index < low_scores else 0.95,
                "segmenter_score": 0.9,
            }
        )
    if merged_cluster:  # one chromosome alone in its cluster, 5x the usual area
        rows.append({**rows[-1], "chromosome_id": count + 1, "cluster_id": 999, "area_px": 1500.0})
    return rows


def make_run_folder(out_dir, rng):
    """A run with two slides: normal, low count, merged cluster, low confidence, and a failure."""
    plan = [  # slide, image, count, low-confidence chromosomes, merged cluster
        ("A02", "A0201", 46, 0, False),
        ("A02", "A0202", 40, 0, False),
        ("P07", "P0701", 45, 3, True),
    ]
    rows, entries = [], []
    for slide, image, count, low, merged in plan:
        rows += _chromosome_rows(slide, image, count, rng, low, merged)
        overlay = f"{slide}/{image}_overlay.png"
        (out_dir / slide).mkdir(exist_ok=True)
        picture = rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)
        cv2.imwrite(str(out_dir / overlay), picture)
        entries.append({"slide": slide, "image": image, "outputs": {"overlay": overlay}})
    entries.append({"slide": "P07", "image": "P0702", "error": "P0702D.tif: empty file (0 bytes)"})
    pd.DataFrame(rows).to_csv(out_dir / "chromosomes.csv", index=False)
    manifest = {"versions": {"chromoseg": "0.1.0"}, "images": entries}
    (out_dir / "run.json").write_text(json.dumps(manifest))


@pytest.fixture()
def run_folder(tmp_path):
    make_run_folder(tmp_path, np.random.default_rng(0))
    return tmp_path


def test_summary_flags(run_folder):
    summary = image_summary(read_run(run_folder), ReportOptions()).set_index("image")
    assert summary.loc["A0201", ["chromosomes", "count_flag", "unresolved"]].tolist() == [
        46,
        False,
        0,
    ]
    assert summary.loc["A0202", "count_flag"]
    assert summary.loc["P0701", "low_confidence"] == 3
    assert summary.loc["P0701", "unresolved"] == 1
    assert summary.loc["P0702", "failed"] and "empty file" in summary.loc["P0702", "error"]
    assert not summary.loc["P0702", "count_flag"]


def test_count_range_is_configurable(run_folder):
    summary = image_summary(read_run(run_folder), ReportOptions(count_range=(40, 48)))
    assert not summary["count_flag"].any()


def test_unresolved_by_low_segmenter_score():
    table = pd.DataFrame(
        {
            "slide": "S",
            "image": "I",
            "cluster_id": [1, 1, 2],
            "area_px": [100.0, 100.0, 100.0],
            "segmenter_score": [0.2, 0.4, 0.9],
        }
    )
    found = unresolved_clusters(table, ReportOptions())
    assert found["cluster_id"].tolist() == [1]
    assert found["reason"].tolist() == ["low segmenter score"]


def test_report_is_self_contained(run_folder):
    path = write_report(run_folder)
    assert path == run_folder / REPORT_NAME
    text = path.read_text()
    assert not list(run_folder.glob("*.tmp"))
    # every picture embedded: no src/href pointing at a file or the network
    sources = re.findall(r'(?:src|href)="([^"]*)"', text)
    assert sources and all(s.startswith(("data:image/", "#")) for s in sources)
    # 2 slides x 3 plots (inline SVG); 3 thumbnails + 3 enlarged overlays
    assert text.count("<svg ") == 2 * 3
    assert text.count("data:image/jpeg;base64,") == 3 * 2
    for expected in (
        "Slide A02",
        "Slide P07",
        "count 40",
        "1 unresolved",
        "3 low confidence",
        "empty file (0 bytes)",
    ):
        assert expected in text


def _enlarged_widths(text: str) -> list[int]:
    """Pixel widths of the overlays a report shows when a thumbnail is clicked."""
    pictures = re.findall(
        r'class="lightbox"[^>]*><img [^>]*src="data:image/jpeg;base64,([^"]+)"', text
    )
    return [
        cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_COLOR).shape[1]
        for data in pictures
    ]


def test_enlarged_overlays_are_capped_in_width(run_folder):
    # the overlays are 160 px wide: kept as they are, or scaled down to the cap
    assert _enlarged_widths(write_report(run_folder).read_text()) == [160] * 3
    capped = write_report(run_folder, ReportOptions(enlarged_width=100)).read_text()
    assert _enlarged_widths(capped) == [100] * 3


def test_report_of_an_empty_run(tmp_path):
    (tmp_path / "run.json").write_text(
        json.dumps(
            {
                "images": [
                    {"slide": "S", "image": "x", "error": "x.tif: not a readable TIFF"},
                ]
            }
        )
    )
    text = write_report(tmp_path).read_text()
    assert "not a readable TIFF" in text and "0 chromosomes" in text


def test_report_command_options(run_folder, tmp_path_factory):
    import argparse

    parser = argparse.ArgumentParser()
    register({"top": parser.add_subparsers()})
    args = parser.parse_args(["report", str(run_folder), "--count-range", "40", "48"])
    assert args.func(args) == 0
    assert "count 40" not in (run_folder / REPORT_NAME).read_text()
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(InputError, match="not the output folder"):
        args.func(parser.parse_args(["report", str(empty)]))
