"""A benchmark folder in MMAD's format: ``mmad.json`` plus the images it names, under one root."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
from kedro.io import AbstractDataset, DatasetError
from PIL import Image

from emit_iad.atomic import atomic_directory
from emit_iad.sources.images import load_mask


class MMADBenchmarkDataset(AbstractDataset[dict, dict]):
    """Saves ``{"mmad": <mmad.json content>, "files": {relative path: [source paths]}}``.

    Each file is copied to ``<folder>/<relative path>``; several sources (MVTec-LOCO masks) are
    united into one mask. The folder is written under a temporary name and swapped in whole, so
    a failed save never leaves half a benchmark. ``"domain_knowledge"`` (optional, MMAD's
    ``domain_knowledge.json`` shape) is written beside ``mmad.json``. Loading returns
    ``{"mmad_json": <folder>/mmad.json, "image_root": <folder>}`` (and
    ``"domain_knowledge_json"`` where written), which MMAD's own scripts and the evaluation stage
    both read.
    """

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._folder = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder)}

    def _exists(self) -> bool:
        return (self._folder / "mmad.json").is_file()

    def load(self) -> dict:
        if not self._exists():
            raise DatasetError(f"{self._folder / 'mmad.json'} not found: run the qa stage first")
        out = {"mmad_json": str(self._folder / "mmad.json"), "image_root": str(self._folder)}
        if (self._folder / "domain_knowledge.json").is_file():
            out["domain_knowledge_json"] = str(self._folder / "domain_knowledge.json")
        return out

    def save(self, data: dict) -> None:
        with atomic_directory(self._folder) as tmp:
            for rel, sources in sorted(data["files"].items()):
                target = tmp / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                if len(sources) == 1:
                    shutil.copyfile(sources[0], target)
                else:
                    masks = [load_mask(s) for s in sources]
                    Image.fromarray(np.logical_or.reduce(masks).astype(np.uint8) * 255).save(target)
            (tmp / "mmad.json").write_text(json.dumps(data["mmad"], indent=1, ensure_ascii=False))
            if data.get("domain_knowledge"):
                (tmp / "domain_knowledge.json").write_text(
                    json.dumps(data["domain_knowledge"], indent=1, ensure_ascii=False))
