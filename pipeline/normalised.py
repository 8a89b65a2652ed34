"""``pipeline.imageio.normalise`` computed region by region, so that a large image never needs a
float copy of the whole of it: the models see the same values, and the memory the pipeline
needs beyond the image itself is bounded by a tile, a crop window or a block of rows.

The scale (1st and 99.9th percentiles) and polarity are those of the whole image, found once;
``NormalisedImage[rows, cols]`` then gives float32 values in [0, 1], chromosomes bright, equal to
``normalise(image)[rows, cols]``. 8- and 16-bit images are looked up in a table of every grey
level's normalised value (the same values, elementwise, several times faster).
"""

from __future__ import annotations

from functools import cached_property

import numpy as np

from pipeline.core.imageio import HIGH_PERCENTILE, LOW_PERCENTILE, POLARITIES, is_dark_on_bright
from segmenter.crops import CropGeometry, crop_image

ROW_BLOCK = 1024  # rows converted at a time by ``to_uint8``


class NormalisedImage:
    """A grey ``(H, W)`` image (any real dtype, e.g. ``pipeline.imageio.to_grey`` of what was
    read, or the stored uint8/uint16 array itself) seen through ``normalise``."""

    def __init__(self, grey: np.ndarray, polarity: str = "auto"):
        if polarity not in POLARITIES:
            raise ValueError(f"polarity must be one of {POLARITIES}, not {polarity!r}")
        self.grey = grey
        self.flip = polarity == "dark" or (polarity == "auto" and is_dark_on_bright(grey))
        if self.flip:  # normalise takes the percentiles of -grey: those of grey, mirrored
            low, high = np.percentile(grey, [100 - HIGH_PERCENTILE, 100 - LOW_PERCENTILE])
            self.low, self.high = -high, -low
        else:
            self.low, self.high = np.percentile(grey, [LOW_PERCENTILE, HIGH_PERCENTILE])

    @property
    def shape(self) -> tuple[int, int]:
        return self.grey.shape

    @property
    def blank(self) -> bool:
        """No contrast: ``normalise`` gives all zeros."""
        return bool(self.high <= self.low)

    def values(self, grey: np.ndarray) -> np.ndarray:
        """Normalised float32 of raw grey values of this image."""
        grey = np.asarray(grey)
        if grey.dtype == self.grey.dtype and grey.dtype in (np.uint8, np.uint16):
            return self._levels[grey]
        return self._computed(grey)

    @cached_property
    def _levels(self) -> np.ndarray:
        """``_computed`` of every level of the image's integer dtype."""
        dtype = self.grey.dtype
        return self._computed(np.arange(np.iinfo(dtype).max + 1, dtype=dtype))

    def _computed(self, grey: np.ndarray) -> np.ndarray:
        grey = np.asarray(grey, np.float32)
        if self.blank:
            return np.zeros(grey.shape, np.float32)
        if self.flip:
            grey = -grey
        return np.clip((grey - self.low) / (self.high - self.low), 0.0, 1.0).astype(np.float32)

    def __getitem__(self, region) -> np.ndarray:
        """float32 normalised values of ``grey[region]``."""
        return self.values(self.grey[region])

    def full(self) -> np.ndarray:
        """The whole image normalised (``(H, W)`` float32): for images of ordinary size."""
        return self.values(self.grey)

    def background(self) -> float:
        """``segmenter.crops.background_level`` of the normalised image: its median (the
        normalisation is monotone, so this is the normalised median of the grey values)."""
        return float(self.values(np.median(self.grey)))

    def crop(self, geometry: CropGeometry, background: float) -> np.ndarray:
        """``segmenter.crops.crop_image`` of the normalised image, reading only the window."""
        return crop_image(self, geometry, background)

    def to_uint8(self) -> np.ndarray:
        """``(H, W)`` uint8: the normalised image times 255, made a block of rows at a time (or
        looked up, for 8- and 16-bit images); made once (the foreground and the overlay read
        it), not to be written to."""
        return self._uint8

    @cached_property
    def _uint8(self) -> np.ndarray:
        if self.grey.dtype in (np.uint8, np.uint16):
            table = np.empty(len(self._levels), np.uint8)
            table[:] = self._levels * 255  # cast as the blocks below are
            out = table[self.grey]
            out.flags.writeable = False
            return out
        out = np.empty(self.shape, np.uint8)
        for start in range(0, self.shape[0], ROW_BLOCK):
            out[start : start + ROW_BLOCK] = self[start : start + ROW_BLOCK] * 255
        out.flags.writeable = False
        return out
