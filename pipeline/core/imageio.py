"""Reading any image a user has, and turning it into what both stages take: grey float32 with
chromosomes bright on a dark background.

``read_image``: TIFF (tifffile; recognised by its content, so a TIFF named ``.jpeg`` works too),
PNG/JPEG/BMP (OpenCV); 8- or 16-bit (or float), grey, RGB or RGBA. Palette TIFFs give their grey
levels (identity grey palettes, as in the ADIR set, are returned as stored) or RGB.
``to_grey``: RGB(A) -> luminance; alpha is ignored.
``normalise``: robust percentile scaling to about [0, 1] and uniform polarity:

- the scale maps the 1st percentile to 0 and the 99.9th to 1 and clips to [0, 1] (min/max would
  let one hot pixel or a black border set the scale);
- polarity "auto" looks at the background level (the median, since background covers most of a
  metaphase image): when it lies in the upper half of the 1..99.9 percentile range, the image is
  dark-on-bright (G-banded brightfield, inverted DAPI) and is flipped. "bright" (chromosomes
  already bright: DAPI fluorescence) and "dark" (always flip) override the guess.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import tifffile

from pipeline.core.errors import InputError

POLARITIES = ("auto", "bright", "dark")
TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")  # classic and BigTIFF
LOW_PERCENTILE, HIGH_PERCENTILE = 1.0, 99.9


class ImageReadError(InputError):
    """An input file that is not a usable image, with a one-line message for the user."""


def read_image(path: str | Path) -> np.ndarray:
    """The pixels of an image file as stored: ``(H, W)`` grey or ``(H, W, 3|4)`` RGB(A), any dtype.

    Colour comes back in RGB(A) order. Raises ImageReadError for a missing, empty, unreadable or
    degenerate (fewer than 2x2 pixels) file.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(f"{path}: no such file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    with path.open("rb") as handle:
        is_tiff = handle.read(4) in TIFF_MAGIC
    image = _read_tiff(path) if is_tiff else _read_other(path)
    if image.ndim == 3 and image.shape[0] in (3, 4) and image.shape[2] not in (3, 4):
        image = np.moveaxis(image, 0, -1)  # planar TIFF (C, H, W)
    if image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (1, 3, 4)):
        raise ImageReadError(f"{path}: unsupported image layout {image.shape}")
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ImageReadError(f"{path}: image too small ({image.shape[1]}x{image.shape[0]} pixels)")
    return image


def _read_tiff(path: Path) -> np.ndarray:
    try:
        with tifffile.TiffFile(path) as tiff:
            page = tiff.pages[0]
            image = np.asarray(page.asarray())
            colormap = page.colormap if page.photometric == tifffile.PHOTOMETRIC.PALETTE else None
    except Exception as error:  # tifffile raises many types for broken files
        raise ImageReadError(f"{path}: not a readable TIFF ({error})") from error
    if colormap is not None and not _is_identity_grey(colormap):
        image = np.moveaxis(np.asarray(colormap)[:, image], 0, -1)  # (H, W, 3) uint16
    return image


def _is_identity_grey(colormap: np.ndarray) -> bool:
    """A palette whose three channels are equal and grow in proportion to the index."""
    colormap = np.asarray(colormap, np.float64)
    ramp = np.arange(colormap.shape[1]) * (colormap[0, -1] / max(colormap.shape[1] - 1, 1))
    return bool(np.allclose(colormap, colormap[0]) and np.allclose(colormap[0], ramp, atol=1))


def _read_other(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ImageReadError(f"{path}: not a readable image (unknown format or truncated)")
    if image.ndim == 3 and image.shape[2] == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2RGBA)
    return image


def to_grey(image: np.ndarray) -> np.ndarray:
    """``(H, W)`` float32 grey from ``(H, W)``, ``(H, W, 1)``, RGB or RGBA (alpha ignored).

    Not-a-number pixels (float images) become the lowest finite value.
    """
    image = np.asarray(image)
    if image.ndim == 3:
        if image.shape[2] == 1:
            image = image[..., 0]
        else:
            image = image[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    grey = image.astype(np.float32)
    if not np.isfinite(grey).all():
        finite = grey[np.isfinite(grey)]
        grey = np.nan_to_num(
            grey,
            nan=finite.min() if finite.size else 0.0,
            posinf=finite.max() if finite.size else 0.0,
            neginf=finite.min() if finite.size else 0.0,
        )
    return grey


def is_dark_on_bright(grey: np.ndarray) -> bool:
    """Whether the background (median) lies in the upper half of the intensity range."""
    low, high = np.percentile(grey, [LOW_PERCENTILE, HIGH_PERCENTILE])
    return bool(np.median(grey) > (low + high) / 2)


def normalise(image: np.ndarray, polarity: str = "auto") -> np.ndarray:
    """``(H, W)`` float32 in [0, 1], chromosomes bright, from any image ``read_image`` returns.

    A blank (constant) image gives all zeros.
    """
    if polarity not in POLARITIES:
        raise ValueError(f"polarity must be one of {POLARITIES}, not {polarity!r}")
    grey = to_grey(image)
    if polarity == "dark" or (polarity == "auto" and is_dark_on_bright(grey)):
        grey = -grey
    low, high = np.percentile(grey, [LOW_PERCENTILE, HIGH_PERCENTILE])
    if high <= low:
        return np.zeros(grey.shape, np.float32)
    return np.clip((grey - low) / (high - low), 0.0, 1.0).astype(np.float32)


def otsu_foreground(normalised: np.ndarray, left_out: np.ndarray | None = None) -> np.ndarray:
    """Global Otsu threshold of a normalised image (float32 ``(H, W)`` in [0, 1], chromosomes
    bright) at 8 bits (levels truncated): bool ``(H, W)``, True above the threshold. The one
    classical foreground of the project: baselines, label cleaning and single-chromosome mining.
    ``left_out`` (bool ``(H, W)``): pixels kept out of the threshold's histogram and of the
    foreground (nuclei: ``pipeline.scale``)."""
    grey = np.clip(normalised * 255, 0, 255).astype(np.uint8)
    if left_out is None:
        _, mask = cv2.threshold(grey, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        return mask.astype(bool)
    kept = grey[~left_out].reshape(1, -1)
    if kept.size == 0:
        return np.zeros(grey.shape, bool)
    threshold, _ = cv2.threshold(kept, 0, 1, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return (grey > threshold) & ~left_out
