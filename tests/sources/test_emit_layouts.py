"""EMIT's other sources, each on a small tree written in the dataset's published structure:
MPDD and GoodsAD (folders), Real-IAD (per-object JSON, camera views) and VISION (COCO polygons)."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from emit_iad.sources import IngestionError, SourceConfig, build_image_index
from tests.sources.test_layouts import write_image, write_mask


def test_mpdd_is_read_in_mvtec_ads_layout(tmp_path):
    root = tmp_path / "MPDD"
    write_image(root / "bracket_black/train/good/000.png")
    write_image(root / "bracket_black/test/scratches/000.png")
    write_mask(root / "bracket_black/ground_truth/scratches/000_mask.png", (0, 0, 2, 2))
    index, report = build_image_index([SourceConfig("MPDD", "mpdd", str(root))])
    assert report.empty
    assert index[["split", "label"]].values.tolist() == [["test", "scratches"], ["train", "good"]]
    assert index.defect_region.iloc[0] == "top left"


def test_goodsad_masks_share_the_images_stem(tmp_path):
    root = tmp_path / "GoodsAD"
    write_image(root / "drink_can/train/good/0001.jpg", fmt="JPEG")
    write_image(root / "drink_can/test/deformation/0002.jpg", fmt="JPEG")
    write_mask(root / "drink_can/ground_truth/deformation/0002.png", (9, 6, 11, 8))
    index, report = build_image_index([SourceConfig("GoodsAD", "goodsad", str(root))])
    assert report.empty and len(index) == 2
    bad = index[index.is_anomalous].iloc[0]
    assert bad.label == "deformation" and bad.defect_region == "bottom right"
    assert bad.mask_path.endswith("ground_truth/deformation/0002.png")


def realiad_tree(root: Path, missing_mask: bool = False) -> Path:
    """Real-IAD: realiad_256/<object>/{OK,NG/<code>}/<sample>/<views>, realiad_jsons/<object>.json
    with paths relative to the object's folder; an NG sample has views without the defect."""
    obj = root / "realiad_256" / "audiojack"
    ok = "OK/S0001/audiojack_0001_OK_C1_20230922.jpg"
    ng_seen = "NG/HS/S0055/audiojack_0055_NG_HS_C3_20230922.jpg"
    ng_hidden = "NG/HS/S0055/audiojack_0055_NG_HS_C5_20230922.jpg"
    for rel in (ok, ng_seen, ng_hidden):
        write_image(obj / rel, fmt="JPEG")
    if not missing_mask:
        write_mask(obj / ng_seen.replace(".jpg", ".png"), (3, 3, 5, 5))
    meta = {"meta": {"prefix": "", "normal_class": "OK"},
            "train": [{"category": "audiojack", "anomaly_class": "OK", "image_path": ok,
                       "mask_path": None}],
            "test": [{"category": "audiojack", "anomaly_class": "HS", "image_path": ng_seen,
                      "mask_path": ng_seen.replace(".jpg", ".png")},
                     {"category": "audiojack", "anomaly_class": "OK", "image_path": ng_hidden,
                      "mask_path": None}]}  # fmt: skip
    (root / "realiad_jsons" / "realiad_jsons").mkdir(parents=True)
    (root / "realiad_jsons" / "realiad_jsons" / "audiojack.json").write_text(json.dumps(meta))
    return root


def test_real_iad_reads_its_json_splits_views_and_defect_codes(tmp_path):
    root = realiad_tree(tmp_path / "Real-IAD")
    src = SourceConfig.from_params({"name": "Real-IAD", "layout": "real_iad", "root": str(root),
                                    "options": {"resolution": 256}})  # fmt: skip
    index, report = build_image_index([src])
    assert report.empty
    rows = index.sort_values("image_path")[["split", "label", "is_anomalous"]].values.tolist()
    # the hidden C5 view of the NG sample is normal, as Real-IAD labels it
    assert sorted(rows) == [["test", "good", False], ["test", "scratch", True],
                            ["train", "good", False]]  # fmt: skip
    bad = index[index.is_anomalous].iloc[0]
    assert bad.object == "audiojack" and bad.defect_region == "center"


