"""Question records → chat messages following a named protocol, and batches → model inputs.

``mmad`` (MMAD's protocol, 1-shot default): the system instruction; the k template images
("Following is/are k image of normal sample, ..."); "Following is the query image:" and the
query; the question with its options written ``"A. text\\n"``. Optional domain knowledge comes
first. For models trained to reason, the instruction asks for
``<think>…</think><answer>…</answer>``.

``emit`` (EMIT's training samples and its ``evaluate_batch_mmad_choice.py``): the system prompt
alone; ``Image-1: <image>\\nImage-2: <image>`` with the template first, for Anomaly Detection
and the defect questions only (``Query image: <image>`` otherwise); then the task, the object's
domain knowledge (its normal characteristics and every defect type's description, again for
Anomaly Detection and the defect questions only), the answer format (the bare letter, or
think/answer tags) and ``Question: ...`` with the options. The sentences around these parts
are this project's wording.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import torch
from cachetools import LRUCache, cached
from PIL import Image

from emit_iad.mmad.protocol import ANOMALY_DETECTION, DEFECT_TYPES, LETTERS, TEXT_QUERY_PREFIX
from emit_iad.params import setting
from emit_iad.sources.images import load_rgb
from emit_iad.vlm.encoding import ENCODINGS, assemble, encode_one, keeps
from emit_iad.vlm.families import DEFAULT as DEFAULT_FAMILY
from emit_iad.vlm.vision import heatmap_pixels

INSTRUCTION = (
    "You are an industrial inspector who checks products by images. You should judge whether "
    "there is a defect in the query image and answer the questions about it."
)
PLAIN_ANSWER = "Answer with the option's letter from the given choices directly."
THINK_ANSWER = (
    "First think about the question between <think> and </think>, then give the option's "
    "letter between <answer> and </answer>."
)
TEMPLATE_TEXT = (
    "Following is/are {k} image of normal sample, which can be used as a template to compare "
    "the image being queried."
)
QUERY_TEXT = "Following is the query image:"
KNOWLEDGE_TEXT = (
    "Following is the domain knowledge which contains some type of defect and the normal object "
    "characteristics: \n {knowledge}"
)
ANSWER_FORMATS = ("plain", "think")
PROTOCOLS = ("mmad", "emit")
EMIT_SYSTEM = "You are an industrial inspector who checks products by images."
EMIT_TWO_IMAGES = (
    "Both images show a product. The product in the first image is in perfect condition, "
    "without any defect. Inspect the product in the last image to answer a multiple-choice "
    "question; exactly one option is correct."
)
EMIT_MORE_IMAGES = (
    "Each image shows a product. The products in the first {k} images are in perfect "
    "condition, without any defect. Inspect the product in the last image to answer a "
    "multiple-choice question; exactly one option is correct."
)
EMIT_ONE_IMAGE = (
    "Inspect the product in the image to answer a multiple-choice question; exactly one "
    "option is correct."
)
EMIT_KNOWLEDGE = (
    "Domain knowledge about the normal product and the types of defect it can have:\n{knowledge}"
)
EMIT_PLAIN = ("Answer with the letter of the correct option, such as 'A'. Do not include any "
              "text in your response.")  # fmt: skip
EMIT_THINK = (
    "Answer with the letter of the correct option, such as 'A'. Write your analysis between "
    "<think> and </think> first, then the letter between <answer> and </answer>: "
    "<think>...</think><answer>...</answer>."
)


@dataclass(frozen=True)
class PromptConfig:
    """How questions are asked; mirrors the ``prompt`` block of the stages' parameters."""

    k_shot: int = setting(1, "normal template images shown before the query (MMAD: 1)")
    template_source: str = setting(
        "similar", "similar: the most alike normal images | random (MMAD's two settings)")
    answer_format: str = setting(
        "plain", "plain: the option letter | think: <think>...</think><answer>...</answer>")
    domain_knowledge: bool = setting(False, "MMAD's domain knowledge of the object in the prompt")
    protocol: str = setting("mmad", "mmad | emit: EMIT's prompt wording (module docstring)")

    def __post_init__(self) -> None:
        if self.protocol not in PROTOCOLS:
            raise ValueError(f"prompt.protocol must be one of {PROTOCOLS}, not {self.protocol!r}")
        if self.template_source not in ("similar", "random"):
            raise ValueError("prompt.template_source must be 'similar' or 'random'")
        if self.answer_format not in ANSWER_FORMATS:
            raise ValueError(f"prompt.answer_format must be one of {ANSWER_FORMATS}")
        if self.k_shot < 0:
            raise ValueError("prompt.k_shot must be >= 0")

    @classmethod
    def from_params(cls, params: dict | None) -> PromptConfig:
        return cls(**(params or {}))


