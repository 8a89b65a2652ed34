"""Image reading and normalisation by their public name (notebooks call
``pipeline.imageio.normalise``); they live in ``pipeline.core.imageio``."""

from pipeline.core.imageio import (  # noqa: F401
    HIGH_PERCENTILE,
    LOW_PERCENTILE,
    POLARITIES,
    ImageReadError,
    is_dark_on_bright,
    normalise,
    read_image,
    to_grey,
)
