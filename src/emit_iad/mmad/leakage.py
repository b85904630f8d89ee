"""No benchmark image in training: find the images of a benchmark among training images.

A score counts only when no image it scores was trained on. A benchmark's images are its
queries, its templates and its masks. A training image is the same image when

- its path ends with a benchmark file's path relative to the dataset root
  (``<dataset>/<object>/...`` in ``mmad.json`` without the dataset folder), or
- its decoded pixels equal a benchmark image's (:func:`emit_iad.sources.images.pixel_digest`),
  which finds a copy under another name or a re-encoded PNG.

The qa stage leaves such images out of every question set (:func:`exclusions`); SFT and GRPO
refuse to start while a training question still shows one (:func:`check_questions`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from emit_iad.mmad.format import benchmark_id, read_mmad
from emit_iad.sources.images import pixel_digests

GUARD_HINT = (
    "rebuild the questions (`kedro run --pipelines=qa`: the qa stage leaves the benchmark's "
    "images out), or score another benchmark (evaluation.mmad_json)"
)


class BenchmarkLeak(ValueError):
    """Training questions show images of a benchmark that will be scored."""


@dataclass(frozen=True)
class BenchmarkRef:
    """Where a benchmark is: its ``mmad.json`` and the folder its paths are relative to."""

    mmad_json: str
    image_root: str

    @classmethod
    def parse(cls, entry) -> BenchmarkRef:
        """A path to an ``mmad.json`` (its folder is the root) or ``{mmad_json, image_root}``.

        >>> BenchmarkRef.parse("/data/MMAD/mmad.json")
        BenchmarkRef(mmad_json='/data/MMAD/mmad.json', image_root='/data/MMAD')
        """
        if isinstance(entry, dict):
            path = str(entry.get("mmad_json") or "")
            root = entry.get("image_root") or str(Path(path).parent)
        else:
            path, root = str(entry), str(Path(str(entry)).parent)
        if not path:
            raise ValueError(f"benchmark entry {entry!r} names no mmad.json")
        return cls(path, str(root))


@dataclass
class BenchmarkImages:
    """Every image a benchmark shows, by relative path and by pixel digest."""

    name: str
    by_path: dict[str, str]  # path relative to the dataset root -> benchmark file
    by_digest: dict[str, str]  # pixel digest -> benchmark file
    missing: list[str]  # files the mmad.json names that are not on disk (matched by path only)

    def match(self, path: str, digest: str | None) -> tuple[str, str] | None:
        """``(benchmark file, "path" | "pixels")`` for an image of this benchmark, else None."""
        parts = Path(path).as_posix().split("/")
        for k in range(2, len(parts) + 1):
            hit = self.by_path.get("/".join(parts[-k:]))
            if hit:
                return hit, "path"
        if digest and digest in self.by_digest:
            return self.by_digest[digest], "pixels"
        return None


def shown_files(mmad: dict) -> list[str]:
    """Queries, templates and masks of an ``mmad.json``, relative to its root.

    >>> shown_files({"D/o/test/bad/1.png": {"mask_path": "ground_truth/bad/1_mask.png",
    ...     "similar_templates": ["D/o/train/good/2.png"], "random_templates": []}})
    ['D/o/ground_truth/bad/1_mask.png', 'D/o/test/bad/1.png', 'D/o/train/good/2.png']
    """
    files = set()
    for key, entry in mmad.items():
        files.add(key)
        entry = entry if isinstance(entry, dict) else {}
        for t in (entry.get("similar_templates") or []) + (entry.get("random_templates") or []):
            files.add(str(t))
        parts = key.split("/")
        if entry.get("mask_path") and len(parts) > 2:
            files.add(f"{parts[0]}/{parts[1]}/{entry['mask_path']}")
    return sorted(files)


def load_benchmark_images(
    ref: BenchmarkRef, workers: int = 8, progress: Callable[[Iterable, int], Iterable] | None = None
) -> BenchmarkImages:
    """Read a benchmark's ``mmad.json`` and digest every image it names."""
    files = shown_files(read_mmad(ref.mmad_json))
    root = Path(ref.image_root)
    on_disk = {f: str(root / f) for f in files if (root / f).is_file()}
    digests = pixel_digests(list(on_disk.values()), workers, progress)
    return BenchmarkImages(
        name=benchmark_id(ref.mmad_json),
        by_path={f.split("/", 1)[1] if "/" in f else f: f for f in files},
        by_digest={digests[p]: f for f, p in on_disk.items()},
        missing=sorted(set(files) - set(on_disk)),
    )


