import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emit_iad.sources import (
    SourceConfig,
    SyntheticConfig,
    build_image_index,
    write_synthetic_dataset,
)
from emit_iad.sources.regions import REGION_NAMES
from emit_iad.sources.synthetic import OBJECTS, render_sample

SMALL = SyntheticConfig(seed=3, image_size=64, n_train_good=2, n_test_good=2, n_test_per_defect=2)


def _digest(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_gives_byte_identical_files(tmp_path):
    write_synthetic_dataset(tmp_path / "a", SMALL)
    write_synthetic_dataset(tmp_path / "b", SMALL)
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b
    assert len(a) == 4 * (2 + 2) + sum(2 * 2 for o in SMALL.objects for _ in OBJECTS[o].defects)


def test_other_seed_changes_the_images(tmp_path):
    write_synthetic_dataset(tmp_path / "a", SMALL)
    write_synthetic_dataset(tmp_path / "b", SyntheticConfig(**{**SMALL.__dict__, "seed": 4}))
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a.keys() == b.keys()
    assert sum(a[k] != b[k] for k in a) == len(a)


def test_an_image_does_not_depend_on_the_other_objects_or_counts():
    few = SyntheticConfig(seed=1, objects=("tablet",), n_test_per_defect=1)
    many = SyntheticConfig(seed=1, objects=("wood", "tablet", "screw"), n_test_per_defect=9)
    img_a, mask_a = render_sample(few, "tablet", "chip", 0)
    img_b, mask_b = render_sample(many, "tablet", "chip", 0)
    assert np.array_equal(img_a, img_b) and np.array_equal(mask_a, mask_b)


def test_layout_is_mvtec_ad_and_masks_match_their_images(tmp_path):
    rows = write_synthetic_dataset(tmp_path / "syn", SMALL)
    root = tmp_path / "syn"
    assert (root / "wood/train/good/000.png").is_file()
    assert (root / "screw/ground_truth/missing_tip/001_mask.png").is_file()
    for row in rows:
        img = np.asarray(Image.open(root / row["image_path"]))
        assert img.shape == (64, 64, 3) and img.dtype == np.uint8
        if row["label"] == "good":
            assert row["mask_path"] is None
            continue
        mask = np.asarray(Image.open(root / row["mask_path"]))
        assert mask.shape == (64, 64)
        assert set(np.unique(mask)) == {0, 255}
        assert (mask > 0).sum() >= 6


def test_defect_changes_exactly_the_masked_pixels_of_a_rendered_object():
    cfg = SyntheticConfig(seed=0, image_size=96)
    img, mask = render_sample(cfg, "wood", "hole", 5)
    inside = img[mask > 0].astype(float).mean()
    outside = img[mask == 0].astype(float).mean()
    assert inside < 0.5 * outside  # a hole is dark against the wood


def test_normal_images_vary(tmp_path):
    cfg = SyntheticConfig(seed=0, image_size=64)
    a, _ = render_sample(cfg, "washer", "good", 0, "train")
    b, _ = render_sample(cfg, "washer", "good", 1, "train")
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 5


def test_default_defects_fall_in_every_cell_of_the_grid(tmp_path):
    write_synthetic_dataset(tmp_path / "syn", SyntheticConfig(image_size=64, n_train_good=0))
    index, report = build_image_index([SourceConfig("syn", "synthetic", str(tmp_path / "syn"))])
    assert report.empty
    assert set(index.defect_region.dropna()) == set(REGION_NAMES)
    per_object = index[index.is_anomalous].groupby("object").label.nunique()
    assert (per_object >= 3).all() and len(per_object) >= 4


def test_a_crash_midway_keeps_the_previous_dataset_and_leaves_no_temp_folder(tmp_path):
    root = tmp_path / "syn"
    write_synthetic_dataset(root, SMALL)
    before = _digest(root)

    def explode_after_five(items):
        for i, item in enumerate(items):
            if i == 5:
                raise KeyboardInterrupt
            yield item

    other = SyntheticConfig(**{**SMALL.__dict__, "seed": 99})
    with pytest.raises(KeyboardInterrupt):
        write_synthetic_dataset(root, other, progress=explode_after_five)
    assert _digest(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["syn"]


@pytest.mark.parametrize(
    ("params", "match"),
    [({"objects": ["teapot"]}, "unknown synthetic object"), ({"image_size": 8}, "at least 32"),
     ({"defects": {"wood": ["rust"]}}, "unknown defect")],
)  # fmt: skip
def test_bad_config_says_what_to_change(params, match):
    with pytest.raises(ValueError, match=match):
        SyntheticConfig.from_params(params)
