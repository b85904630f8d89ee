"""Images as base64 data URLs for chat messages, downscaled to bound the token cost."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from PIL import Image

from emit_iad.sources.images import load_rgb


def image_data_url(path: str | Path, max_side: int = 512, mode: str = "RGB") -> str:
    """``data:image/png;base64,...`` of the image, longest side at most ``max_side`` pixels.

    The bytes depend only on the file and ``max_side``, so the request (and its cache key)
    is the same on every run.
    """
    im = load_rgb(path)
    im = im if mode == "RGB" else im.convert(mode)
    scale = max_side / max(im.size)
    if scale < 1:
        im = im.resize((round(im.width * scale), round(im.height * scale)), Image.BICUBIC)
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def image_part(path: str | Path, max_side: int = 512, mode: str = "RGB") -> dict:
    """A chat content part holding the image."""
    return {"type": "image_url", "image_url": {"url": image_data_url(path, max_side, mode)}}
