"""Each layout reader on a small tree written by the test."""

from pathlib import Path

import numpy as np
from PIL import Image

from emit_iad.sources import SourceConfig, build_image_index


def write_image(path: Path, size=(12, 9), fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size[1], size[0], 3), 120, np.uint8)).save(path, format=fmt)
    return path


def write_mask(path: Path, box, size=(12, 9), value=255) -> Path:
    mask = np.zeros((size[1], size[0]), np.uint8)
    x0, y0, x1, y1 = box
    mask[y0 : y1 + 1, x0 : x1 + 1] = value
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(path)
    return path


def test_mvtec_ad_layout(tmp_path):
    root = tmp_path / "mvtec"
    write_image(root / "bottle/train/good/000.png")
    write_image(root / "bottle/test/good/000.png")
    write_image(root / "bottle/test/broken_large/000.png")
    write_mask(root / "bottle/ground_truth/broken_large/000_mask.png", (9, 0, 11, 1))
    (root / "license.txt").write_text("not an object")
    index, report = build_image_index([SourceConfig("DS-MVTec", "MVTec-AD", str(root))])
    assert report.empty
    assert index[["split", "label", "is_anomalous"]].values.tolist() == [
        ["test", "broken_large", True], ["test", "good", False], ["train", "good", False],
    ]  # fmt: skip
    bad = index[index.is_anomalous].iloc[0]
    assert bad.dataset == "DS-MVTec" and bad.object == "bottle"
    assert bad.mask_path.endswith("ground_truth/broken_large/000_mask.png")
    assert (bad.width, bad.height) == (12, 9)
    assert bad.defect_region == "top right"
    assert list(bad.bbox) == [9, 0, 11, 1]
    assert bad.defect_area == 6 / 108


def test_visa_one_class_layout_with_jpg_images(tmp_path):
    root = tmp_path / "visa"
    write_image(root / "candle/train/good/0001.JPG", fmt="JPEG")
    write_image(root / "candle/test/bad/0002.JPG", fmt="JPEG")
    write_mask(root / "candle/ground_truth/bad/0002.png", (0, 6, 2, 8))
    index, report = build_image_index([SourceConfig("VisA", "visa", str(root))])
    assert report.empty and len(index) == 2
    bad = index[index.is_anomalous].iloc[0]
    assert bad.label == "bad" and bad.defect_region == "bottom left"


def test_mvtec_loco_unites_several_masks_and_reads_validation(tmp_path):
    root = tmp_path / "loco"
    write_image(root / "juice_bottle/train/good/000.png")
    write_image(root / "juice_bottle/validation/good/000.png")
    write_image(root / "juice_bottle/test/logical_anomalies/000.png")
    gt = root / "juice_bottle/ground_truth/logical_anomalies/000"
    write_mask(gt / "000.png", (0, 0, 1, 1), value=7)  # LOCO masks use other values than 255
    write_mask(gt / "001.png", (10, 7, 11, 8))
    index, _ = build_image_index([SourceConfig("MVTec-LOCO", "mvtec_loco", str(root))])
    assert sorted(index.split) == ["test", "train", "validation"]
    bad = index[index.is_anomalous].iloc[0]
    assert bad.mask_path.count(";") == 1
    assert list(bad.bbox) == [0, 0, 11, 8]
    assert bad.defect_area == 8 / 108


def test_objects_filter_and_several_sources(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_image(a / "bottle/train/good/000.png")
    write_image(a / "cable/train/good/000.png")
    write_image(b / "pcb1/train/good/000.png")
    index, _ = build_image_index(
        [SourceConfig("A", "mvtec_ad", str(a), ("cable",)), SourceConfig("B", "visa", str(b))]
    )
    assert index[["dataset", "object"]].values.tolist() == [["A", "cable"], ["B", "pcb1"]]


def test_relative_roots_stay_relative(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "data/mv/bottle/train/good/000.png")
    index, _ = build_image_index([SourceConfig("A", "mvtec_ad", "data/mv")])
    assert index.image_path.tolist() == ["data/mv/bottle/train/good/000.png"]
