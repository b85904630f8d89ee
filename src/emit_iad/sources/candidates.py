"""What a dataset lister yields, and the object folders it walks: shared by the folder layouts
(:mod:`emit_iad.sources.layouts`) and the annotated ones (:mod:`emit_iad.sources.annotated`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from emit_iad.sources.errors import PARAMS_FILE, IngestionError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff"})


@dataclass(frozen=True)
class Candidate:
    """One image found on disk, before it is opened."""

    dataset: str
    object: str
    split: str
    label: str
    image_path: Path
    mask_paths: tuple[Path, ...]  # empty for normal images
    expected_mask: Path | None  # where the mask should be (or is written, for polygons)
    polygons: tuple[tuple[float, ...], ...] = ()  # defect polygons [x0, y0, x1, y1, ...]

    @property
    def is_anomalous(self) -> bool:
        return self.label != "good"


def object_dirs(root: Path, objects: list[str] | None, splits: tuple[str, ...]) -> list[Path]:
    if not root.is_dir():
        raise IngestionError(
            root,
            "dataset root does not exist or is not a folder",
            f"point `root` of this source in {PARAMS_FILE} at the dataset folder",
            skippable=False,
        )
    if objects:
        missing = [o for o in objects if not (root / o).is_dir()]
        if missing:
            raise IngestionError(
                root,
                f"object folder(s) {missing} not found",
                f"fix `objects` of this source in {PARAMS_FILE} (found: {listdir(root)})",
                skippable=False,
            )
        return [root / o for o in objects]
    found = [
        p
        for p in sorted(root.iterdir())
        if p.is_dir() and not p.name.startswith(".") and any((p / s).is_dir() for s in splits)
    ]
    if not found:
        raise IngestionError(
            root,
            f"no object folders (folders with {' or '.join(splits)}/ inside) in the dataset root",
            f"check the `layout` of this source in {PARAMS_FILE} and that `root` is the folder "
            "that holds one folder per object",
            skippable=False,
        )
    return found


def listdir(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir() if p.is_dir())[:20]
