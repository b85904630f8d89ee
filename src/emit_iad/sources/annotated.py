"""Layouts whose labels live in JSON files rather than folder names: Real-IAD and VISION.

- ``real_iad`` (Real-IAD, Wang et al. 2024)::

      realiad_<resolution>/<object>/OK/S0001/<object>_0001_OK_C1_<time>.jpg
      realiad_<resolution>/<object>/NG/<code>/S0055/<...>_NG_C3_<time>.jpg   (+ <...>.png mask)
      realiad_jsons/realiad_jsons/<object>.json   (or realiad_jsons/<object>.json)

  Each JSON has ``train`` and ``test`` lists of ``{"category", "anomaly_class",
  "image_path", "mask_path"}``, paths relative to ``realiad_<resolution>/<object>/``. Every
  camera view is one image: a view whose ``anomaly_class`` is ``OK`` is normal even inside
  an NG sample (the defect is not visible from there). Defect codes are named as Real-IAD's
  paper names them (``AK`` pit, ``BX`` deformation, ...).

- ``vision`` (the VISION Datasets, Bai et al. 2023)::

      <object>/{train,val}/_annotations.coco.json   <object>/{train,val}/<image files>
      <object>/inference/   (unlabelled: not indexed)

  COCO files with polygon ``segmentation``; an image without annotations is normal. A defective
  image's label is the category of its largest annotation, its mask the union of all its
  polygons, rasterised once into ``mask_dir`` (default ``data/02_intermediate/masks``) by the
  ingestion stage. ``val`` becomes split ``validation``, as in MVTec-LOCO.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from emit_iad.sources.candidates import Candidate, object_dirs
from emit_iad.sources.errors import PARAMS_FILE, IngestionError, skip_hint

REALIAD_DEFECTS = {
    "AK": "pit", "BX": "deformation", "CH": "abrasion", "HS": "scratch", "PS": "damage",
    "QS": "missing_parts", "YW": "foreign_objects", "ZW": "contamination",
}  # fmt: skip
REALIAD_RESOLUTIONS = ("256", "512", "1024", "raw")
VISION_SPLITS = {"train": "train", "val": "validation"}
COCO_FILE = "_annotations.coco.json"


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise IngestionError(path, f"cannot be read ({exc})", "restore the annotation file",
                             skippable=False) from None  # fmt: skip
    except json.JSONDecodeError as exc:
        raise IngestionError(
            path, f"is not valid JSON (line {exc.lineno}: {exc.msg})",
            "restore the annotation file from the dataset's archive", skippable=False,
        ) from None  # fmt: skip
    if not isinstance(data, dict):
        raise IngestionError(path, "is not a JSON object", "restore the annotation file",
                             skippable=False)  # fmt: skip
    return data


def _realiad_json(root: Path, obj: str, json_dir: str | None) -> Path:
    folders = [root / json_dir] if json_dir else [root / "realiad_jsons" / "realiad_jsons",
                                                  root / "realiad_jsons"]  # fmt: skip
    for folder in folders:
        if (folder / f"{obj}.json").is_file():
            return folder / f"{obj}.json"
    raise IngestionError(
        folders[0] / f"{obj}.json", "Real-IAD annotation file not found",
        f"unpack realiad_jsons into the root, or set `options.json_dir` of this source in "
        f"{PARAMS_FILE}", skippable=False,
    )  # fmt: skip


def list_real_iad(
    dataset: str, root: Path, objects: list[str] | None = None,
    resolution: str | int = "1024", json_dir: str | None = None,
) -> Iterator[Candidate | IngestionError]:  # fmt: skip
    resolution = str(resolution)
    if resolution not in REALIAD_RESOLUTIONS:
        raise IngestionError(PARAMS_FILE, f"Real-IAD resolution {resolution!r} is unknown",
                             f"set `options.resolution` to one of {list(REALIAD_RESOLUTIONS)}",
                             skippable=False)  # fmt: skip
    images = root / f"realiad_{resolution}"
    for obj_dir in object_dirs(images, objects, ("OK", "NG")):
        ann = _realiad_json(root, obj_dir.name, json_dir)
        data = _read_json(ann)
        for split in ("train", "test"):
            for i, entry in enumerate(data.get(split) or []):
                yield _realiad_candidate(dataset, obj_dir, split, entry, f"{ann}: {split}[{i}]")


def _realiad_candidate(dataset, obj_dir: Path, split: str, entry, where: str):
    if not isinstance(entry, dict) or not entry.get("image_path") or "anomaly_class" not in entry:
        return IngestionError(where, "entry lacks image_path or anomaly_class",
                              f"restore the annotation file, {skip_hint()}")  # fmt: skip
    image = obj_dir / entry["image_path"]
    if not image.is_file():
        return IngestionError(image, f"listed in {where} but not on disk",
                              f"restore the image, {skip_hint()}")  # fmt: skip
    code = str(entry["anomaly_class"])
    label = "good" if code.upper() == "OK" else REALIAD_DEFECTS.get(code.upper(), code.lower())
    masks, expected = (), None
    if label != "good":
        expected = obj_dir / entry["mask_path"] if entry.get("mask_path") else image.with_suffix(
            ".png")
        masks = (expected,) if expected.is_file() else ()
    return Candidate(dataset, obj_dir.name, split, label, image, masks, expected)


def list_vision(
    dataset: str, root: Path, objects: list[str] | None = None,
    mask_dir: str = "data/02_intermediate/masks",
) -> Iterator[Candidate | IngestionError]:  # fmt: skip
    for obj_dir in object_dirs(root, objects, tuple(VISION_SPLITS)):
        for folder, split in VISION_SPLITS.items():
            ann = obj_dir / folder / COCO_FILE
            if not (obj_dir / folder).is_dir():
                continue
            if not ann.is_file():
                fix = f"restore it from the dataset's archive, {skip_hint()}"
                yield IngestionError(ann, "COCO annotation file missing", fix)
                continue
            masks = Path(mask_dir) / dataset / obj_dir.name / split
            yield from _coco_candidates(dataset, obj_dir, split, ann, masks)


def _coco_candidates(dataset, obj_dir: Path, split: str, ann: Path, masks: Path):
    data = _read_json(ann)
    names = {c.get("id"): str(c.get("name", "defect")) for c in data.get("categories") or []}
    per_image: dict = {}
    for a in data.get("annotations") or []:
        per_image.setdefault(a.get("image_id"), []).append(a)
    for img in sorted(data.get("images") or [], key=lambda m: str(m.get("file_name"))):
        path = ann.parent / str(img.get("file_name"))
        if not path.is_file():
            yield IngestionError(path, f"listed in {ann} but not on disk",
                                 f"restore the image, {skip_hint()}")  # fmt: skip
            continue
        anns = per_image.get(img.get("id"), [])
        if not anns:
            yield Candidate(dataset, obj_dir.name, split, "good", path, (), None)
            continue
        polygons, bad = [], None
        for a in anns:
            seg = a.get("segmentation")
            if not isinstance(seg, list) or not all(isinstance(p, list) and len(p) >= 6
                                                    for p in seg):  # fmt: skip
                bad = a
                break
            polygons += [tuple(float(v) for v in p) for p in seg]
        if bad is not None or not polygons:
            yield IngestionError(path, f"annotation {(bad or anns[0]).get('id')} in {ann} has no "
                                 "polygon (RLE or empty segmentation)",
                                 f"convert it to polygons, {skip_hint()}")  # fmt: skip
            continue
        largest = max(anns, key=lambda a: float(a.get("area") or 0.0))
        label = names.get(largest.get("category_id"), "defect").strip().lower().replace(" ", "_")
        expected = masks / f"{path.stem}_mask.png"
        yield Candidate(dataset, obj_dir.name, split, label, path, (), expected, tuple(polygons))
