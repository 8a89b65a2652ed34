"""Render a run's report.html in headless Chromium and check it (a manual check, not a CI test).

    python benchmarks/check_report.py [RUN_DIR] [--shots DIR]

RUN_DIR is the output folder of a ``chromoseg run`` (default: run it now on the shipped samples
into a temporary folder). The script (re)writes RUN_DIR/report.html, then with Debian's
``chromium`` (``apt-get install -y chromium``):

1. takes a screenshot of the page (``report.png``) and one with the first overlay opened full
   size (``report-full.png``, the ``#full-0`` lightbox) into --shots (default: RUN_DIR);
2. collects Chromium's console log and fails on any console message, uncaught exception or
   resource that failed to load;
3. loads a copy of the page with a probe script appended that counts the images that decoded
   (``naturalWidth > 0``), dumps the DOM, and fails unless every image decoded and the page
   names every slide of the run.

Exit code 0 when all checks pass. Look at the screenshots with an image viewer afterwards.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline.report import ReportOptions, image_summary, read_run, write_report

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--enable-logging=stderr",
    "--v=0",
    "--window-size=1280,2000",
]
# Lines of Chromium's log that come from the page (console, script errors, failed loads).
PAGE_PROBLEM = re.compile(r"CONSOLE|Uncaught|Failed to load resource|net::ERR_", re.IGNORECASE)
PROBE = """<script>
window.addEventListener("load", () => {
  const images = Array.from(document.images);
  const decoded = images.filter((image) => image.complete && image.naturalWidth > 0).length;
  const probe = document.createElement("div");
  probe.id = "probe";
  probe.textContent = `probe images=${images.length} decoded=${decoded}`;
  document.body.appendChild(probe);
});
</script>"""


def chromium(*arguments: str) -> subprocess.CompletedProcess:
    """Run headless Chromium with a fresh profile; return the finished process (text output)."""
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        sys.exit("check_report: chromium not found (apt-get install -y chromium)")
    with tempfile.TemporaryDirectory() as profile:
        return subprocess.run(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *arguments],
            capture_output=True,
            text=True,
            timeout=120,
        )


def page_problems(log: str) -> list[str]:
    """The lines of a Chromium log that report a problem of the page itself."""
    return [line for line in log.splitlines() if PAGE_PROBLEM.search(line)]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir", nargs="?", type=Path, help="output folder of chromoseg run")
    parser.add_argument("--shots", type=Path, help="folder for the screenshots (default RUN_DIR)")
    args = parser.parse_args(argv)
    run_dir = args.run_dir
    if run_dir is None:
        run_dir = Path(tempfile.mkdtemp(prefix="chromoseg-report-"))
        subprocess.run(["chromoseg", "run", "--out", str(run_dir), "--quiet"], check=False)
    shots = args.shots or run_dir
    shots.mkdir(parents=True, exist_ok=True)
    report = write_report(run_dir).resolve()  # file URIs need an absolute path
    print(f"report: {report} ({report.stat().st_size / 1e6:.1f} MB)")

    failures = []
    for name, url in (
        ("report.png", report.as_uri()),
        ("report-full.png", report.as_uri() + "#full-0"),
    ):
        shot = chromium(f"--screenshot={shots / name}", url)
        if not (shots / name).is_file():
            failures.append(f"no screenshot {name}: {shot.stderr[-500:]}")
        failures += [f"{name}: {line}" for line in page_problems(shot.stderr)]
        print(f"screenshot: {shots / name}")

    probe_page = report.with_name("report-probe.html")
    probe_page.write_text(report.read_text().replace("</body>", PROBE + "</body>"))
    try:
        dump = chromium("--virtual-time-budget=10000", "--dump-dom", probe_page.as_uri())
    finally:
        probe_page.unlink()
    failures += [f"probe page: {line}" for line in page_problems(dump.stderr)]
    found = re.search(r"probe images=(\d+) decoded=(\d+)", dump.stdout)
    if not found:
        failures.append("probe script did not run (no probe line in the DOM)")
    else:
        images, decoded = map(int, found.groups())
        print(f"images in page: {images}, decoded: {decoded}")
        if images == 0 or decoded != images:
            failures.append(f"{images - decoded} of {images} images did not decode")
    summary = image_summary(read_run(run_dir), ReportOptions())
    for slide in summary["slide"].unique():
        if f"Slide {slide}" not in dump.stdout:
            failures.append(f"slide {slide} missing from the page")
    for failure in failures:
        print(f"FAIL {failure}")
    print("report check:", "failed" if failures else "passed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
