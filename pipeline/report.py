"""``report.html``: one self-contained page that shows a run's results to a person.

``write_report(out_dir)`` reads what ``chromoseg run`` wrote in ``out_dir`` (the batch table
``chromosomes.csv``, the manifest ``run.json`` and the per-image overlay PNGs) and writes
``out_dir/report.html``. Every picture is embedded (base64), so the file can be mailed or archived
alone. Plots are inline SVG (``svg_histogram``).

Per slide the page shows: the count of chromosomes per metaphase (histogram and table), the
distributions of lengths and areas, and per image an overlay thumbnail (click: enlarged) with
its flags:

- ``count``: the number of chromosomes lies outside ``ReportOptions.count_range`` (44-48).
- ``unresolved``: clusters the U-Net could not resolve (see ``unresolved_clusters``).
- ``low confidence``: chromosomes whose detector or segmenter confidence lies below
  ``ReportOptions.low_confidence``.
- ``failed``: the image could not be processed (the error from ``run.json``).
"""

from __future__ import annotations

import base64
import html
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline.core.errors import InputError
from pipeline.core.files import write_atomic

if TYPE_CHECKING:
    import pandas as pd

REPORT_NAME = "report.html"
TABLE_NAME = "chromosomes.csv"
MANIFEST_NAME = "run.json"

# Columns of chromosomes.csv the report reads (written by pipeline.run).
SLIDE, IMAGE, CLUSTER = "slide", "image", "cluster_id"
AREA, LENGTH = "area_px", "length_px"
DETECTOR_SCORE, SEGMENTER_SCORE = "detector_score", "segmenter_score"


@dataclass(frozen=True)
class ReportOptions:
    """Thresholds behind the flags.

    count_range: inclusive range of chromosome counts per metaphase that raises no flag.
    low_confidence: a chromosome whose detector or segmenter score lies below this is flagged.
    unresolved_score: a cluster whose mean segmenter score lies below this is unresolved.
    merged_area_ratio: a cluster that came out as one chromosome larger than this many times the
        image's median chromosome area is unresolved (the U-Net left two or more chromosomes
        joined).
    thumbnail_width: width in pixels of the overlay thumbnails.
    enlarged_width: the most pixels wide an overlay is embedded when clicked open; wider ones
        (slide mosaics) are scaled down to it, and the overlay PNG beside the report keeps every
        pixel.
    jpeg_quality: of the embedded overlays (thumbnails and enlarged), 0-100.
    """

    count_range: tuple[int, int] = (44, 48)
    low_confidence: float = 0.5
    unresolved_score: float = 0.5
    merged_area_ratio: float = 2.0
    thumbnail_width: int = 300
    enlarged_width: int = 2048
    jpeg_quality: int = 90


@dataclass
class ImageRecord:
    """One input image of a run: where it belongs, whether it failed, and its overlay PNG."""

    slide: str
    image: str
    error: str | None = None
    overlay: Path | None = None


@dataclass
class RunData:
    """What the report is made from: the chromosome table, every image, and the manifest."""

    table: pd.DataFrame
    images: list[ImageRecord]
    manifest: dict = field(default_factory=dict)


def read_run(out_dir: str | Path) -> RunData:
    """Read the batch table, the manifest and the overlay paths of a run's output folder."""
    import pandas as pd  # here, not at import: ``chromoseg`` registers this module's command

    out_dir = Path(out_dir)
    manifest_path = out_dir / MANIFEST_NAME
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    table_path = out_dir / TABLE_NAME
    table = pd.read_csv(table_path) if table_path.is_file() else pd.DataFrame()
    if table.empty:
        table = pd.DataFrame(
            columns=[SLIDE, IMAGE, CLUSTER, AREA, LENGTH, DETECTOR_SCORE, SEGMENTER_SCORE]
        )
    table[SLIDE] = table[SLIDE].astype(str)
    table[IMAGE] = table[IMAGE].astype(str)
    images = []
    for entry in manifest.get("images", []):
        overlay = entry.get("outputs", {}).get("overlay")
        images.append(
            ImageRecord(
                slide=str(entry["slide"]),
                image=str(entry["image"]),
                error=entry.get("error"),
                overlay=out_dir / overlay if overlay else None,
            )
        )
    known = {(record.slide, record.image) for record in images}
    for slide, image in table[[SLIDE, IMAGE]].drop_duplicates().itertuples(index=False):
        if (slide, image) not in known:
            images.append(ImageRecord(slide=slide, image=image))
    return RunData(table=table, images=images, manifest=manifest)