def exclusions(index: pd.DataFrame, benchmarks: Sequence[BenchmarkImages]) -> pd.DataFrame:
    """Index rows that are benchmark images: ``index position, image_path, benchmark, file,
    matched_by``. Digests come from the index (``pixel_digest``) or are computed."""
    cols = ["position", "dataset", "object", "image_path", "benchmark", "file", "matched_by"]
    if not benchmarks or index.empty:
        return pd.DataFrame(columns=cols)
    digests = (dict(zip(index.image_path, index.pixel_digest, strict=True))
               if "pixel_digest" in index and index.pixel_digest.notna().all()
               else pixel_digests(index.image_path.tolist()))  # fmt: skip
    rows = []
    for pos, r in zip(index.index, index.itertuples(), strict=True):
        for bench in benchmarks:
            hit = bench.match(r.image_path, digests.get(r.image_path))
            if hit:
                rows.append((pos, r.dataset, r.object, r.image_path, bench.name, *hit))
                break
    return pd.DataFrame(rows, columns=cols)


def question_images(questions: pd.DataFrame) -> pd.DataFrame:
    """One row per (question, image shown): ``id, image, role`` (query or template)."""
    rows = []
    for r in questions.itertuples():
        rows.append((r.id, r.query_image, "query"))
        for col in ("similar_templates", "random_templates"):
            templates = getattr(r, col, None)
            rows += [(r.id, t, "template") for t in ([] if templates is None else templates)]
    return pd.DataFrame(rows, columns=["id", "image", "role"])


def check_questions(
    frames: dict[str, pd.DataFrame], benchmarks: Sequence[BenchmarkImages], show: int = 5
) -> int:
    """Raise :class:`BenchmarkLeak` when a question of ``frames`` shows a benchmark image;
    returns how many distinct images were checked."""
    shown = pd.concat([question_images(f).assign(set=name) for name, f in frames.items()])
    images = sorted(set(shown.image)) if len(shown) else []
    digests = pixel_digests(images) if benchmarks else {}
    hits = []
    for image in images:
        for bench in benchmarks:
            hit = bench.match(image, digests.get(image))
            if hit:
                hits.append((image, bench.name, *hit))
                break
    if hits:
        leaked = shown[shown.image.isin({h[0] for h in hits})]
        first = "\n    ".join(f"{img} = {name}:{file} (by {by})"
                               for img, name, file, by in hits[:show])  # fmt: skip
        per_set = leaked.drop_duplicates(["set", "id"]).set.value_counts()
        counts = ", ".join(f"{n} {s} questions" for s, n in per_set.items())
        raise BenchmarkLeak(
            f"refusing to train: {len(hits)} image(s) of the benchmark to be scored are shown by "
            f"{counts}; the first:\n    {first}\n  How to fix: {GUARD_HINT}."
        )
    return len(images)


def scored_benchmarks(
    mmad_json: str | None, image_root: str | None, extra: Sequence = (),
    own: dict | None = None,
) -> list[BenchmarkRef]:  # fmt: skip
    """The benchmarks whose images training must not show: ``evaluation.mmad_json`` (or, where
    it is unset, the qa stage's own test benchmark ``own``) and ``qa.exclude_benchmarks``."""
    refs = []
    if mmad_json:
        refs.append(BenchmarkRef(str(mmad_json), str(image_root or Path(str(mmad_json)).parent)))
    elif own:
        refs.append(BenchmarkRef(str(own["mmad_json"]), str(own["image_root"])))
    return refs + [BenchmarkRef.parse(e) for e in extra or ()]