def format_question(question: str, options: Sequence[str]) -> str:
    """MMAD's question text.

    >>> format_question("Is there any defect in the object?", ["Yes.", "No."])
    'Is there any defect in the object?\\nA. Yes.\\nB. No.\\n'
    """
    return question + "\n" + "".join(f"{LETTERS[i]}. {o}\n" for i, o in enumerate(options))


def templates_of(record, config: PromptConfig) -> list[str]:
    key = "similar_templates" if config.template_source == "similar" else "random_templates"
    templates = record[key]
    return list(templates if templates is not None else [])[: config.k_shot]


def compares(record) -> bool:
    """EMIT shows the template (and the domain knowledge) for these question types only."""
    return record["type"] == ANOMALY_DETECTION or record["type"] in DEFECT_TYPES


def _record_text(record, key: str) -> str | None:
    value = record.get(key) if hasattr(record, "get") else None
    return value if isinstance(value, str) and value else None


def emit_messages(
    record, config: PromptConfig, knowledge: str | None = None, fewshot_tokens: str = ""
) -> tuple[list[dict], list[str]]:
    """EMIT's protocol (module docstring): messages and the image paths they show, in order."""
    templates = templates_of(record, config) if compares(record) else []
    parts: list[dict] = []
    if templates:
        for i in range(len(templates) + 1):
            label = f"Image-{i + 1}: " if i == 0 else f"\nImage-{i + 1}: "
            parts += [{"type": "text", "text": label}, {"type": "image"}]
        intro = EMIT_TWO_IMAGES if len(templates) == 1 else EMIT_MORE_IMAGES.format(
            k=len(templates))
    else:
        parts += [{"type": "text", "text": "Query image: "}, {"type": "image"}]
        intro = EMIT_ONE_IMAGE
    if fewshot_tokens:
        parts.append({"type": "text", "text": " " + fewshot_tokens})
    text = "\n" + intro + "\n"
    query_text = _record_text(record, "query_text")
    if query_text:
        text += TEXT_QUERY_PREFIX + query_text + "\n"
    if config.domain_knowledge and knowledge and compares(record):
        text += EMIT_KNOWLEDGE.format(knowledge=knowledge.strip()) + "\n"
    text += EMIT_THINK if config.answer_format == "think" else EMIT_PLAIN
    text += "\n\nQuestion: " + format_question(record["question"] + " ", list(record["options"]))
    parts.append({"type": "text", "text": text})
    messages = [{"role": "system", "content": EMIT_SYSTEM}, {"role": "user", "content": parts}]
    return messages, [*templates, record["query_image"]]


def build_messages(
    record, config: PromptConfig, knowledge: str | None = None, fewshot_tokens: str = ""
) -> tuple[list[dict], list[str]]:
    """Chat messages for one question and the image paths they show, in order.

    ``fewshot_tokens`` (EMIT's placeholders) go right after the query image when given.
    ``knowledge`` is the object's domain knowledge; a record's own ``knowledge`` (the qa
    stage's) is used when none is given.
    """
    knowledge = knowledge or _record_text(record, "knowledge")
    if config.protocol == "emit":
        return emit_messages(record, config, knowledge, fewshot_tokens)
    system = f"{INSTRUCTION}\n{THINK_ANSWER if config.answer_format == 'think' else PLAIN_ANSWER}"
    parts: list[dict] = []
    if config.domain_knowledge and knowledge:
        parts.append({"type": "text", "text": KNOWLEDGE_TEXT.format(knowledge=knowledge) + "\n"})
    templates = templates_of(record, config)
    if templates:
        parts.append({"type": "text", "text": TEMPLATE_TEXT.format(k=len(templates)) + "\n"})
        parts += [{"type": "image"} for _ in templates]
    parts += [{"type": "text", "text": QUERY_TEXT + "\n"}, {"type": "image"}]
    if fewshot_tokens:
        parts.append({"type": "text", "text": fewshot_tokens + "\n"})
    query_text = _record_text(record, "query_text")
    if query_text:
        parts.append({"type": "text", "text": TEXT_QUERY_PREFIX + query_text + "\n"})
    parts.append(
        {"type": "text", "text": format_question(record["question"], list(record["options"]))}
    )
    messages = [{"role": "system", "content": system}, {"role": "user", "content": parts}]
    return messages, [*templates, record["query_image"]]


def load_image(path: str) -> Image.Image:
    """RGB image, cached: every question shows its images again each epoch and templates recur
    across questions. The cache holds up to ``IMAGE_CACHE_BYTES`` of pixels (the whole offline
    dataset; about 170 real images of 1024²), least recently used first out.

    The cache key is the file itself (absolute path, size, modification time), not the path as
    written: a relative path names another file after a change of folder (two projects in one
    process, as in a notebook or the tests), and a regenerated file is read again."""
    return _load_image(*image_key(path))


