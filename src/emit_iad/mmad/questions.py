"""MMAD-style multiple-choice questions from the image index and the descriptions.

Per query image: Anomaly Detection (yes/no) and the object questions; per defective image also
Defect Classification, Localization (EMIT's 3×3 rule), Description and Analysis. EMIT's
text-as-query samples pair a normal image with an object-instance description. Distractors are
plausible (same object first, then other objects, then generic fillers), never duplicates.
Answer letters are balanced over positions per (split, type) by a seeded shuffle.
"""

from __future__ import annotations

import re
import zlib
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from emit_iad.mmad import protocol as p
from emit_iad.sources.regions import REGION_NAMES

QUESTION_COLUMNS = [
    "id", "split", "dataset", "object", "defect", "region", "query_image", "query_key",
    "query_text", "mask_path", "similar_templates", "random_templates", "question", "options",
    "answer", "type",
]  # fmt: skip

# Fillers when a dataset has too few objects or defect types for four options; training mixes
# the product names in (``mix_fillers``). A trial with 30 of MMAD's product names instead of these
# 7: the warm-up's Object Classification stayed at 30 % on validation (90-100 % with these).
GENERIC_DEFECTS = ("contamination", "scratch", "crack", "hole", "misalignment", "deformation")
GENERIC_OBJECTS = ("bottle", "cable", "capsule", "hazelnut", "metal nut", "pill", "transistor")


def option_text(text: str) -> str:
    """MMAD's option style: capitalised, one trailing period.

    >>> option_text("top left"), option_text("missing_tip"), option_text("Yes.")
    ('Top left.', 'Missing tip.', 'Yes.')
    """
    t = str(text).replace("_", " ").strip().rstrip(".")
    return (t[:1].upper() + t[1:] + ".") if t else ""


def structure_and_details(text: str) -> tuple[str | None, str | None]:
    """Split a normal-characteristics text into a structure part and a details part.

    Two sentences or more: the first two; one sentence: before and after its first " with ".

    >>> structure_and_details("A normal wood is a flat board with brown grain lines.")
    ('A flat board', 'Brown grain lines')
    """
    body = re.sub(r"^A normal [^.]*? is ", "", str(text).strip())
    sentences = [s for s in re.split(r"(?<=[.!?])\s+", body) if s.strip()]
    if len(sentences) >= 2:
        first, second = sentences[0], sentences[1]
    elif " with " in body:
        first, second = body.split(" with ", 1)
    else:
        return (body or None), None
    cap = lambda s: s.strip().rstrip(".")[:1].upper() + s.strip().rstrip(".")[1:]  # noqa: E731
    return cap(first) or None, cap(second) or None


@dataclass
class Draft:
    """A question before its options are ordered: the answer text and ranked distractors."""

    row: dict
    answer: str
    distractors: list[str]
    n_options: int


class Knowledge:
    """Lookups over the descriptions table."""

    def __init__(self, descriptions: pd.DataFrame):
        d = descriptions
        self.normal = {(r.dataset, r.object): r.text for r in d[d.kind == "normal"].itertuples()}
        defects = d[d.kind == "defect"]
        self.traits = {(r.dataset, r.object, r.defect): r.text for r in defects.itertuples()}
        self.effect = {(r.dataset, r.object, r.defect): r.effect for r in defects.itertuples()}
        self.instances = d[d.kind == "instance"]


def keyed_rng(seed: int, *parts: object) -> np.random.Generator:
    """A generator of its own for ``seed`` and ``parts`` (joined by "/")."""
    return np.random.default_rng([seed, zlib.crc32("/".join(map(str, parts)).encode())])


def _ranked(own: Sequence[str], others: Sequence[str], fillers: Sequence[str], rng) -> list[str]:
    """Distractor candidates: own group first, then others, then fillers, each shuffled."""
    out: list[str] = []
    for group in (own, others, fillers):
        group = sorted({g for g in group if g})
        out += [group[i] for i in rng.permutation(len(group))]
    return out


def _distractors(own, others, fillers, rng, mix: bool) -> list[str]:
    """:func:`_ranked`, or with ``mix`` the others and the fillers as one shuffled group."""
    return _ranked(own, [*others, *fillers], [], rng) if mix else _ranked(own, others, fillers, rng)


