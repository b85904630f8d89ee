"""Every bad input gets an error naming the file and the fix; `skip` lists it in the report."""

import os
from pathlib import Path

import pytest

from emit_iad.sources import IngestionError, SourceConfig, build_image_index
from tests.sources.test_layouts import write_image, write_mask


@pytest.fixture
def tree(tmp_path):
    root = tmp_path / "mv"
    write_image(root / "bottle/train/good/000.png")
    write_image(root / "bottle/test/crack/000.png")
    write_mask(root / "bottle/ground_truth/crack/000_mask.png", (0, 0, 3, 3))
    return root


def _index(root, on_error="fail"):
    return build_image_index([SourceConfig("mv", "mvtec_ad", str(root))], on_error=on_error)


def _break_corrupt(root):
    bad = root / "bottle/test/good/001.png"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return bad, "cannot be decoded"


def _break_truncated(root):
    path = write_image(root / "bottle/train/good/002.png", size=(200, 200))
    path.write_bytes(path.read_bytes()[:120])
    return path, "cannot be decoded"


def _break_missing_mask(root):
    return write_image(root / "bottle/test/hole/000.png"), "has no mask; expected"


def _break_mask_size(root):
    write_image(root / "bottle/test/hole/000.png")
    mask = write_mask(root / "bottle/ground_truth/hole/000_mask.png", (0, 0, 1, 1), size=(6, 6))
    return mask, "mask is 6x6 but its image 000.png is 12x9"


def _break_empty_mask(root):
    write_image(root / "bottle/test/hole/000.png")
    mask = write_mask(root / "bottle/ground_truth/hole/000_mask.png", (0, 0, 1, 1), value=0)
    return mask, "mask of a defective image is empty"


def _break_empty_object(root):
    (root / "cable/train/good").mkdir(parents=True)
    return root / "cable", "holds no images"


def _break_completely_empty_object(root):
    (root / "cable").mkdir()  # no train/, no test/: it was once skipped without a word
    return root / "cable", "object folder is empty"


def _break_bomb(root):  # 400 M pixels: PIL's own DecompressionBombError, once without a path
    from PIL import Image

    path = root / "bottle/train/good/003.png"
    Image.new("1", (20000, 20000)).save(path)
    return path, "cannot be decoded as an image (DecompressionBombError"


def _break_oversized(root):  # 100 M pixels: over the limit, under PIL's error (only a warning)
    from PIL import Image

    path = root / "bottle/train/good/004.png"
    Image.new("1", (10000, 10000)).save(path)
    return path, "more than the 89,478,485 an image may have"


def _break_not_utf8(root):  # once a crash at the parquet save
    path = root / "bottle/train/good"
    Path(os.fsdecode(os.fsencode(path) + b"/caf\xe9.png")).write_bytes(
        (path / "000.png").read_bytes())
    return path / "caf\\xe9.png", "name is not valid UTF-8"


def _break_dangling_link(root):  # once left out of the index without a word
    link = root / "bottle/train/good/005.png"
    link.symlink_to(root / "nowhere.png")
    return link, "symbolic link that leads nowhere"


def _break_link_loop(root):
    link = root / "bottle/test/good/006.png"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(link)
    return link, "symbolic link that leads nowhere"


BREAKERS = [_break_corrupt, _break_truncated, _break_missing_mask, _break_mask_size,
            _break_empty_mask, _break_empty_object, _break_completely_empty_object,
            _break_bomb, _break_oversized, _break_not_utf8, _break_dangling_link,
            _break_link_loop]  # fmt: skip


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__[7:])
def test_fail_mode_names_the_file_and_the_fix(tree, breaker):
    path, reason = breaker(tree)
    with pytest.raises(IngestionError) as info:
        _index(tree)
    message = str(info.value)
    assert str(path) in message and reason in message
    assert "How to fix" in message and "on_error: skip" in message
    err = info.value  # no chained traceback from deep inside PIL
    assert err.__cause__ is None and (err.__context__ is None or err.__suppress_context__)


@pytest.mark.parametrize("breaker", BREAKERS, ids=lambda f: f.__name__[7:])
def test_skip_mode_goes_on_and_reports_the_file(tree, breaker):
    path, reason = breaker(tree)
    index, report = _index(tree, on_error="skip")
    assert report.path.tolist() == [str(path)]
    assert reason in report.reason.iloc[0] and report.dataset.iloc[0] == "mv"
    assert str(path) not in index.image_path.tolist()
    assert len(index) >= 2  # the good files are still indexed


def test_unknown_layout_is_refused_with_the_valid_ones():
    with pytest.raises(IngestionError, match=r"(?s)unknown dataset layout 'mvtec2'.*mvtec_ad"):
        SourceConfig.from_params({"name": "x", "layout": "mvtec2", "root": "."})


def test_missing_root_is_a_configuration_error_even_in_skip_mode(tmp_path):
    with pytest.raises(IngestionError, match="does not exist") as info:
        _index(tmp_path / "nowhere", on_error="skip")
    assert "parameters_ingestion.yml" in str(info.value)


def test_unknown_on_error_value(tree):
    with pytest.raises(IngestionError, match="on_error"):
        _index(tree, on_error="ignore")