def image_key(path: str) -> tuple[str, int, int]:
    """The file behind ``path``: absolute path, size and modification time."""
    resolved = Path(path).resolve()
    stat = resolved.stat()
    return str(resolved), stat.st_size, stat.st_mtime_ns


IMAGE_CACHE_BYTES = 512 * 2**20
_IMAGES: LRUCache = LRUCache(IMAGE_CACHE_BYTES, getsizeof=lambda im: im.width * im.height * 3)


@cached(_IMAGES, lock=threading.Lock())
def _load_image(path: str, size: int, mtime_ns: int) -> Image.Image:
    return load_rgb(path)


@dataclass
class Batch:
    """Model inputs of a batch of questions, with EMIT's few-shot images where used."""

    inputs: dict[str, torch.Tensor]  # input_ids, attention_mask, pixel_values (left padded)
    prompts: list[str]
    fewshot_query: torch.Tensor | None = None  # (B', 3, H, W) rows that carry placeholders
    fewshot_template: torch.Tensor | None = None
    fewshot_rows: list[int] | None = None
    heatmap: torch.Tensor | None = None  # (B', h, w), computed once, then reused (VLM.heatmap)

    def on(self, device: torch.device | str) -> dict[str, torch.Tensor]:
        """The model inputs on ``device`` (every processor output, not only the usual three)."""
        return {k: v.to(device) for k, v in self.inputs.items()}


def uses_fewshot(record, config: PromptConfig, question_types: Sequence[str]) -> bool:
    return record["type"] in question_types and bool(templates_of(record, config))


def collate(
    records: Sequence,
    processor,
    config: PromptConfig,
    fewshot_placeholders: str = "",
    fewshot_types: Sequence[str] = (),
    knowledge: dict | None = None,
    targets: Sequence[str] | None = None,
    image_kwargs: dict | None = None,
    heatmap_kwargs: dict | None = None,
) -> Batch:
    """Tokenise a batch (left padding); ``targets`` are appended as assistant replies.

    ``image_kwargs`` go to the image processor for the prompt's images (InternVL's tiling:
    ``crop_to_patches``, ``min_patches``, ``max_patches``, ``size``); ``heatmap_kwargs`` for the
    few-shot heatmap's query and template (one tile each by default; see
    :func:`~emit_iad.vlm.vision.heatmap_pixels`)."""
    prompts, encodings, images, fs_rows, fs_query, fs_template = [], [], [], [], [], []
    kwargs = dict(image_kwargs or {})
    cached = keeps(processor)  # inside encoding.kept(): encodings kept per question
    frozen = repr(sorted(kwargs.items()))
    for i, rec in enumerate(records):
        fewshot = bool(fewshot_placeholders) and uses_fewshot(rec, config, fewshot_types)
        know = (knowledge or {}).get((rec["dataset"], rec["object"]))
        messages, paths = build_messages(rec, config, know, fewshot_placeholders if fewshot else "")
        prompt = processor.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        if targets is not None:
            prompt += targets[i] + processor.tokenizer.eos_token
        prompts.append(prompt)
        keys = [image_key(p) for p in paths]
        imgs = [_load_image(*k) for k in keys]
        if cached:
            make = partial(encode_one, processor, prompt, imgs, kwargs)
            encodings.append(ENCODINGS.get(processor, (prompt, tuple(keys), frozen), make))
        else:
            images += imgs
        if fewshot:
            fs_rows.append(i)
            fs_template.append((keys[0], imgs[0]))
            fs_query.append((keys[-1], imgs[-1]))
    if cached:
        inputs = assemble(encodings, processor.tokenizer.pad_token_id)
    else:
        inputs = dict(processor(text=prompts, images=images, padding=True,
                                return_tensors="pt", **kwargs))  # fmt: skip
    batch = Batch(inputs, prompts)
    if fs_rows:
        settings = DEFAULT_FAMILY.heatmap_images if heatmap_kwargs is None else heatmap_kwargs
        keyed = fs_query + fs_template
        pix = (_heatmap_pixels(processor, keyed, settings) if cached else
               heatmap_pixels(processor.image_processor, [im for _, im in keyed], settings))
        batch.fewshot_query, batch.fewshot_template = pix[: len(fs_rows)], pix[len(fs_rows) :]
        batch.fewshot_rows = fs_rows
    return batch


def _heatmap_pixels(processor, keyed: list, settings: dict) -> torch.Tensor:
    """:func:`heatmap_pixels` image by image, each kept (``keyed``: (image key, image) pairs)."""
    frozen = repr(sorted(settings.items()))
    ip = processor.image_processor
    return torch.cat([ENCODINGS.get(ip, (key, frozen), partial(heatmap_pixels, ip, [im], settings))
                      for key, im in keyed])  # fmt: skip
