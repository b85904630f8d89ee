"""Model directories (``save_pretrained`` + adapter + few-shot module) as a Kedro dataset."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from kedro.io import AbstractDataset, DatasetError

if TYPE_CHECKING:  # torch and transformers load on first use: kedro-mlflow builds every
    from emit_iad.vlm.bundle import VLM  # dataset of the catalog, also in stages without models


class VLMDirectoryDataset(AbstractDataset["VLM", "VLM"]):
    """Saves a :class:`~emit_iad.vlm.bundle.VLM` atomically to a folder and loads it back.

    ``load_args``: ``dtype`` (auto: as saved; float32, bfloat16 …) and ``device`` (auto: this
    process's GPU where there is one, as the training harness uses, else the CPU; cpu, cuda …):
    weights go straight to their device, not through host memory first.
    """

    def __init__(self, filepath: str, load_args: dict | None = None,
                 metadata: dict[str, Any] | None = None):  # fmt: skip
        self._folder = Path(filepath)
        self._load_args = {"dtype": "auto", "device": "auto", **(load_args or {})}
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder), "load_args": self._load_args}

    def _exists(self) -> bool:
        return (self._folder / "emit_iad.json").is_file()

    def load(self) -> VLM:
        if not self._exists():
            raise DatasetError(f"{self._folder}: no model here yet; run the stage that writes it")
        from emit_iad.vlm.loading import load_vlm

        return load_vlm(self._folder, **self._load_args)

    def save(self, data: VLM) -> None:
        data.save(self._folder)


class ModelFolderDataset(AbstractDataset[str, None]):
    """The same model folder as a :class:`VLMDirectoryDataset`, read as its path only (Kedro
    transcoding: ``grpo_model@vlm`` / ``grpo_model@folder``). The evaluation stage takes the
    stage models this way: Kedro then orders it after the stages that write them, and Kedro-Viz
    draws the edges, without loading every model at once. Read-only."""

    def __init__(self, filepath: str, metadata: dict[str, Any] | None = None):
        self._folder = Path(filepath)
        self.metadata = metadata

    def _describe(self) -> dict[str, Any]:
        return {"filepath": str(self._folder)}

    def _exists(self) -> bool:
        return (self._folder / "emit_iad.json").is_file()

    def load(self) -> str:
        return str(self._folder)  # a stage not written yet is reported when it is evaluated

    def save(self, data: None) -> None:
        raise DatasetError(f"{self._folder}: a model folder is written through its @vlm entry")
