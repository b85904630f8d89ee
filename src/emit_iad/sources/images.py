"""The one image loader of every stage, and pixel digests.

:func:`load_rgb` reads any image a dataset may hold as the RGB a viewer shows: 16-bit and
32-bit grayscale scaled to 8 bits (``convert("RGB")`` clips them, so a 16-bit value of 30000
of 65535 became white), palette and CMYK converted, transparency composited over white, EXIF
orientation applied. A decompression bomb (more pixels than PIL's limit) is refused with the
path, as an :class:`ImageReadError` that ingestion's ``on_error: skip`` can skip. Masks are read
by :func:`load_mask` with the same guards.

Two files hold the same image when their decoded RGB pixels are equal, whatever their names
or PNG encodings: the benchmark guard (:mod:`emit_iad.mmad.leakage`) matches training images
against a benchmark's images by this digest as well as by path.
"""

from __future__ import annotations

import hashlib
import warnings
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# PIL's own limit (about 89 M pixels; it raises only above twice that): ample for inspection
# images (MVTec's largest is 1024², Real-IAD's 2000×1500), far below a 20000² bomb
MAX_PIXELS = Image.MAX_IMAGE_PIXELS or 89_478_485
# PIL warns between MAX_PIXELS and twice that; _open refuses those files itself, with the path
# (a filter, not catch_warnings: that is not thread-safe, and ingestion decodes in threads)
warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
_WIDE = ("I;16", "I;16B", "I;16L", "I;16N", "I")
_ALPHA = ("RGBA", "LA", "PA", "RGBa", "La")


class ImageReadError(ValueError):
    """An image file that cannot be read: names the file and why."""

    def __init__(self, path: str | Path, reason: str):
        self.path, self.reason = str(path), reason
        super().__init__(f"{path}: {reason}")


def _opened(path: str | Path) -> Image.Image:
    """The file opened (not decoded), its pixel count checked: a bomb is refused before any
    pixel is decoded."""
    try:
        im = Image.open(path)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as exc:  # fmt: skip
        raise _unreadable(path, exc) from None
    if im.width * im.height > MAX_PIXELS:
        im.close()
        raise ImageReadError(
            path, f"is {im.width}×{im.height} pixels, more than the {MAX_PIXELS:,} an image "
            "may have (a decompression bomb, or a file that is not an inspection image)")
    return im


def _unreadable(path: str | Path, exc: Exception) -> ImageReadError:
    return ImageReadError(path, f"cannot be decoded as an image ({type(exc).__name__}: {exc})")


def _open(path: str | Path) -> Image.Image:
    """The decoded image, EXIF orientation applied."""
    with _opened(path) as im:
        try:
            im.load()
            return ImageOps.exif_transpose(im)
        except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt
            raise _unreadable(path, exc) from None


def check_readable(path: str | Path) -> None:
    """A quick check that a file is an image :func:`load_rgb` can read, for validating a whole
    benchmark before its first question (MMAD: 8.4 k images) in seconds rather than minutes:
    PNG by the CRC of every chunk (a truncated or corrupted file fails; its pixels are not
    inflated), JPEG decoded at ⅛ scale (the whole entropy-coded stream is still read), other
    formats decoded whole. Raises :class:`ImageReadError` naming the file."""
    with _opened(path) as im:
        try:
            if im.format == "PNG":
                im.verify()
                return
            if im.format == "JPEG":
                im.draft(im.mode, (max(1, im.width // 8), max(1, im.height // 8)))
            im.load()
        except (OSError, SyntaxError, ValueError) as exc:  # truncated, corrupt
            raise _unreadable(path, exc) from None


def to_rgb(im: Image.Image) -> Image.Image:
    """An image of any mode as 8-bit RGB (module docstring).

    >>> to_rgb(Image.fromarray(np.full((1, 1), 30000, np.uint16))).getpixel((0, 0))
    (117, 117, 117)
    >>> to_rgb(Image.new("RGBA", (1, 1), (0, 0, 0, 0))).getpixel((0, 0))
    (255, 255, 255)
    """
    if im.mode in _WIDE:  # 16-bit (or 32-bit holding 16-bit values): 65535 → 255
        wide = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or wide.max(initial=0) > 255 else 255.0
        im = Image.fromarray(np.clip(np.rint(wide * 255.0 / top), 0, 255).astype(np.uint8))
    elif im.mode == "F":
        wide = np.asarray(im, dtype=np.float64)
        top = 1.0 if wide.max(initial=0) <= 1.0 else 255.0
        im = Image.fromarray(np.clip(np.rint(wide * 255.0 / top), 0, 255).astype(np.uint8))
    if im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")
    if im.mode in _ALPHA:
        rgba = im.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return im if im.mode == "RGB" else im.convert("RGB")


def load_rgb(path: str | Path) -> Image.Image:
    """The file's image as 8-bit RGB; raises :class:`ImageReadError` naming the file."""
    return to_rgb(_open(path))


def load_mask(path: str | Path) -> np.ndarray:
    """A mask file as a boolean array (any non-zero pixel is defect, in any mode)."""
    im = _open(path)
    return np.asarray(im if im.mode in (*_WIDE, "F", "L", "1") else im.convert("L")) > 0


def array_digest(rgb: np.ndarray) -> str:
    """SHA-1 of an (H, W, 3) uint8 array with its shape, as hex.

    >>> a = np.zeros((2, 3, 3), np.uint8)
    >>> array_digest(a) == array_digest(a.copy()), array_digest(a) == array_digest(a[:, :2])
    (True, False)
    """
    rgb = np.ascontiguousarray(rgb, dtype=np.uint8)
    h = hashlib.sha1(f"{rgb.shape}".encode())
    h.update(rgb.tobytes())
    return h.hexdigest()


def pixel_digest(path: str | Path) -> str:
    """Digest of the file's decoded RGB pixels (cached per file, size and modification time)."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return _digest(str(resolved), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=65536)
def _digest(path: str, size: int, mtime_ns: int) -> str:
    return array_digest(np.asarray(load_rgb(path)))


def pixel_digests(
    paths: Sequence[str],
    workers: int = 8,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> dict[str, str]:
    """{path: digest} for many files, decoded in threads (PIL releases the GIL)."""
    unique = sorted(set(paths))
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        results = pool.map(pixel_digest, unique)
        if progress is not None:
            results = progress(results, len(unique))
        return dict(zip(unique, results, strict=True))
