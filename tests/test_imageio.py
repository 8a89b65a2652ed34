"""pipeline.imageio: reading every kind of image a user has, and normalising it."""

import cv2
import numpy as np
import pytest
import tifffile

from pipeline.core.errors import InputError
from pipeline.imageio import ImageReadError, normalise, read_image, to_grey


def metaphase(dtype=np.uint8, seed=0) -> np.ndarray:
    """Grey (64, 80) image: dark noisy background, three bright bars (rows 10-14, 30-34, 50-54)."""
    rng = np.random.default_rng(seed)
    top = np.iinfo(dtype).max
    image = rng.normal(0.05 * top, 0.01 * top, (64, 80))
    for row in (10, 30, 50):
        image[row : row + 5, 20:60] = 0.8 * top
    return np.clip(image, 0, top).astype(dtype)


def assert_chromosomes_bright(result: np.ndarray) -> None:
    assert result.dtype == np.float32 and result.shape == (64, 80)
    assert 0.0 <= result.min() and result.max() <= 1.0
    assert result[30:35, 20:60].mean() > 0.9
    assert result[0:8].mean() < 0.2


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("suffix", [".png", ".tif"])
def test_grey_8_and_16_bit(tmp_path, dtype, suffix):
    path = tmp_path / f"image{suffix}"
    if suffix == ".tif":
        tifffile.imwrite(path, metaphase(dtype), compression="zlib")
    else:
        cv2.imwrite(str(path), metaphase(dtype))
    image = read_image(path)
    assert image.dtype == dtype and image.shape == (64, 80)
    assert_chromosomes_bright(normalise(image))


def test_rgb_and_rgba_come_back_in_rgb_order(tmp_path):
    grey = metaphase()
    rgb = np.stack([grey, grey // 2, np.zeros_like(grey)], axis=-1)
    cv2.imwrite(str(tmp_path / "rgb.png"), rgb[..., ::-1])  # OpenCV writes BGR
    rgba = np.concatenate([rgb, np.full_like(grey, 7)[..., None]], axis=-1)
    cv2.imwrite(str(tmp_path / "rgba.png"), rgba[..., [2, 1, 0, 3]])
    assert np.array_equal(read_image(tmp_path / "rgb.png"), rgb)
    read_rgba = read_image(tmp_path / "rgba.png")
    assert np.array_equal(read_rgba, rgba)
    assert_chromosomes_bright(normalise(read_rgba))
    assert np.allclose(to_grey(read_rgba), to_grey(rgb))  # alpha is ignored


def test_jpeg_rgb(tmp_path):
    grey = metaphase()
    cv2.imwrite(str(tmp_path / "a.jpg"), np.repeat(grey[..., None], 3, axis=-1))
    image = read_image(tmp_path / "a.jpg")
    assert image.shape == (64, 80, 3)
    assert_chromosomes_bright(normalise(image))


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_dark_on_bright_is_flipped_automatically(tmp_path, dtype):
    inverted = np.iinfo(dtype).max - metaphase(dtype)  # brightfield / inverted DAPI
    assert_chromosomes_bright(normalise(inverted))
    assert_chromosomes_bright(normalise(inverted, polarity="dark"))
    assert_chromosomes_bright(normalise(metaphase(dtype), polarity="bright"))
    # an override wins over the guess
    assert normalise(inverted, polarity="bright")[30:35, 20:60].mean() < 0.1


def test_tiff_is_recognised_by_content_and_planar_layout(tmp_path):
    grey = metaphase()
    path = tmp_path / "really_a_tiff.jpeg"
    tifffile.imwrite(path, grey, compression="lzw")
    assert np.array_equal(read_image(path), grey)
    planar = tmp_path / "planar.tif"
    tifffile.imwrite(planar, np.stack([grey] * 3), photometric="rgb", planarconfig="separate")
    assert read_image(planar).shape == (64, 80, 3)


def test_palette_tiffs(tmp_path):
    grey = metaphase()
    identity = (np.arange(256, dtype=np.uint16) * 257)[None].repeat(3, axis=0)
    tifffile.imwrite(tmp_path / "identity.tif", grey, photometric="palette", colormap=identity)
    assert np.array_equal(read_image(tmp_path / "identity.tif"), grey)  # as stored (ADIR)
    reversed_palette = identity[:, ::-1].copy()
    tifffile.imwrite(tmp_path / "rev.tif", grey, photometric="palette", colormap=reversed_palette)
    coloured = read_image(tmp_path / "rev.tif")
    assert coloured.shape == (64, 80, 3)
    assert_chromosomes_bright(normalise(coloured))  # reversed palette: dark on bright, flipped


def test_robust_to_hot_pixels_and_nan():
    image = metaphase().astype(np.float32)
    image[0, 0] = 1e6  # a hot pixel would flatten min/max scaling
    image[1, 1] = np.nan
    assert_chromosomes_bright(normalise(image))


def test_blank_image_gives_zeros():
    assert not normalise(np.full((8, 8), 17, np.uint8)).any()


def test_bad_polarity_value():
    with pytest.raises(ValueError, match="polarity"):
        normalise(metaphase(), polarity="up")


@pytest.mark.parametrize(
    "name, content, message",
    [
        ("empty.png", b"", "empty file"),
        ("garbage.png", b"this is not an image", "not a readable image"),
        ("garbage.tif", b"II*\x00garbage", "not a readable TIFF"),
    ],
)
def test_unreadable_files_give_a_clear_error(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ImageReadError, match=message) as caught:
        read_image(path)
    assert isinstance(caught.value, InputError) and "\n" not in str(caught.value)


def test_missing_and_degenerate_files(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    cv2.imwrite(str(tmp_path / "dot.png"), np.zeros((1, 5), np.uint8))
    with pytest.raises(ImageReadError, match="too small"):
        read_image(tmp_path / "dot.png")
