"""The image index: one row per image of every configured dataset, with its defect geometry.

Columns (see docs/DESIGN.md): dataset, object, split, label, is_anomalous, image_path, mask_path,
width, height, defect_area, defect_region, bbox, defect_images (the source's data role: may its
defective images be trained on) and pixel_digest (:mod:`emit_iad.sources.images`).
``mask_path`` joins several masks (MVTec-LOCO) with ``;``. Paths are the configured root
joined with the file's place in the layout, so an index built from a relative root stays valid
in any clone of the project.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from emit_iad.params import required, setting
from emit_iad.sources.candidates import Candidate
from emit_iad.sources.errors import PARAMS_FILE, IngestionError, skip_hint
from emit_iad.sources.images import ImageReadError, array_digest, load_mask, load_rgb
from emit_iad.sources.layouts import LAYOUT_OPTIONS, LAYOUTS, normalise_layout
from emit_iad.sources.regions import bounding_box, defect_area, defect_region

INDEX_COLUMNS = [
    "dataset", "object", "split", "label", "is_anomalous", "image_path", "mask_path",
    "width", "height", "defect_area", "defect_region", "bbox", "defect_images", "pixel_digest",
]  # fmt: skip
REPORT_COLUMNS = ["dataset", "path", "reason", "fix"]
ON_ERROR = ("fail", "skip")



@dataclass(frozen=True)
class SourceConfig:
    """One dataset root; mirrors an entry of ``ingestion.sources``.

    ``defect_images`` is the source's data role (EMIT's): ``true`` (MPDD, Real-IAD, VISION in
    EMIT) lets its defective images be trained on; ``false`` (MMAD's own sources in EMIT) means
    only the normal images of the dataset's own training split are trained on, defects enter
    as text, and everything else is test material only (``mmad.splits``).
    """

    name: str = required("the dataset's name in the image index and the reports")
    layout: str = required(
        "folder layout: mvtec_ad | visa | mvtec_loco | mpdd | goodsad | real_iad | vision | "
        "synthetic")
    root: str = required("the dataset's folder")
    objects: tuple[str, ...] | None = setting(None, "object folders to index (null: all)")
    defect_images: bool = setting(
        True, "true: its defective images are trained on | false: normal training images "
        "only, defects as text (EMIT's role for MMAD's own sources)")
    options: tuple[tuple[str, object], ...] = setting(
        (), "the layout's own settings (LAYOUT_OPTIONS: real_iad resolution, json_dir; vision "
        "mask_dir)")

    def __post_init__(self) -> None:
        object.__setattr__(self, "layout", normalise_layout(self.layout))
        known = LAYOUT_OPTIONS.get(self.layout, {})
        unknown = sorted(set(dict(self.options)) - set(known))
        if unknown:
            valid = ", ".join(f"{k} ({v})" for k, v in known.items()) or "none"
            raise IngestionError(PARAMS_FILE, f"source {self.name!r}: unknown options {unknown}",
                                 f"layout {self.layout} takes: {valid}", skippable=False)

    @classmethod
    def from_params(cls, entry: dict) -> SourceConfig:
        missing = {"name", "layout", "root"} - set(entry)
        if missing:
            raise IngestionError(
                PARAMS_FILE,
                f"source {entry!r} lacks {sorted(missing)}",
                "give every entry of ingestion.sources a name, a layout and a root",
                skippable=False,
            )
        unknown = sorted(set(entry) - {"name", "layout", "root", "objects", "defect_images",
                                       "options"})  # fmt: skip
        if unknown:
            raise IngestionError(
                PARAMS_FILE, f"source {entry.get('name')!r} has unknown keys {unknown}",
                "use name, layout, root, objects, defect_images (true | false) and options",
                skippable=False,
            )  # fmt: skip
        if not isinstance(entry.get("defect_images", True), bool):
            raise IngestionError(PARAMS_FILE, f"source {entry['name']!r}: defect_images is "
                                 f"{entry['defect_images']!r}", "set it to true or false",
                                 skippable=False)  # fmt: skip
        objects = entry.get("objects")
        return cls(
            name=str(entry["name"]),
            layout=entry["layout"],
            root=str(entry["root"]),
            objects=tuple(objects) if objects else None,
            defect_images=entry.get("defect_images", True),
            options=tuple(sorted((entry.get("options") or {}).items())),
        )


def _decode(path: Path, mode: str) -> np.ndarray:
    """An image as RGB (``mode`` "RGB") or a mask as booleans ("L"), by the one loader."""
    try:
        return np.asarray(load_rgb(path)) if mode == "RGB" else load_mask(path)
    except ImageReadError as exc:
        raise IngestionError(
            path, exc.reason, f"replace the file with an intact copy, delete it, {skip_hint()}"
        ) from None


def _rasterise(c: Candidate, width: int, height: int) -> Path:
    """Write the union of a candidate's polygons as a mask PNG (whole or not at all)."""
    from PIL import ImageDraw

    from emit_iad.atomic import atomic_file

    mask = Image.new("L", (width, height), 0)
    draw = ImageDraw.Draw(mask)
    for poly in c.polygons:
        draw.polygon(list(zip(poly[0::2], poly[1::2], strict=True)), fill=255)
    with atomic_file(c.expected_mask, "wb") as fh:
        mask.save(fh, format="PNG")
    return c.expected_mask


def inspect_candidate(c: Candidate) -> dict:
    """Open the image (and its masks) of one candidate and measure the defect.

    Raises :class:`IngestionError` naming the file for every problem with it.
    """
    image = _decode(c.image_path, "RGB")
    height, width = image.shape[:2]
    if c.polygons:
        c = Candidate(c.dataset, c.object, c.split, c.label, c.image_path,
                      (_rasterise(c, width, height),), c.expected_mask)  # fmt: skip
    row = {
        "dataset": c.dataset,
        "object": c.object,
        "split": c.split,
        "label": c.label,
        "is_anomalous": c.is_anomalous,
        "image_path": c.image_path.as_posix(),
        "mask_path": None,
        "width": int(width),
        "height": int(height),
        "defect_area": 0.0,
        "defect_region": None,
        "bbox": None,
        "pixel_digest": array_digest(image),
    }
    if not c.is_anomalous:
        return row
    if not c.mask_paths:
        raise IngestionError(
            c.image_path,
            f"defective image ({c.label}) has no mask; expected {c.expected_mask}",
            f"add the mask there, move the image out of the dataset, {skip_hint()}",
        )
    union = np.zeros((height, width), dtype=bool)
    for mask_path in c.mask_paths:
        mask = _decode(mask_path, "L")
        if mask.shape != (height, width):
            raise IngestionError(
                mask_path,
                f"mask is {mask.shape[1]}x{mask.shape[0]} but its image {c.image_path.name} "
                f"is {width}x{height}",
                f"resize the mask to the image (nearest neighbour), {skip_hint()}",
            )
        union |= mask > 0
    if not union.any():
        raise IngestionError(
            c.mask_paths[0],
            "mask of a defective image is empty (no non-zero pixel)",
            f"fix the mask, label the image `good` if it has no defect, {skip_hint()}",
        )
    row.update(
        mask_path=";".join(p.as_posix() for p in c.mask_paths),
        defect_area=defect_area(union),
        defect_region=defect_region(union),
        bbox=bounding_box(union),
    )
    return row


def _safe_inspect(c: Candidate) -> dict | IngestionError:
    try:
        return inspect_candidate(c)
    except IngestionError as err:
        return err
    except OSError as err:  # a rasterised mask that cannot be written
        fix = "free disk space or fix the permissions of the mask folder"
        return IngestionError(c.expected_mask or c.image_path, f"cannot be written ({err})", fix)


def build_image_index(
    sources: Iterable[SourceConfig],
    on_error: str = "fail",
    workers: int = 4,
    progress: Callable[[Iterable, int], Iterable] | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Index every image of every source; return ``(image_index, report)``.

    With ``on_error="fail"`` the first problem (in path order) raises; with ``"skip"`` problem
    files are left out and listed in the report (dataset, path, reason, fix). Problems with the
    configuration itself (unknown layout, missing root) always raise.
    """
    if on_error not in ON_ERROR:
        raise IngestionError(
            PARAMS_FILE,
            f"ingestion.on_error is {on_error!r}",
            f"set it to one of {list(ON_ERROR)}",
            skippable=False,
        )
    sources = list(sources)
    names = [s.name for s in sources]
    if not sources or len(set(names)) != len(names):
        raise IngestionError(
            PARAMS_FILE,
            "ingestion.sources is empty" if not sources else f"duplicate source names {names}",
            "list at least one source, each with a unique name",
            skippable=False,
        )
    candidates: list[Candidate] = []
    problems: list[tuple[str, IngestionError]] = []  # (dataset, problem)
    roles = {s.name: s.defect_images for s in sources}
    for src in sources:
        objects = list(src.objects or []) or None
        for item in LAYOUTS[src.layout](src.name, Path(src.root), objects, **dict(src.options)):
            if isinstance(item, IngestionError):
                problems.append((src.name, item))
            else:
                candidates.append(item)
    if problems and on_error == "fail":
        raise problems[0][1]

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:  # PIL decodes without the GIL
        results = pool.map(_safe_inspect, candidates)
        if progress is not None:
            results = progress(results, len(candidates))
        rows = []
        for candidate, res in zip(candidates, results, strict=True):
            if isinstance(res, IngestionError):
                if on_error == "fail":
                    pool.shutdown(wait=False, cancel_futures=True)
                    raise res
                problems.append((candidate.dataset, res))
            else:
                rows.append({**res, "defect_images": roles[candidate.dataset]})

    index = pd.DataFrame(rows, columns=INDEX_COLUMNS)
    index = index.sort_values(["dataset", "object", "split", "label", "image_path"])
    index = index.reset_index(drop=True)
    report = pd.DataFrame(
        [{"dataset": ds, "path": p.path, "reason": p.reason, "fix": p.fix} for ds, p in problems],
        columns=REPORT_COLUMNS,
    )
    return index, report
