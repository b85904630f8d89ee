"""Published model layouts, shrunk in width and depth, with random weights, saved with
``save_pretrained`` so that they load like hub checkpoints (``emit_iad.vlm.layouts``, scale
"tiny"): InternVL3-1B-hf's and Qwen2.5-VL-3B-Instruct's structure and processors. The tokenizers
have no ``<FS_PROMPT>``, as a published checkpoint, so that the add-token path runs.
"""

from __future__ import annotations

from emit_iad.vlm.layouts import save_layout

from .conftest import TEXTS


def internvl3_1b(folder) -> None:
    save_layout("InternVL3", folder, "tiny", TEXTS)


def qwen2_5_vl_3b(folder) -> None:
    save_layout("Qwen2.5-VL", folder, "tiny", TEXTS)


LAYOUTS = {"InternVL3-1B-hf": internvl3_1b, "Qwen2.5-VL-3B-Instruct": qwen2_5_vl_3b}
