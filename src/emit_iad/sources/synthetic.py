"""A procedurally generated industrial dataset in the exact MVTec-AD layout.

It is the offline default data: textures (wood, fabric) and discrete parts (washer, tablet,
screw), each with several defect types and pixel-exact masks. Normal images vary in position,
rotation, lighting and texture noise, so a defect can only be found by looking; defects are
placed anywhere on the object, so they fall in every cell of the 3×3 grid.

Layout written (as MVTec-AD)::

    <root>/<object>/train/good/000.png
    <root>/<object>/test/good/000.png
    <root>/<object>/test/<defect>/000.png
    <root>/<object>/ground_truth/<defect>/000_mask.png

Every image is drawn from its own generator seeded by (seed, object, split, label, index), so
the same seed gives byte-identical files whatever objects or counts are chosen around it.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from emit_iad.atomic import atomic_directory
from emit_iad.params import setting

Array = np.ndarray


@dataclass(frozen=True)
class SyntheticConfig:
    """What to generate; mirrors ``ingestion.synthetic`` in parameters_ingestion.yml."""

    seed: int = setting(0, "the generator's seed: the same seed, the same images")
    image_size: int = setting(128, "side of each image in pixels (at least 32)")
    objects: tuple[str, ...] = setting(
        ("wood", "washer", "tablet", "screw"), "objects to generate: wood, washer, tablet, "
        "screw, fabric")
    n_train_good: int = setting(24, "normal images per object in train/good")
    n_test_good: int = setting(12, "normal images per object in test/good")
    n_test_per_defect: int = setting(8, "defective images per object and defect type in test/")
    defects: dict[str, tuple[str, ...]] = setting(
        factory=dict, help="object -> the defect types to generate (unlisted object: all)")

    def __post_init__(self) -> None:
        unknown = sorted(set(self.objects) - set(OBJECTS))
        if unknown:
            raise ValueError(
                f"unknown synthetic object(s) {unknown}; choose from {sorted(OBJECTS)} "
                "in ingestion.synthetic.objects"
            )
        if self.image_size < 32:
            raise ValueError("ingestion.synthetic.image_size must be at least 32 pixels")
        for name in ("n_train_good", "n_test_good", "n_test_per_defect"):
            if getattr(self, name) < 0:
                raise ValueError(f"ingestion.synthetic.{name} must be >= 0")
        for obj, chosen in self.defects.items():
            bad = sorted(set(chosen) - set(OBJECTS.get(obj, _Spec(None, {})).defects))
            if obj not in OBJECTS or bad:
                raise ValueError(
                    f"ingestion.synthetic.defects.{obj}: unknown defect(s) {bad or chosen}; "
                    f"{obj} has {sorted(OBJECTS[obj].defects) if obj in OBJECTS else 'no defects'}"
                )

    @classmethod
    def from_params(cls, params: dict) -> SyntheticConfig:
        params = dict(params)
        if "objects" in params:
            params["objects"] = tuple(params["objects"])
        params["defects"] = {k: tuple(v) for k, v in (params.get("defects") or {}).items()}
        return cls(**params)

    def defects_of(self, obj: str) -> tuple[str, ...]:
        return tuple(self.defects.get(obj) or OBJECTS[obj].defects)


# ---------------------------------------------------------------------------------------------
# Rendering of normal objects. Each renderer returns (image HxWx3 in [0,1], background image,
# object mask HxW bool, named sub-regions where some defects belong). Coordinates in [0, 1].


def _grid(size: int) -> tuple[Array, Array]:
    c = (np.arange(size, dtype=np.float32) + 0.5) / size
    return np.meshgrid(c, c)  # xx, yy


def _pose(rng: np.random.Generator) -> float:
    """Parts lie on the line in one of four orientations, give or take a few degrees."""
    return rng.integers(4) * np.pi / 2 + rng.uniform(-0.05, 0.05)


def _lighting(rng: np.random.Generator, xx: Array, yy: Array) -> Array:
    gain = rng.uniform(0.85, 1.15)
    gx, gy = rng.uniform(-0.25, 0.25, size=2)
    return (gain * (1 + gx * (xx - 0.5) + gy * (yy - 0.5)))[..., None]


def _noise(rng: np.random.Generator, size: int, scale: float) -> Array:
    return rng.normal(0.0, scale, size=(size, size, 1)).astype(np.float32)


def _rotate(xx: Array, yy: Array, cx: float, cy: float, angle: float) -> tuple[Array, Array]:
    """Coordinates in a frame centred at (cx, cy) and rotated by ``angle`` radians."""
    dx, dy = xx - cx, yy - cy
    ca, sa = np.cos(angle), np.sin(angle)
    return ca * dx + sa * dy, -sa * dx + ca * dy


def _wood(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    xx, yy = _grid(size)
    angle = rng.uniform(-0.1, 0.1)
    u, v = _rotate(xx, yy, 0.5, 0.5, angle)
    freq, wobble = rng.uniform(10, 12), rng.uniform(0.02, 0.05)
    grain = np.sin(2 * np.pi * freq * (v + wobble * np.sin(2 * np.pi * rng.uniform(1, 3) * u)))
    base = np.array([0.58, 0.38, 0.22]) * rng.uniform(0.9, 1.1, size=3)
    img = base * (1 + 0.12 * grain[..., None]) * _lighting(rng, xx, yy) + _noise(rng, size, 0.02)
    return img, img.copy(), np.ones((size, size), dtype=bool), {}


def _fabric(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    xx, yy = _grid(size)
    u, v = _rotate(xx, yy, 0.5, 0.5, rng.uniform(-0.08, 0.08))
    freq = rng.uniform(16, 18)
    weave = np.sign(np.sin(2 * np.pi * freq * u)) * np.sign(np.sin(2 * np.pi * freq * v))
    base = np.array([0.35, 0.42, 0.6]) * rng.uniform(0.9, 1.1, size=3)
    img = base * (1 + 0.1 * weave[..., None]) * _lighting(rng, xx, yy) + _noise(rng, size, 0.025)
    return img, img.copy(), np.ones((size, size), dtype=bool), {}


def _background(rng: np.random.Generator, size: int, color: tuple[float, ...]) -> Array:
    xx, yy = _grid(size)
    base = np.array(color) * rng.uniform(0.9, 1.1)
    return base * _lighting(rng, xx, yy) + _noise(rng, size, 0.015)


def _washer(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.18, 0.18, 0.2))
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02, size=2)
    phi = _pose(rng)
    u, v = _rotate(xx, yy, cx, cy, phi)
    r = np.hypot(u, v)
    outer, inner = rng.uniform(0.38, 0.40), rng.uniform(0.15, 0.17)
    notch = (u > outer - 0.06) & (np.abs(v) < 0.035)  # a key notch makes rotation visible
    obj = (r < outer) & (r > inner) & ~notch
    theta = np.arctan2(v, u)
    metal = 0.62 + 0.12 * np.cos(2 * theta) + 0.02 * np.sin(40 * r)
    img = np.where(obj[..., None], metal[..., None] * np.array([1.0, 1.0, 1.03]), bg)
    img = img + _noise(rng, size, 0.015)
    return img, bg, obj, {}


def _tablet(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.12, 0.25, 0.4))
    cx, cy = 0.5 + rng.uniform(-0.02, 0.02, size=2)
    u, v = _rotate(xx, yy, cx, cy, _pose(rng))
    a, b = rng.uniform(0.34, 0.4), rng.uniform(0.22, 0.27)
    rho = (u / a) ** 2 + (v / b) ** 2
    obj = rho < 1
    shade = 0.92 - 0.15 * rho + 0.03 * np.sin(25 * u)
    shade = np.where(np.abs(v) < 0.012, shade - 0.12, shade)  # score line along the long axis
    img = np.where(obj[..., None], shade[..., None] * np.array([1.0, 0.98, 0.94]), bg)
    return img + _noise(rng, size, 0.012), bg, obj, {}


def _screw(rng: np.random.Generator, size: int) -> tuple[Array, Array, Array]:
    xx, yy = _grid(size)
    bg = _background(rng, size, (0.82, 0.82, 0.8))
    cx, cy = 0.5 + rng.uniform(-0.005, 0.005, size=2)
    u, v = _rotate(xx, yy, cx, cy, _pose(rng))
    half, width = rng.uniform(0.31, 0.32), rng.uniform(0.078, 0.082)
    shaft = (np.abs(u) < half) & (np.abs(v) < width)
    head = np.hypot(u + half, v) < width * 2.0
    tip_len = 0.08
    tip = (u >= half) & (u < half + tip_len) & (np.abs(v) < width * (1 - (u - half) / tip_len))
    obj = shaft | head | tip
    thread = 0.32 + 0.05 * np.sign(np.sin(2 * np.pi * 16 * u))
    tone = np.where(head, 0.3, np.where(shaft, thread, 0.36))
    img = np.where(obj[..., None], tone[..., None] * np.array([1.0, 1.0, 1.05]), bg)
    regions = {"tip": tip | (shaft & (u > half - 0.08)), "shaft": shaft}
    return img + _noise(rng, size, 0.012), bg, obj, regions


# ---------------------------------------------------------------------------------------------
# Defects: each returns a bool mask of the pixels it changes and changes exactly those pixels.


def _pick_point(rng: np.random.Generator, region: Array) -> tuple[float, float]:
    ys, xs = np.nonzero(region)
    i = rng.integers(len(ys))
    size = region.shape[0]
    return (xs[i] + 0.5) / size, (ys[i] + 0.5) / size


def _draw(size: int, paint: Callable[[ImageDraw.ImageDraw], None]) -> Array:
    canvas = Image.new("L", (size, size), 0)
    paint(ImageDraw.Draw(canvas))
    return np.asarray(canvas) > 0


def _polyline(rng, size, region, length, jitter, width) -> Array:
    x, y = _pick_point(rng, region)
    angle, n = rng.uniform(0, 2 * np.pi), 6
    pts = [(x * size, y * size)]
    for _ in range(n):
        angle += rng.normal(0, jitter)
        x, y = x + np.cos(angle) * length / n, y + np.sin(angle) * length / n
        pts.append((x * size, y * size))
    return _draw(size, lambda d: d.line(pts, fill=255, width=width, joint="curve"))


def _blob(rng, size, region, radius) -> Array:
    x, y = _pick_point(rng, region)
    shapes = []
    for _ in range(rng.integers(2, 5)):
        r = radius * rng.uniform(0.5, 1.0) * size
        ox, oy = rng.normal(0, radius * 0.6, size=2) * size
        cx, cy = x * size + ox, y * size + oy
        shapes.append((cx - r, cy - r * rng.uniform(0.6, 1), cx + r, cy + r * rng.uniform(0.6, 1)))
    return _draw(size, lambda d: [d.ellipse(s, fill=255) for s in shapes])


def _disk(rng, size, region, radius) -> Array:
    x, y = _pick_point(rng, region)
    r = radius * size
    return _draw(
        size,
        lambda d: d.ellipse((x * size - r, y * size - r, x * size + r, y * size + r), fill=255),
    )


def _tint(img, mask, color, alpha):
    out = img.copy()
    out[mask] = (1 - alpha) * img[mask] + alpha * np.asarray(color)
    return out


def _make_defect(kind: str, rng, img, bg, obj) -> tuple[Array, Array]:
    """Apply one defect inside ``obj`` (bool HxW); returns the new image and the changed pixels."""
    size = img.shape[0]
    # The outer ring of the object is where parts lose material.
    edge = obj & ~np.roll(obj, 3, 0) | obj & ~np.roll(obj, -3, 0)
    edge |= obj & ~np.roll(obj, 3, 1) | obj & ~np.roll(obj, -3, 1)
    if kind in ("scratch", "thread"):
        mask = (
            _polyline(rng, size, obj, rng.uniform(0.25, 0.4), 0.15, max(1, round(size / 30))) & obj
        )
        return _tint(
            img, mask, (0.95, 0.95, 0.92) if kind == "scratch" else (0.9, 0.8, 0.3), 0.7
        ), mask
    if kind == "crack":
        mask = (
            _polyline(rng, size, obj, rng.uniform(0.3, 0.45), 0.8, max(1, round(size / 30))) & obj
        )
        return _tint(img, mask, (0.08, 0.06, 0.05), 0.85), mask
    if kind == "hole":
        mask = _disk(rng, size, obj, rng.uniform(0.03, 0.07)) & obj
        return _tint(img, mask, (0.03, 0.03, 0.03), 0.92), mask
    if kind in ("stain", "contamination", "rust", "color"):
        color = {
            "stain": (0.25, 0.15, 0.08),
            "contamination": (0.2, 0.2, 0.15),
            "rust": (0.65, 0.3, 0.1),
            "color": (0.8, 0.25, 0.35),
        }[kind]
        mask = _blob(rng, size, obj, rng.uniform(0.06, 0.1)) & obj
        return _tint(img, mask, color, rng.uniform(0.55, 0.75)), mask
    if kind in ("missing_part", "chip", "cut", "missing_tip"):
        where = obj if kind in ("cut", "missing_tip") else edge
        mask = _disk(rng, size, where, rng.uniform(0.08, 0.12)) & obj
        out = img.copy()
        out[mask] = bg[mask]
        return out, mask
    if kind in ("deformation", "thread_damage"):
        mask = _blob(rng, size, obj, rng.uniform(0.07, 0.1)) & obj
        out = img.copy()
        flat = img[mask].mean(axis=0)
        # flattened / bent material loses its surface pattern; bent metal falls into shadow,
        # damaged threads are scraped bright
        shade = 0.6 if kind == "deformation" else 1.8
        out[mask] = 0.2 * img[mask] + 0.8 * np.clip(flat * shade, 0.0, 1.0)
        return out, mask
    raise ValueError(f"unknown synthetic defect {kind!r}")


@dataclass(frozen=True)
class _Spec:
    render: Callable[[np.random.Generator, int], tuple[Array, Array, Array, dict]] | None
    defects: dict[str, str]  # defect name -> defect kind
    where: dict[str, str] = field(default_factory=dict)  # defect name -> named sub-region


OBJECTS: dict[str, _Spec] = {
    "wood": _Spec(
        _wood, {"scratch": "scratch", "hole": "hole", "stain": "stain", "crack": "crack"}
    ),
    "fabric": _Spec(_fabric, {"hole": "hole", "thread": "thread", "color": "color", "cut": "cut"}),
    "washer": _Spec(
        _washer,
        {
            "scratch": "scratch",
            "missing_part": "missing_part",
            "rust": "rust",
            "bent": "deformation",
        },
    ),
    "tablet": _Spec(
        _tablet,
        {"crack": "crack", "contamination": "contamination", "color": "color", "chip": "chip"},
    ),
    "screw": _Spec(
        _screw,
        {"scratch": "scratch", "missing_tip": "missing_tip", "thread_damage": "thread_damage"},
        where={"missing_tip": "tip", "thread_damage": "shaft"},
    ),
}


def _rng(seed: int, *parts: object) -> np.random.Generator:
    key = zlib.crc32("/".join(map(str, parts)).encode())
    return np.random.default_rng([seed, key])


def render_sample(
    config: SyntheticConfig, obj: str, label: str, index: int, split: str = "test"
) -> tuple[Array, Array | None]:
    """One image (uint8 HxWx3) and, for a defect label, its mask (uint8 HxW, 0/255)."""
    spec = OBJECTS[obj]
    min_pixels = max(6, int(0.003 * config.image_size**2))
    for attempt in range(50):
        rng = _rng(config.seed, obj, split, label, index, attempt)
        img, bg, mask_obj, regions = spec.render(rng, config.image_size)
        if label == "good":
            return _to_uint8(img), None
        where = regions[spec.where[label]] if label in spec.where else mask_obj
        out, mask = _make_defect(spec.defects[label], rng, img, bg, where)
        if mask.sum() >= min_pixels:
            return _to_uint8(out), (mask.astype(np.uint8) * 255)
    raise RuntimeError(f"could not place a {label} defect on {obj} #{index}")  # pragma: no cover


def _to_uint8(img: Array) -> Array:
    return (np.clip(img, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def plan(config: SyntheticConfig) -> list[tuple[str, str, str, int]]:
    """Every (object, split, label, index) the config asks for, in writing order."""
    items = []
    for obj in config.objects:
        items += [(obj, "train", "good", i) for i in range(config.n_train_good)]
        items += [(obj, "test", "good", i) for i in range(config.n_test_good)]
        for defect in config.defects_of(obj):
            items += [(obj, "test", defect, i) for i in range(config.n_test_per_defect)]
    return items


def write_synthetic_dataset(
    root: str | Path, config: SyntheticConfig, progress: Callable | None = None
) -> list[dict]:
    """Write the dataset to ``root`` atomically and return one manifest row per image.

    Files are written to a temporary sibling folder that replaces ``root`` only when complete,
    so a crash never leaves a half-written dataset.
    """
    root = Path(root)
    rows = []
    with atomic_directory(root) as tmp:
        items = plan(config)
        for obj, split, label, i in progress(items) if progress else items:
            img, mask = render_sample(config, obj, label, i, split)
            rel = Path(obj, split, label, f"{i:03d}.png")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(tmp / rel)
            row = {"object": obj, "split": split, "label": label, "image_path": rel.as_posix()}
            row["mask_path"] = None
            if mask is not None:
                mrel = Path(obj, "ground_truth", label, f"{i:03d}_mask.png")
                (tmp / mrel).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(mask).save(tmp / mrel)
                row["mask_path"] = mrel.as_posix()
            rows.append(row)
    return rows