def test_real_iad_problems_name_the_file(tmp_path):
    root = realiad_tree(tmp_path / "Real-IAD", missing_mask=True)
    src = SourceConfig("Real-IAD", "real_iad", str(root), options=(("resolution", "256"),))
    with pytest.raises(IngestionError, match="has no mask"):
        build_image_index([src])
    index, report = build_image_index([src], on_error="skip")
    assert len(index) == 2 and "NG_HS_C3" in report.path.iloc[0]
    (root / "realiad_jsons/realiad_jsons/audiojack.json").write_text("{not json")
    with pytest.raises(IngestionError, match=r"audiojack\.json.*not valid JSON"):
        build_image_index([src])
    with pytest.raises(IngestionError, match="unknown options"):
        SourceConfig("Real-IAD", "real_iad", str(root), options=(("resolutoin", "256"),))


def coco(folder: Path, images: list[str], annotations: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name in images:
        write_image(folder / name, size=(20, 10), fmt="JPEG")
    data = {"images": [{"id": i, "file_name": n, "width": 20, "height": 10}
                       for i, n in enumerate(images)],
            "annotations": annotations,
            "categories": [{"id": 1, "name": "Scratch"}, {"id": 2, "name": "Dent"}]}  # fmt: skip
    (folder / "_annotations.coco.json").write_text(json.dumps(data))


def test_vision_rasterises_coco_polygons_into_masks(tmp_path):
    root = tmp_path / "VISION"
    small = {"id": 1, "image_id": 1, "category_id": 1, "area": 2.0,
             "segmentation": [[0, 0, 2, 0, 2, 2, 0, 2]]}  # fmt: skip
    large = {"id": 2, "image_id": 1, "category_id": 2, "area": 20.0,
             "segmentation": [[14, 5, 19, 5, 19, 9, 14, 9]]}  # fmt: skip
    coco(root / "Casting/train", ["a.jpg", "b.jpg"], [small, large])
    coco(root / "Casting/val", ["c.jpg"], [])
    (root / "Casting/inference").mkdir()  # unlabelled: not indexed
    masks = tmp_path / "masks"
    src = SourceConfig.from_params({"name": "VISION", "layout": "vision", "root": str(root),
                                    "options": {"mask_dir": str(masks)}})  # fmt: skip
    index, report = build_image_index([src])
    assert report.empty
    assert index[["split", "label"]].values.tolist() == [
        ["train", "dent"], ["train", "good"], ["validation", "good"]]  # fmt: skip
    bad = index[index.is_anomalous].iloc[0]
    mask = np.asarray(Image.open(bad.mask_path)) > 0
    assert bad.mask_path == str(masks / "VISION/Casting/train/b_mask.png")
    assert mask.shape == (10, 20) and mask[0, 0] and mask[7, 16] and not mask[5, 8]
    assert bad.defect_region == "bottom right"  # the union's largest part


def test_vision_refuses_rle_segmentation_naming_the_image(tmp_path):
    root = tmp_path / "VISION"
    rle = {"id": 7, "image_id": 0, "category_id": 1, "area": 3.0,
           "segmentation": {"counts": [0, 3], "size": [10, 20]}}  # fmt: skip
    coco(root / "Cable/train", ["a.jpg"], [rle])
    src = SourceConfig("VISION", "vision", str(root), options=(("mask_dir", str(tmp_path)),))
    with pytest.raises(IngestionError, match=r"a\.jpg: annotation 7 .* no polygon"):
        build_image_index([src])


def test_a_source_carries_its_data_role_into_the_index(tmp_path):
    root = tmp_path / "mv"
    write_image(root / "plate/train/good/000.png")
    index, _ = build_image_index([SourceConfig.from_params(
        {"name": "mv", "layout": "mvtec_ad", "root": str(root), "defect_images": False})])
    assert index.defect_images.tolist() == [False]
    assert len(index.pixel_digest.iloc[0]) == 40
    with pytest.raises(IngestionError, match="defect_images is 'no'"):
        SourceConfig.from_params({"name": "mv", "layout": "mvtec_ad", "root": str(root),
                                  "defect_images": "no"})  # fmt: skip