def unresolved_clusters(table: pd.DataFrame, options: ReportOptions) -> pd.DataFrame:
    """Clusters the U-Net could not resolve, one row per (slide, image, cluster_id).

    A cluster is unresolved when its mean segmenter score lies below
    ``options.unresolved_score``, or when it came out as a single chromosome whose area exceeds
    ``options.merged_area_ratio`` times the median chromosome area of its image.
    Columns: slide, image, cluster_id, chromosomes, mean_score, reason.
    """
    import pandas as pd

    columns = [SLIDE, IMAGE, CLUSTER, "chromosomes", "mean_score", "reason"]
    if table.empty:
        return pd.DataFrame(columns=columns)
    median_area = table.groupby([SLIDE, IMAGE])[AREA].transform("median")
    rows = table.assign(_big=table[AREA] > options.merged_area_ratio * median_area)
    clusters = rows.groupby([SLIDE, IMAGE, CLUSTER], sort=True).agg(
        chromosomes=(AREA, "size"),
        mean_score=(SEGMENTER_SCORE, "mean"),
        big=("_big", "any"),
    )
    low = clusters["mean_score"] < options.unresolved_score
    merged = (clusters["chromosomes"] == 1) & clusters["big"]
    clusters["reason"] = np.where(low, "low segmenter score", "one chromosome of outsized area")
    return clusters[low | merged].reset_index()[columns]


def image_summary(data: RunData, options: ReportOptions) -> pd.DataFrame:
    """One row per image: counts, flags and error.

    Columns: slide, image, chromosomes, unresolved, low_confidence, count_flag (bool), failed
    (bool), error (str, "" when none), median_length, median_area. Sorted by slide, image.
    """
    table = data.table
    counts = table.groupby([SLIDE, IMAGE]).size()
    low = (table[DETECTOR_SCORE] < options.low_confidence) | (
        table[SEGMENTER_SCORE] < options.low_confidence
    )
    low_counts = low.groupby([table[SLIDE], table[IMAGE]]).sum()
    unresolved = unresolved_clusters(table, options).groupby([SLIDE, IMAGE]).size()
    medians = table.groupby([SLIDE, IMAGE])[[LENGTH, AREA]].median()
    low_count, high_count = options.count_range
    rows = []
    for record in data.images:
        key = (record.slide, record.image)
        failed = record.error is not None
        count = int(counts.get(key, 0))
        rows.append(
            {
                SLIDE: record.slide,
                IMAGE: record.image,
                "chromosomes": count,
                "unresolved": int(unresolved.get(key, 0)),
                "low_confidence": int(low_counts.get(key, 0)),
                "count_flag": not failed and not low_count <= count <= high_count,
                "failed": failed,
                "error": record.error or "",
                "median_length": medians[LENGTH].get(key, np.nan),
                "median_area": medians[AREA].get(key, np.nan),
            }
        )
    import pandas as pd

    summary = pd.DataFrame(
        rows,
        columns=[
            SLIDE,
            IMAGE,
            "chromosomes",
            "unresolved",
            "low_confidence",
            "count_flag",
            "failed",
            "error",
            "median_length",
            "median_area",
        ],
    )
    return summary.sort_values([SLIDE, IMAGE], kind="stable").reset_index(drop=True)


def _data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64," + base64.b64encode(data).decode("ascii")


def _ticks(low: float, high: float, integer: bool = False) -> np.ndarray:
    """About five round tick values (1, 2, 2.5 or 5 times a power of ten apart) in [low, high]."""
    span = max(high - low, 1e-9)
    magnitude = 10 ** np.floor(np.log10(span / 5))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if span / (m * magnitude) <= 5.5)
    if integer:
        step = max(1.0, np.ceil(step))
    return np.arange(np.ceil(low / step) * step, high + step * 1e-9, step)


