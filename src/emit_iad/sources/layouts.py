"""Folder layouts of public anomaly-detection datasets, listed as candidate image records.

Listing only looks at file names; :mod:`emit_iad.sources.index` opens the files. Supported:

- ``mvtec_ad`` (also the synthetic generator's output)::

      <object>/train/good/*.png   <object>/test/<label>/*.png
      <object>/ground_truth/<label>/<stem>_mask.png

- ``visa`` (the 1-class split written by VisA's own ``prepare_data.py``)::

      <object>/train/good/*.JPG   <object>/test/{good,bad}/*.JPG
      <object>/ground_truth/bad/<stem>.png

- ``mvtec_loco``::

      <object>/{train,validation}/good/*.png   <object>/test/<label>/*.png
      <object>/ground_truth/<label>/<stem>/*.png   (one or more masks, united)

- ``mpdd`` (MPDD, Jezek et al. 2021): MVTec-AD's layout and mask names.
- ``goodsad`` (GoodsAD, Zhang et al. 2024)::

      <object>/train/good/*.jpg   <object>/test/<label>/*.jpg
      <object>/ground_truth/<label>/<stem>.png   (``<stem>_mask.png`` is accepted too)

- ``real_iad`` and ``vision`` are annotated by JSON files: see :mod:`emit_iad.sources.annotated`.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

from emit_iad.sources import annotated
from emit_iad.sources.candidates import IMAGE_SUFFIXES, Candidate, object_dirs
from emit_iad.sources.errors import PARAMS_FILE, IngestionError, skip_hint


def _images(folder: Path) -> list[Path]:
    return _scan(folder)[0]


def printable(path: Path) -> str:
    """The path with any byte that is not UTF-8 written as ``\\xNN`` (a name as the file
    system gave it cannot be written to a parquet or CSV report)."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


def _name_problem(path: Path) -> IngestionError | None:
    try:
        path.name.encode("utf-8")
    except UnicodeEncodeError:
        return IngestionError(printable(path), "name is not valid UTF-8",
                              f"rename it in UTF-8, {skip_hint()}")  # fmt: skip
    return None


def _scan(folder: Path) -> tuple[list[Path], list[IngestionError]]:
    """The image files of a folder, in name order, and the problems of the entries that look
    like images but cannot be read: a name that is not UTF-8, a dangling or looping link."""
    images, problems = [], []
    for p in sorted(folder.iterdir()):
        if p.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        bad = _name_problem(p)
        if bad is None and p.is_symlink() and not p.exists():  # exists() is False for both
            bad = IngestionError(
                p, "is a symbolic link that leads nowhere (dangling, or a loop of links)",
                f"fix or delete the link, {skip_hint()}")
        if bad is not None:
            problems.append(bad)
        elif p.is_file():
            images.append(p)
    return images, problems


def _label_dirs(obj_dir: Path, split: str) -> list[Path]:
    folder = obj_dir / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _walk(
    dataset: str,
    root: Path,
    objects: list[str] | None,
    splits: tuple[str, ...],
    masks_for: Callable[[Path, str, Path], tuple[tuple[Path, ...], Path]],
) -> Iterator[Candidate | IngestionError]:
    folders = object_dirs(root, objects, splits)
    if not objects:  # an empty folder is an object whose images are missing, not "no object"
        for empty in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")
                            and p not in folders and not any(p.iterdir())):  # fmt: skip
            yield IngestionError(empty, "object folder is empty",
                                 f"add its images, remove the folder, {skip_hint()}")  # fmt: skip
    for obj_dir in folders:
        if (bad := _name_problem(obj_dir)) is not None:
            yield bad
            continue
        count = 0
        for split in splits:
            for label_dir in _label_dirs(obj_dir, split):
                if (bad := _name_problem(label_dir)) is not None:
                    yield bad
                    continue
                label = label_dir.name
                images, problems = _scan(label_dir)
                yield from problems
                for image in images:
                    count += 1
                    masks, expected = ((), None)
                    if label != "good":
                        masks, expected = masks_for(obj_dir, label, image)
                    yield Candidate(dataset, obj_dir.name, split, label, image, masks, expected)
        if count == 0:
            yield IngestionError(
                obj_dir,
                f"object folder holds no images under {'/, '.join(splits)}/",
                f"add the images, remove the folder, {skip_hint()}",
            )


def _mvtec_masks(obj_dir: Path, label: str, image: Path) -> tuple[tuple[Path, ...], Path]:
    expected = obj_dir / "ground_truth" / label / f"{image.stem}_mask.png"
    return ((expected,) if expected.is_file() else ()), expected


def _visa_masks(obj_dir: Path, label: str, image: Path) -> tuple[tuple[Path, ...], Path]:
    expected = obj_dir / "ground_truth" / label / f"{image.stem}.png"
    return ((expected,) if expected.is_file() else ()), expected


def _goodsad_masks(obj_dir: Path, label: str, image: Path) -> tuple[tuple[Path, ...], Path]:
    folder = obj_dir / "ground_truth" / label
    for name in (f"{image.stem}.png", f"{image.stem}_mask.png"):
        if (folder / name).is_file():
            return (folder / name,), folder / name
    return (), folder / f"{image.stem}.png"


def _loco_masks(obj_dir: Path, label: str, image: Path) -> tuple[tuple[Path, ...], Path]:
    folder = obj_dir / "ground_truth" / label / image.stem
    masks = tuple(_images(folder)) if folder.is_dir() else ()
    return masks, folder / "000.png"


def list_mvtec_ad(dataset: str, root: Path, objects: list[str] | None = None):
    return _walk(dataset, root, objects, ("train", "test"), _mvtec_masks)


def list_visa(dataset: str, root: Path, objects: list[str] | None = None):
    return _walk(dataset, root, objects, ("train", "test"), _visa_masks)


def list_mvtec_loco(dataset: str, root: Path, objects: list[str] | None = None):
    return _walk(dataset, root, objects, ("train", "validation", "test"), _loco_masks)


def list_goodsad(dataset: str, root: Path, objects: list[str] | None = None):
    return _walk(dataset, root, objects, ("train", "test"), _goodsad_masks)


LAYOUTS: dict[str, Callable[..., Iterator[Candidate | IngestionError]]] = {
    "mvtec_ad": list_mvtec_ad,
    "synthetic": list_mvtec_ad,  # the generator writes MVTec-AD's layout
    "visa": list_visa,
    "mvtec_loco": list_mvtec_loco,
    "mpdd": list_mvtec_ad,  # MPDD is published in MVTec-AD's layout
    "goodsad": list_goodsad,
    "real_iad": annotated.list_real_iad,
    "vision": annotated.list_vision,
}
# Layout-specific settings of a source (``options`` of its entry), with their meaning.
LAYOUT_OPTIONS: dict[str, dict[str, str]] = {
    "real_iad": {
        "resolution": "which image folder: realiad_<resolution> (256, 512, 1024 or raw)",
        "json_dir": "folder of the per-object JSON files, relative to root",
    },
    "vision": {"mask_dir": "where masks rasterised from the polygons are written"},
}


def normalise_layout(name: str) -> str:
    """``"MVTec-AD"`` → ``"mvtec_ad"``; unknown names raise with the list of valid ones."""
    key = str(name).strip().lower().replace("-", "_").replace(" ", "_")
    if key not in LAYOUTS:
        raise IngestionError(
            PARAMS_FILE,
            f"unknown dataset layout {name!r}",
            f"use one of {sorted(LAYOUTS)} as `layout` of the source",
            skippable=False,
        )
    return key
