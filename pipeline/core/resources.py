"""Files the commands need beside the code: the configs, the ADIR slide split, the sample images
with their licence notices.

In a source checkout they are the top-level folders ``configs/`` and ``data/``; a wheel carries
the same folders inside the package, as ``pipeline/shipped/configs`` and
``pipeline/shipped/data`` (``pyproject.toml``'s ``package-dir``), so that an installed
``chromoseg`` finds them from any working directory.
"""

from __future__ import annotations

from pathlib import Path

_INSTALLED = Path(__file__).resolve().parents[1] / "shipped"
_CHECKOUT = Path(__file__).resolve().parents[2]


def resource(*parts: str) -> Path:
    """The path of a shipped file or folder, e.g. ``resource("configs", "detector.yaml")``
    (it may not exist: callers say what is missing)."""
    base = _INSTALLED if _INSTALLED.is_dir() else _CHECKOUT
    return base.joinpath(*parts)