def unique_options(answer: str, candidates: Sequence[str], n: int) -> list[str] | None:
    """``answer`` + the first ``n-1`` candidates distinct from it and from each other (in MMAD's
    option style), or None if there are not enough."""
    seen = {option_text(answer).lower()}
    picked = []
    for c in candidates:
        t = option_text(c)
        if t and t.lower() not in seen:
            seen.add(t.lower())
            picked.append(t)
        if len(picked) == n - 1:
            return [option_text(answer), *picked]
    return None


def balanced_positions(count: int, n_options: int, rng: np.random.Generator) -> np.ndarray:
    """Answer positions for ``count`` questions: each position used ``count // n`` or one more
    times, in seeded random order."""
    full, rest = divmod(count, n_options)
    positions = np.concatenate(
        [np.tile(np.arange(n_options), full), rng.choice(n_options, rest, replace=False)]
    )
    rng.shuffle(positions)
    return positions


def finalize(drafts: list[Draft], seed: int) -> tuple[pd.DataFrame, list[dict]]:
    """Order options with answer letters balanced per split, source and type; drop drafts short
    of options (reported)."""
    rows, skipped = [], []
    groups: dict[tuple, list[tuple[Draft, list[str]]]] = defaultdict(list)
    for d in drafts:
        opts = unique_options(d.answer, d.distractors, d.n_options)
        if opts is None:
            reason = f"fewer than {d.n_options} distinct options"
            skipped.append({**_where(d.row), "reason": reason})
            continue
        # balanced per source too: one source's questions keep their letters when another changes
        groups[(d.row["split"], d.row["dataset"], d.row["type"], d.n_options)].append((d, opts))
    for key in sorted(groups):
        items = groups[key]
        positions = balanced_positions(len(items), key[3], keyed_rng(seed, *key))
        for (d, opts), pos in zip(items, positions, strict=True):
            answer, rest = opts[0], opts[1:]
            ordered = [*rest[:pos], answer, *rest[pos:]]
            rows.append({**d.row, "options": ordered, "answer": p.LETTERS[pos]})
    df = pd.DataFrame(rows, columns=QUESTION_COLUMNS)
    return df.sort_values("id", kind="stable").reset_index(drop=True), skipped


def _where(row: dict) -> dict:
    return {k: row.get(k) for k in ("split", "dataset", "object", "type")}


def validate_questions(df: pd.DataFrame) -> None:
    """Raise ValueError listing every question that breaks an invariant."""
    problems = []
    for r in df.itertuples():
        opts = list(r.options)
        if r.answer not in p.LETTERS[: len(opts)]:
            problems.append(f"{r.id}: answer {r.answer!r} is not one of {len(opts)} option letters")
        if len(opts) < 2 or len(opts) > len(p.LETTERS):
            problems.append(f"{r.id}: {len(opts)} options")
        if any(not str(o).strip() for o in opts) or len({o.lower() for o in opts}) != len(opts):
            problems.append(f"{r.id}: empty or duplicate options {opts}")
        if r.type not in p.QUESTION_TYPES:
            problems.append(f"{r.id}: unknown type {r.type!r}")
    if df.id.duplicated().any():
        problems.append(f"duplicate ids: {df.id[df.id.duplicated()].tolist()[:5]}")
    if problems:
        raise ValueError("invalid questions:\n  " + "\n  ".join(problems[:20]))


