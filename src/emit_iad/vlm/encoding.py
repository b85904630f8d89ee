"""The processor's outputs per question, kept between batches.

SFT shows every question once an epoch, in a new batch each time, and the processor call (chat
text → tokens, images → tiles) took a third of a step on the offline default. Inside
:func:`kept` (SFT's training steps) each question is encoded on its own, once, and a batch is
assembled from the kept encodings: the tokens left padded as the processor pads them,
everything else concatenated in order. The result equals the processor's batch output element
for element (tests/vlm/test_encoding.py, for InternVL and Qwen2.5-VL). Elsewhere (questions
seen once: evaluation, rollouts) the processor encodes the whole batch in one call, which is
three times faster than question by question; so does a processor that pads on the right.

Written here because the processors encode whole batches only; nothing in transformers keeps a
sample's encoding between calls.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar

import torch
import torch.nn.functional as F
from cachetools import LRUCache

# processor outputs aligned with the tokens (rows × sequence; left padded, with these values,
# None: the tokenizer's pad id); every other output is per image (concatenated)
TOKEN_ALIGNED = {"input_ids": None, "attention_mask": 0, "mm_token_type_ids": 0,
                 "token_type_ids": 0}  # fmt: skip
TOKEN_KEYS = tuple(TOKEN_ALIGNED)
ENCODING_CACHE_BYTES = 1024 * 2**20  # the offline SFT set needs about 250 MB


def _nbytes(value) -> int:
    if isinstance(value, dict):
        return sum(v.nbytes for v in value.values() if isinstance(v, torch.Tensor)) or 1
    return value.nbytes if isinstance(value, torch.Tensor) else 1


class EncodingCache:
    """Per processor (held weakly: a model dropped drops its encodings), a byte-bounded LRU of
    whatever ``make`` returns for a key (a question's encoding, an image's heatmap pixels)."""

    def __init__(self, max_bytes: int = ENCODING_CACHE_BYTES):
        self.max_bytes = max_bytes
        self._caches: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def get(self, owner, key, make: Callable):
        with self._lock:
            cache = self._caches.get(owner)
            if cache is None:
                cache = self._caches[owner] = LRUCache(self.max_bytes, getsizeof=_nbytes)
            if key in cache:
                return cache[key]
        value = make()
        with self._lock:
            if _nbytes(value) <= self.max_bytes:
                cache[key] = value
        return value


ENCODINGS = EncodingCache()
_KEPT: ContextVar[bool] = ContextVar("emit_iad_encodings_kept", default=False)


@contextmanager
def kept() -> Iterator[None]:
    """Batches collated inside keep their questions' encodings for the next time."""
    token = _KEPT.set(True)
    try:
        yield
    finally:
        _KEPT.reset(token)


def keeps(processor) -> bool:
    """Inside :func:`kept`, with a processor that pads on the left (the project's collate)."""
    return _KEPT.get() and getattr(processor.tokenizer, "padding_side", "right") == "left"


def encode_one(processor, text: str, images: Sequence, image_kwargs: dict) -> dict:
    out = processor(text=[text], images=list(images) or None, return_tensors="pt", **image_kwargs)
    return {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}


def assemble(encodings: Sequence[dict], pad_token_id: int) -> dict[str, torch.Tensor]:
    """One batch from per-question encodings, as the processor pads it (left).

    >>> a = {"input_ids": torch.tensor([[5, 6]]), "attention_mask": torch.tensor([[1, 1]])}
    >>> b = {"input_ids": torch.tensor([[7]]), "attention_mask": torch.tensor([[1]])}
    >>> assemble([a, b], pad_token_id=0)["input_ids"].tolist()
    [[5, 6], [0, 7]]
    """
    length = max(e["input_ids"].shape[1] for e in encodings)
    out = {}
    for key in dict.fromkeys(k for e in encodings for k in e):
        parts = [e[key] for e in encodings if key in e]
        if key in TOKEN_ALIGNED:
            fill = pad_token_id if TOKEN_ALIGNED[key] is None else TOKEN_ALIGNED[key]
            parts = [F.pad(p, (length - p.shape[1], 0), value=fill) for p in parts]
        out[key] = torch.cat(parts)
    return out
