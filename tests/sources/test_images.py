"""The one image loader (issue #27): every mode a dataset may hold read as the RGB a viewer
shows, each value computed by hand; bombs refused with the path."""

import numpy as np
import pytest
from PIL import Image

from emit_iad.sources.images import (
    ImageReadError,
    check_readable,
    load_mask,
    load_rgb,
    pixel_digest,
)


def _save(tmp_path, im: Image.Image, name="x.png", **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    """30000 of 65535 is 46 % grey: 30000 · 255 / 65535 = 116.7 → 117 (convert("RGB") gave 255)."""
    values = np.array([[0, 30000, 65535]], np.uint16)
    path = _save(tmp_path, Image.fromarray(values))
    assert Image.open(path).mode == "I;16"
    assert np.asarray(load_rgb(path))[0].tolist() == [[0, 0, 0], [117, 117, 117], [255] * 3]


def test_palette_cmyk_and_grey_with_alpha(tmp_path):
    pal = Image.new("P", (2, 1))
    pal.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    pal.putpixel((1, 0), 1)
    assert np.asarray(load_rgb(_save(tmp_path, pal, "p.png")))[0].tolist() == [[10, 20, 30],
                                                                              [200, 100, 50]]
    cmyk = Image.new("CMYK", (1, 1), (0, 255, 255, 0))  # pure red in naive CMYK
    assert load_rgb(_save(tmp_path, cmyk, "c.jpg", quality=100)).getpixel((0, 0))[0] > 240
    # grey 100 at alpha 128 over white: 100·128/255 + 255·127/255 = 177.2 → 177
    la = Image.fromarray(np.array([[[100, 128]]], np.uint8), mode="LA")
    assert load_rgb(_save(tmp_path, la, "la.png")).getpixel((0, 0)) == pytest.approx(
        (177, 177, 177), abs=1)


def test_exif_orientation_is_applied(tmp_path):
    """A 2×1 image stored with orientation 6 (rotate 90° clockwise to view) reads as 1×2,
    its left pixel (red) on top."""
    im = Image.fromarray(np.array([[[255, 0, 0], [0, 0, 255]]], np.uint8))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = _save(tmp_path, im, "r.png", exif=exif)
    assert np.asarray(load_rgb(path)).tolist() == [[[255, 0, 0]], [[0, 0, 255]]]


def test_a_mask_in_any_mode_marks_its_non_zero_pixels(tmp_path):
    wide = Image.fromarray(np.array([[0, 1, 65535]], np.uint16))
    assert load_mask(_save(tmp_path, wide, "m16.png")).tolist() == [[False, True, True]]
    rgb = Image.fromarray(np.array([[[0, 0, 0], [0, 9, 0]]], np.uint8))
    assert load_mask(_save(tmp_path, rgb, "mrgb.png")).tolist() == [[False, True]]


def test_bombs_and_non_images_are_refused_with_the_path(tmp_path):
    bomb = _save(tmp_path, Image.new("1", (10000, 10000)), "big.png")
    with pytest.raises(ImageReadError, match=r"big\.png.*10000×10000 pixels"):
        load_rgb(bomb)
    with pytest.raises(ImageReadError, match=r"big\.png"):
        load_mask(bomb)
    text = tmp_path / "t.png"
    text.write_text("not an image")
    with pytest.raises(ImageReadError, match=r"t\.png: cannot be decoded"):
        pixel_digest(text)


def test_rgb_images_are_read_unchanged(tmp_path):
    """The synthetic dataset's RGB PNGs (and so every figure of the offline default) are read
    as before: the pixels as stored."""
    arr = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(arr))
    assert np.array_equal(np.asarray(load_rgb(path)), arr)


@pytest.mark.parametrize("fmt", ["png", "jpg", "bmp"])
def test_the_quick_check_passes_whole_files_and_names_cut_ones(tmp_path, fmt):
    """The benchmark's pre-check (PNG chunk CRCs, JPEG at ⅛ scale, others whole) refuses a
    file cut in half, as a full decode does."""
    arr = np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    path = _save(tmp_path, Image.fromarray(arr), f"whole.{fmt}")
    check_readable(path)
    cut = tmp_path / f"cut.{fmt}"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ImageReadError, match=f"cut.{fmt}"):
        check_readable(cut)
    with pytest.raises(ImageReadError, match=f"cut.{fmt}"):
        load_rgb(cut)
