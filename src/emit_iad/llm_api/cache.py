"""A content-addressed cache of chat replies on disk: a re-run never pays twice.

The key is the SHA-256 of the request (model, messages with their images, sampling parameters),
so any change to a prompt or an image is a new key. One JSON file per reply, written to a
temporary name and renamed, so a crash never leaves a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from emit_iad.atomic import atomic_file


def request_key(payload: dict[str, Any]) -> str:
    """Stable hash of a request payload (dict order does not matter).

    >>> request_key({"model": "m", "messages": []}) == request_key({"messages": [], "model": "m"})
    True
    """
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class ReplyCache:
    """``get``/``put`` JSON-serialisable replies by request key under ``root``."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        path = self._path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (json.JSONDecodeError, UnicodeDecodeError):
            path.unlink(missing_ok=True)  # a damaged entry is a miss, never an error
            return None

    def put(self, key: str, value: dict) -> None:
        with atomic_file(self._path(key)) as fh:
            json.dump(value, fh, ensure_ascii=False)

    def __contains__(self, key: str) -> bool:
        return self._path(key).is_file()