def svg_histogram(
    values: np.ndarray,
    edges: np.ndarray,
    xlabel: str,
    ylabel: str,
    colour: str,
    shade: tuple[float, float] | None = None,
) -> str:
    """An inline SVG (360x210 px) histogram of ``values`` over the bin ``edges``: bars, axes
    with about five round ticks each (counts in whole numbers), axis labels, and ``shade`` (an x
    range) drawn pale green behind the bars. Drawn directly: a report of many slides needs
    hundreds of small plots, which matplotlib draws slowly."""
    counts = np.histogram(values, edges)[0]
    width, height, left, right, top, bottom = 360, 210, 48, 12, 8, 40
    plot_width, plot_height = width - left - right, height - top - bottom
    x_low, x_high = float(edges[0]), float(edges[-1])
    peak = max(int(counts.max(initial=0)), 1)

    def x(value: float) -> float:
        return left + (value - x_low) / (x_high - x_low) * plot_width

    def y(count: float) -> float:
        return top + plot_height * (1 - count / peak)

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'role="img" aria-label="{html.escape(ylabel)} by {html.escape(xlabel)}" font-size="11">'
    ]
    if shade is not None:
        a, b = max(shade[0], x_low), min(shade[1], x_high)
        parts.append(
            f'<rect x="{x(a):.1f}" y="{top}" width="{max(x(b) - x(a), 0):.1f}" '
            f'height="{plot_height}" fill="#d8f0d8"/>'
        )
    for count, a, b in zip(counts, edges[:-1], edges[1:], strict=True):
        if count:
            parts.append(
                f'<rect x="{x(a):.1f}" y="{y(count):.1f}" width="{max(x(b) - x(a) - 1, 0.5):.1f}" '
                f'height="{y(0) - y(count):.1f}" fill="{colour}"/>'
            )
    axis = 'stroke="#333" stroke-width="1"'
    parts.append(f'<line x1="{left}" y1="{y(0)}" x2="{left + plot_width}" y2="{y(0)}" {axis}/>')
    parts.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{y(0)}" {axis}/>')
    for tick in _ticks(x_low, x_high, integer=True):
        parts.append(
            f'<line x1="{x(tick):.1f}" y1="{y(0)}" x2="{x(tick):.1f}" y2="{y(0) + 4}" {axis}/>'
            f'<text x="{x(tick):.1f}" y="{y(0) + 15}" text-anchor="middle">{tick:g}</text>'
        )
    for tick in _ticks(0, peak, integer=True):
        parts.append(
            f'<line x1="{left - 4}" y1="{y(tick):.1f}" x2="{left}" y2="{y(tick):.1f}" {axis}/>'
            f'<text x="{left - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_width / 2}" y="{height - 6}" text-anchor="middle">'
        f"{html.escape(xlabel)}</text>"
        f'<text transform="translate(12 {top + plot_height / 2}) rotate(-90)" '
        f'text-anchor="middle">{html.escape(ylabel)}</text></svg>'
    )
    return "".join(parts)


def count_histogram_svg(counts: np.ndarray, count_range: tuple[int, int]) -> str:
    """Histogram of chromosomes per metaphase (integer bins), the normal range shaded."""
    low, high = count_range
    first = min(counts.min(), low) if len(counts) else low
    last = max(counts.max(), high) if len(counts) else high
    edges = np.arange(first - 0.5, last + 1.5)
    label = f"chromosomes per metaphase (shaded: {low}-{high})"
    return svg_histogram(counts, edges, label, "metaphases", "#3a6ea5", (low - 0.5, high + 0.5))


def distribution_svgs(lengths: np.ndarray, areas: np.ndarray) -> list[str]:
    """Histograms (30 bins) of chromosome lengths (px) and areas (px²)."""
    plots = []
    for values, label in ((lengths, "length (px)"), (areas, "area (px²)")):
        values = values[np.isfinite(values)]
        edges = np.histogram_bin_edges(values, 30) if len(values) else np.array([0.0, 1.0])
        plots.append(svg_histogram(values, edges, label, "chromosomes", "#a5573a"))
    return plots


def as_jpegs(picture: bytes, quality: int, widths: list[int | None]) -> list[bytes]:
    """An image file's bytes (PNG) re-encoded as JPEG (about 6x smaller for overlays, so that a
    report of hundreds of metaphases stays small enough for a browser), once per entry of
    ``widths``: scaled down to that many pixels wide (area interpolation, never up), or as it is
    for None. The picture is decoded once."""
    import cv2

    image = cv2.imdecode(np.frombuffer(picture, np.uint8), cv2.IMREAD_COLOR)
    out = []
    for width in widths:
        scaled = image
        if width is not None and image.shape[1] > width:
            height = max(1, round(image.shape[0] * width / image.shape[1]))
            scaled = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", scaled, [cv2.IMWRITE_JPEG_QUALITY, quality])[1].tobytes())
    return out


STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
h1 { margin-bottom: 0.2em; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: right; }
th { background: #f0f0f0; }
td.name { text-align: left; }
.plots img { margin-right: 1em; vertical-align: top; }
.gallery { display: flex; flex-wrap: wrap; gap: 12px; }
.card { border: 1px solid #ccc; padding: 6px; width: min-content; font-size: 0.85em; }
.card.flagged { border-color: #c33; }
.flag { display: inline-block; background: #c33; color: white; border-radius: 3px;
        padding: 0 4px; margin: 1px; }
.ok { color: #393; }
.error { color: #c33; }
.lightbox { display: none; position: fixed; inset: 0; background: rgba(0,0,0,0.85);
            justify-content: center; align-items: center; z-index: 10; }
.lightbox:target { display: flex; }
.lightbox img { height: 92vh; width: 95vw; object-fit: contain; }
"""


def _flags(row) -> list[str]:
    flags = []
    if row.failed:
        flags.append("failed")
    if row.count_flag:
        flags.append(f"count {row.chromosomes}")
    if row.unresolved:
        flags.append(f"{row.unresolved} unresolved")
    if row.low_confidence:
        flags.append(f"{row.low_confidence} low confidence")
    return flags


def _format(value, digits: int = 1) -> str:
    import pandas as pd

    return "" if pd.isna(value) else f"{value:.{digits}f}"


def _overlay_jpegs(pngs: list[bytes | None], options: ReportOptions) -> list:
    """``as_jpegs`` (enlarged, thumbnail) of each overlay PNG, None where there is none; on every
    core (OpenCV's codecs release the GIL)."""
    widths = [options.enlarged_width, options.thumbnail_width]

    def encode(png: bytes | None):
        return None if png is None else as_jpegs(png, options.jpeg_quality, widths)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return list(pool.map(encode, pngs))


def _slide_section(
    slide: str,
    summary: pd.DataFrame,
    table: pd.DataFrame,
    overlays: dict,
    options: ReportOptions,
    first_index: int,
) -> str:
    escape = html.escape
    done = summary[~summary["failed"]]
    parts = [f'<h2 id="slide-{escape(slide)}">Slide {escape(slide)}</h2>']
    counts = done["chromosomes"].to_numpy()
    parts.append(
        f"<p>{len(summary)} images, {len(done)} processed, {int(summary['failed'].sum())} failed; "
        f"chromosomes per metaphase: median {_format(np.median(counts) if len(counts) else np.nan)}"
        f", {int(done['count_flag'].sum())} outside {options.count_range[0]}-"
        f"{options.count_range[1]}.</p>"
    )
    plots = [
        count_histogram_svg(counts, options.count_range),
        *distribution_svgs(table[LENGTH].to_numpy(dtype=float), table[AREA].to_numpy(dtype=float)),
    ]
    parts.append('<div class="plots">' + "".join(plots) + "</div>")
    parts.append(
        "<table><tr><th>image</th><th>chromosomes</th><th>unresolved clusters</th>"
        "<th>low-confidence chromosomes</th><th>median length (px)</th>"
        "<th>median area (px²)</th><th>flags</th></tr>"
    )
    for row in summary.itertuples(index=False):
        flags = _flags(row)
        flag_html = (
            " ".join(f'<span class="flag">{escape(flag)}</span>' for flag in flags)
            if flags
            else '<span class="ok">ok</span>'
        )
        error = f'<br><span class="error">{escape(row.error)}</span>' if row.failed else ""
        parts.append(
            f'<tr><td class="name">{escape(row.image)}</td>'
            f"<td>{'' if row.failed else row.chromosomes}</td>"
            f"<td>{row.unresolved}</td><td>{row.low_confidence}</td>"
            f"<td>{_format(row.median_length)}</td><td>{_format(row.median_area, 0)}</td>"
            f'<td class="name">{flag_html}{error}</td></tr>'
        )
    parts.append("</table>")
    cards, boxes = [], []
    rows = list(summary.itertuples(index=False))
    jpegs = _overlay_jpegs([overlays.get((row.slide, row.image)) for row in rows], options)
    for index, (row, pictures) in enumerate(zip(rows, jpegs, strict=True), start=first_index):
        flags = _flags(row)
        if pictures is not None:
            enlarged, thumb = (_data_uri(jpeg, "image/jpeg") for jpeg in pictures)
            picture = (
                f'<a href="#full-{index}"><img alt="overlay {escape(row.image)}" '
                f'width="{options.thumbnail_width}" src="{thumb}"></a>'
            )
            boxes.append(
                f'<a class="lightbox" id="full-{index}" href="#_"><img '
                f'alt="overlay {escape(row.image)}, enlarged" src="{enlarged}"></a>'
            )
        else:
            picture = (
                f'<div style="width:{options.thumbnail_width}px" class="error">'
                + ("failed: " + escape(row.error) if row.failed else "no overlay")
                + "</div>"
            )
        badges = "".join(f'<span class="flag">{escape(flag)}</span>' for flag in flags)
        css = "card flagged" if flags else "card"
        cards.append(f'<div class="{css}">{picture}<div>{escape(row.image)} {badges}</div></div>')
    parts.append('<div class="gallery">' + "".join(cards) + "</div>")
    parts.extend(boxes)
    return "\n".join(parts)


def render_report(data: RunData, options: ReportOptions, overlays: dict) -> str:
    """The HTML text of the report.

    overlays: ``{(slide, image): PNG bytes}`` for the images that have an overlay.
    """
    escape = html.escape
    summary = image_summary(data, options)
    total = len(summary)
    failed = int(summary["failed"].sum())
    flagged = int(
        (
            summary["count_flag"] | (summary["unresolved"] > 0) | (summary["low_confidence"] > 0)
        ).sum()
    )
    manifest = data.manifest
    version = manifest.get("versions", {}).get("chromoseg", "")
    slides = sorted(summary[SLIDE].unique())
    head = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>chromoseg report</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>chromoseg report</h1><p>chromoseg {escape(str(version))}"
        f" · {total} images on {len(slides)} slides · {total - failed} processed · "
        f"{failed} failed · {len(data.table)} chromosomes · {flagged} images flagged "
        f"(count outside {options.count_range[0]}-{options.count_range[1]}, unresolved clusters, "
        f"or confidence below {options.low_confidence})</p>",
    ]
    if slides:
        head.append(
            "<p>Slides: "
            + ", ".join(f'<a href="#slide-{escape(s)}">{escape(s)}</a>' for s in slides)
            + "</p>"
        )
    if failed:
        head.append("<h2>Failed images</h2><ul>")
        for row in summary[summary["failed"]].itertuples(index=False):
            head.append(
                f"<li>{escape(row.slide)}/{escape(row.image)}: "
                f'<span class="error">{escape(row.error)}</span></li>'
            )
        head.append("</ul>")
    sections = []
    first_index = 0
    for slide in slides:
        slide_summary = summary[summary[SLIDE] == slide]
        slide_table = data.table[data.table[SLIDE] == slide]
        sections.append(
            _slide_section(slide, slide_summary, slide_table, overlays, options, first_index)
        )
        first_index += len(slide_summary)
    return "\n".join(head + sections + ["</body></html>"])


def write_report(out_dir: str | Path, options: ReportOptions | None = None) -> Path:
    """Write ``out_dir/report.html`` from the run outputs in ``out_dir``; return its path.

    The file is written to a temporary name and renamed, so a reader never sees half of it.
    """
    out_dir = Path(out_dir)
    options = options or ReportOptions()
    data = read_run(out_dir)
    overlays = {
        (record.slide, record.image): record.overlay.read_bytes()
        for record in data.images
        if record.overlay is not None and record.overlay.is_file()
    }
    text = render_report(data, options, overlays)
    path = out_dir / REPORT_NAME
    write_atomic(path, lambda temporary: temporary.write_text(text, encoding="utf-8"))
    return path


def register(groups) -> None:
    """Add ``chromoseg report`` (see pipeline.cli)."""
    parser = groups["top"].add_parser(
        "report",
        help="(re)write report.html in a run's output folder",
        description="Write OUT/report.html from the outputs of `chromoseg run --out OUT`: per "
        "slide, chromosome counts per metaphase, length and area distributions, and every "
        "image's overlay with its flags. `chromoseg run` writes it with the default thresholds.",
    )
    parser.add_argument("out", metavar="OUT", help="output folder of chromoseg run")
    defaults = ReportOptions()
    parser.add_argument(
        "--count-range",
        nargs=2,
        type=int,
        metavar=("LOW", "HIGH"),
        default=defaults.count_range,
        help="chromosome counts per metaphase that raise no flag (default: %(default)s)",
    )
    parser.add_argument(
        "--low-confidence",
        type=float,
        default=defaults.low_confidence,
        metavar="SCORE",
        help="flag chromosomes whose detector or segmenter score is below (default: %(default)s)",
    )
    parser.add_argument(
        "--unresolved-score",
        type=float,
        default=defaults.unresolved_score,
        metavar="SCORE",
        help="a cluster whose mean segmenter score is below is unresolved (default: %(default)s)",
    )
    parser.set_defaults(func=report_command)


def report_command(args) -> int:
    out = Path(args.out)
    if not (out / MANIFEST_NAME).is_file():
        raise InputError(f"{out}: no {MANIFEST_NAME}: not the output folder of chromoseg run")
    options = ReportOptions(
        count_range=tuple(args.count_range),
        low_confidence=args.low_confidence,
        unresolved_score=args.unresolved_score,
    )
    print(write_report(out, options))
    return 0
