"""Loading and validating an MMAD-sized benchmark: MMAD's ``mmad.json`` has about 8.4 k images
and 39.7 k questions; the evaluation reads it, checks every entry and decodes every image
(query and templates) before its first question. Target (issue #27): under a minute on 2 cores.

The benchmark is written under a temporary folder in MMAD's format: ``--images`` entries of
``--questions`` questions in all (MMAD's mix of types), each with one similar and one random
template, in ``<dataset>/<object>/test/<label>/`` folders. Its images are ``--distinct`` real
PNGs of ``--side`` pixels (noise, which compresses as badly as a photograph), hard-linked to
every path: the loader decodes each path once, as it would 8.4 k distinct files, while the
disk holds only the distinct ones.

    python benchmarks/mmad_load.py [--images 8400] [--questions 39700] [--side 1024]

Prints the seconds of the JSON parse and of the whole load, side by side for the loader's
quick image check (PNG chunk CRCs, JPEG at ⅛ scale: ``sources.images.check_readable``) and for
a full decode of every image (what the loader did before), and their ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from emit_iad.evaluate import runner
from emit_iad.mmad import protocol as p
from emit_iad.mmad.format import read_mmad
from emit_iad.sources.images import load_rgb


def write_benchmark(root: Path, images: int, questions: int, side: int, distinct: int) -> Path:
    rng = np.random.default_rng(0)
    sources = []
    for i in range(distinct):
        path = root / f"_source_{i}.png"
        Image.fromarray(rng.integers(0, 256, (side, side, 3), dtype=np.uint8)).save(path)
        sources.append(path)
    per = [questions // images + (1 if i < questions % images else 0) for i in range(images)]
    keys = []
    for i in range(images):
        label = "good" if i % 3 else "crack"
        key = f"DS-{i % 4}/object_{i % 24}/test/{label}/{i:05d}.png"
        (root / key).parent.mkdir(parents=True, exist_ok=True)
        os.link(sources[i % distinct], root / key)
        keys.append(key)
    data = {}
    for i, key in enumerate(keys):
        types = [p.QUESTION_TYPES[(i + j) % len(p.QUESTION_TYPES)] for j in range(per[i])]
        conv = [{"Question": f"Question {j} about the object?", "Answer": "A",
                 "Options": {"A": "Yes.", "B": "No."}, "type": t}
                for j, t in enumerate(types)]  # fmt: skip
        data[key] = {"conversation": conv, "mask_path": "",
                     "similar_templates": [keys[(i + 1) % images]],
                     "random_templates": [keys[(i + 2) % images]]}  # fmt: skip
    mmad = root / "mmad.json"
    mmad.write_text(json.dumps(data))
    return mmad


def timed(fn, *args, **kwargs) -> tuple[float, object]:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    return time.perf_counter() - start, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=8400)
    ap.add_argument("--questions", type=int, default=39700)
    ap.add_argument("--side", type=int, default=1024)
    ap.add_argument("--distinct", type=int, default=32)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        mmad = write_benchmark(root, args.images, args.questions, args.side, args.distinct)
        json_s, _ = timed(read_mmad, mmad)
        figures = {}
        quick = runner.check_readable
        for name, check in (("quick check", quick), ("full decode", load_rgb)):
            runner.check_readable = check  # the one check load_benchmark calls per file
            try:
                total, (questions, problems) = timed(runner.load_benchmark, mmad, root,
                                                     workers=args.workers)  # fmt: skip
            finally:
                runner.check_readable = quick
            assert not problems and len(questions) == args.questions, (len(questions), problems)
            figures[name] = total
        print(f"benchmark: {args.images} images of {args.side}², {args.questions} questions, "
              f"{args.workers} threads")  # fmt: skip
        print(f"json parse (with the duplicate-key check): {json_s:6.1f} s")
        for name, total in figures.items():
            print(f"load_benchmark, {name} of every image: {total:6.1f} s")
        q, full = figures["quick check"], figures["full decode"]
        print(f"ratio full decode / quick check: {full / q:.2f}×; target < 60 s: "
              f"{'met' if q < 60 else 'missed'}")  # fmt: skip


if __name__ == "__main__":
    main()