def image_drafts(
    img: pd.Series, base: dict, know: Knowledge, catalog: dict, rng: np.random.Generator,
    mix_fillers: bool = False, object_fillers: Sequence[str] = GENERIC_OBJECTS,
) -> tuple[list[Draft], list[dict]]:
    """Drafts for one query image (or, with ``base["query_text"]``, one text-as-query sample).

    ``mix_fillers``: other objects' names and defects are drawn together with the generic
    fillers, not before them, so that the questions name products and defects beyond the
    catalog. Training questions use it: a test question may name a product that training never
    showed, and a model that only ever rejected the catalog's names does not know what to do
    with it (measured: Object Classification 96 % with known names only, 19 % when the
    held-out product's name was among the options). ``object_fillers``: the generic product
    names, without a held-out product's."""
    ds, obj, defect = img.dataset, img.object, (img.label if img.is_anomalous else None)
    region = img.defect_region if defect else None
    text_query = base.get("query_text") is not None
    drafts, skipped = [], []

    def add(qtype, answer, distractors, n=4):
        row = {**base, "type": qtype, "question": p.QUESTIONS[qtype], "defect": defect,
               "region": region, "id": f"{base['id']}::{qtype}"}  # fmt: skip
        drafts.append(Draft(row, answer, distractors, n))

    def skip(qtype, reason):
        skipped.append({**_where({**base, "type": qtype}), "reason": reason})

    add(p.ANOMALY_DETECTION, "Yes" if defect else "No", ["No" if defect else "Yes"], n=2)
    if defect:
        own = [d for d in catalog["defects"][(ds, obj)] if d != defect]
        others = [d for k, v in catalog["defects"].items() if k != (ds, obj) for d in v]
        add(p.DEFECT_CLASSIFICATION, defect, _distractors(own, others, GENERIC_DEFECTS, rng,
                                                          mix_fillers))  # fmt: skip
        regions = [r for r in REGION_NAMES if r != region]
        add(p.DEFECT_LOCALIZATION, region, _ranked([], regions, [], rng))
        if not text_query:
            traits = know.traits.get((ds, obj, defect))
            effect = know.effect.get((ds, obj, defect))
            own_keys = [(ds, obj, d) for d in own]
            # other objects' texts for a defect of the same name would be near-duplicates
            other_keys = [k for k in know.traits if k[:2] != (ds, obj) and k[2] != defect
                          and k[:2] in catalog["objects"]]  # fmt: skip
            if traits:
                add(p.DEFECT_DESCRIPTION, traits, _ranked(
                    [know.traits.get(k) for k in own_keys],
                    [know.traits[k] for k in other_keys], [], rng))  # fmt: skip
            else:
                skip(p.DEFECT_DESCRIPTION, f"no defect description for {obj}/{defect}")
            if effect:
                add(p.DEFECT_ANALYSIS, effect, _ranked(
                    [know.effect.get(k) for k in own_keys],
                    [know.effect.get(k) for k in other_keys], [], rng))  # fmt: skip
            else:
                skip(p.DEFECT_ANALYSIS, f"no defect effect for {obj}/{defect}")
    if text_query:
        return drafts, skipped
    others = [o for key, o in catalog["objects"].items() if key != (ds, obj)]
    add(p.OBJECT_CLASSIFICATION, obj, _distractors([], others, object_fillers, rng, mix_fillers))
    parts = catalog["structure"].get((ds, obj), (None, None))
    for qtype, i in ((p.OBJECT_STRUCTURE, 0), (p.OBJECT_DETAILS, 1)):
        mine = parts[i]
        if not mine:
            skip(qtype, f"no normal characteristics for {obj}")
            continue
        rest = [v[i] for k, v in catalog["structure"].items() if k != (ds, obj)]
        add(qtype, mine, _ranked([], rest, [], rng))
    return drafts, skipped


def fillers_without(objects) -> tuple[str, ...]:
    """The generic product names but ``objects`` (compared as options write them).

    >>> "Metal nut." in map(option_text, fillers_without({"metal_nut"}))
    False
    """
    names = {option_text(o).lower() for o in objects}
    return tuple(o for o in GENERIC_OBJECTS if option_text(o).lower() not in names)


def without_objects(catalog: dict, objects) -> dict:
    """The catalog without ``objects``: the distractors of training questions, so that a held-out
    object's name, defects and characteristics never appear in training, not even as a wrong
    option (a model would learn that they are never the answer).

    >>> cat = {"objects": {("d", "a"): "a", ("d", "b"): "b"}, "defects": {("d", "a"): ["x"]},
    ...        "structure": {}}
    >>> without_objects(cat, {"b"})["objects"]
    {('d', 'a'): 'a'}
    """
    return {section: {key: v for key, v in entries.items() if key[1] not in objects}
            for section, entries in catalog.items()}  # fmt: skip


def build_catalog(index: pd.DataFrame, know: Knowledge) -> dict:
    """Per object: its defect types, readable name and structure/details parts."""
    pairs = index[["dataset", "object"]].drop_duplicates().itertuples(index=False)
    objects = {(ds, o): o for ds, o in pairs}
    bad = index[index.is_anomalous]
    defects = {
        key: sorted(bad[(bad.dataset == key[0]) & (bad.object == key[1])].label.unique())
        for key in objects
    }
    structure = {k: structure_and_details(know.normal[k]) for k in objects if k in know.normal}
    return {"objects": objects, "defects": defects, "structure": structure}
