"""Model folders never execute code (issue #27, item 8): weights as pickles are refused, and a
config's `auto_map` pointing at a module in the folder is never imported."""

import contextlib
import json

import pytest
import torch
from safetensors.torch import load_file

from emit_iad.vlm.bundle import ModelLoadError
from emit_iad.vlm.loading import load_vlm


def test_a_folder_with_pickled_weights_is_refused_naming_the_file(tiny_vlm, tmp_path):
    folder = tmp_path / "base"
    tiny_vlm.save(folder)
    weights = next(folder.glob("model*.safetensors"))
    torch.save(load_file(str(weights)), folder / "pytorch_model.bin")  # a pickle instead
    weights.unlink()
    for index in folder.glob("model*.safetensors.index.json"):
        index.unlink()
    with pytest.raises(ModelLoadError, match=r"pytorch_model\.bin.*safetensors only"):
        load_vlm(folder)


def test_an_auto_map_in_the_folder_is_never_imported(tiny_vlm, tmp_path):
    folder = tmp_path / "base"
    tiny_vlm.save(folder)
    marker = tmp_path / "code-ran"
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModelForImageTextToText": "evil.Evil", "AutoConfig": "evil.Evil"}
    (folder / "config.json").write_text(json.dumps(config))
    with contextlib.suppress(ModelLoadError, ValueError, OSError):
        load_vlm(folder)  # the built-in class is used, or the load is refused
    assert not marker.exists()
