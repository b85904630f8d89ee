"""The offline backend: deterministic descriptions composed from the image index's metadata.

No model writes these: known objects and defect words map to fixed phrases, and the measured
geometry (typical size, most frequent 3×3 region) is added. Every row says ``backend=template``.
"""

from __future__ import annotations

import hashlib
import json

import pandas as pd

from emit_iad.describe.tasks import DescriptionTask

TEMPLATE_MODEL = "template-v1"

OBJECT_TRAITS = {
    "wood": "a flat wooden board with brown, evenly spaced wavy grain lines and a uniform finish",
    "fabric": "a woven fabric with a regular blue criss-cross weave and an even colour",
    "washer": "a round brushed-metal washer with a central hole and one small key notch in its "
    "rim, lying on a dark background",
    "tablet": "an oval white tablet with one straight score line along its long axis, on a blue "
    "background",
    "screw": "a dark metal screw with a round head, an evenly threaded shaft and a pointed tip, on "
    "a light background",
}

# (word in the defect name, visual traits, likely effect); the first match wins.
DEFECT_TRAITS: tuple[tuple[str, str, str], ...] = (
    ("thread_damage", "a stretch of the thread whose ridges are flattened into a smooth patch",
     "the screw will not hold in its nut"),
    ("thread", "a stray yellow thread lying across the surface",
     "a visible flaw in the cloth that customers reject"),
    ("scratch", "a thin, bright line scraped into the surface",
     "it spoils the finish and can start corrosion or cracks"),
    ("crack", "a dark, jagged line running through the material",
     "the part may break apart under load"),
    ("hole", "a small, dark, round opening in the surface",
     "the surface is no longer closed, so it may leak or tear"),
    ("stain", "an irregular dark-brown patch on the surface",
     "a cosmetic flaw that makes the product unsellable"),
    ("contamination", "irregular grey spots of foreign material on the surface",
     "the product is not clean and must be rejected"),
    ("rust", "a rough orange-brown patch on the metal", "corrosion weakens the part and spreads"),
    ("colo", "a region whose colour is clearly different from the rest of the object",
     "a visible colour flaw that customers reject"),
    ("missing", "a piece of the object is missing and the background shows through the gap",
     "the part is incomplete and will not fit or work"),
    ("chip", "a piece broken off the edge, leaving a concave notch in the outline",
     "the product is damaged and may crumble further"),
    ("cut", "a cut through the material that shows the background",
     "the material is severed and will tear further"),
    ("bent", "a patch where the shape is bent and the surface pattern is flattened",
     "the part no longer fits its counterpart"),
    ("deform", "a patch where the shape is distorted and the surface pattern is flattened",
     "the part no longer fits its counterpart"),
    ("broken", "a piece broken off, with jagged edges", "the product cannot be used"),
)  # fmt: skip


def readable(name: str) -> str:
    return str(name).replace("_", " ").strip()


def object_traits(obj: str, dataset: str) -> str:
    return OBJECT_TRAITS.get(
        obj,
        f"a {readable(obj)} from {dataset} as in its normal samples: complete, regular in shape, "
        "with an even surface and no marks",
    )


def defect_traits(defect: str) -> tuple[str, str]:
    key = defect.lower()
    for word, traits, effect in DEFECT_TRAITS:
        if word in key:
            return traits, effect
    return (
        f"an area labelled {readable(defect)} that differs visibly from the normal samples",
        "the product does not meet its specification",
    )


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def _defect_stats(index: pd.DataFrame, dataset: str, obj: str, defect: str) -> str:
    rows = index[(index.dataset == dataset) & (index.object == obj) & (index.label == defect)]
    if rows.empty:
        return ""
    area = 100 * float(rows.defect_area.median())
    region = rows.defect_region.mode().sort_values().iloc[0]
    return f"; it typically covers about {area:.1f}% of the image, most often at the {region}"


def describe(task: DescriptionTask, index: pd.DataFrame) -> dict:
    """One description row (text, effect) for a task, with a hash of what it was built from."""
    obj = readable(task.object)
    if task.kind == "normal":
        text, effect = f"A normal {obj} is {object_traits(task.object, task.dataset)}.", ""
    elif task.kind == "defect":
        traits, effect = defect_traits(task.defect)
        stats = "" if task.imagined else _defect_stats(index, task.dataset, task.object,
                                                           task.defect)  # fmt: skip
        text = f"{traits[0].upper()}{traits[1:]}{stats}."  # traits only: no name to give away
        effect = effect[0].upper() + effect[1:] + "."
    elif task.defect is None:
        traits = object_traits(task.object, task.dataset)
        text, effect = f"A {obj} in normal condition: {traits}. No defect is visible.", ""
    else:
        traits, effect = defect_traits(task.defect)
        d = readable(task.defect)
        size = "" if task.imagined else f", covering about {100 * task.area:.1f}% of the image"
        text = f"A {obj} with {_article(d)} {d} defect at the {task.region}: {traits}{size}."
        effect = effect[0].upper() + effect[1:] + "."
    basis = json.dumps([TEMPLATE_MODEL, task.ident(), text, effect], sort_keys=True)
    return {
        "text": text,
        "effect": effect,
        "model": TEMPLATE_MODEL,
        "request_hash": hashlib.sha256(basis.encode()).hexdigest(),
    }
