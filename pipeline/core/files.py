"""Atomic writers: each file is written to a temporary name beside its target and then renamed
(``os.replace``), so that a killed process never leaves a half-written file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np


def write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(temporary_path)`` and rename the result to ``path`` (parents created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(temporary)
        os.replace(temporary, path)
    finally:
        if temporary.exists():
            temporary.unlink()


def write_bytes(path: Path, data: bytes) -> None:
    write_atomic(path, lambda temporary: temporary.write_bytes(data))


def write_json(path: Path, data) -> None:
    write_bytes(path, (json.dumps(data, indent=1, ensure_ascii=False) + "\n").encode())


def write_png(path: Path, picture: np.ndarray) -> None:
    """Write ``picture`` (uint8 (H, W) grey or (H, W, 3) BGR) as a PNG file, atomically."""
    import cv2

    ok, png = cv2.imencode(".png", picture)
    if not ok:
        raise OSError(f"could not encode {path}")
    write_bytes(path, png.tobytes())
