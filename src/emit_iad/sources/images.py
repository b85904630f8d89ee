"""Pixel digests: the identity of an image independent of its file name and encoding.

Two files hold the same image when their decoded RGB pixels are equal, whatever their names
or PNG encodings: the benchmark guard (:mod:`emit_iad.mmad.leakage`) matches training images
against a benchmark's images by this digest as well as by path.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image


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
    with Image.open(path) as im:
        return array_digest(np.asarray(im.convert("RGB")))


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
