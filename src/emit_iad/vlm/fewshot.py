"""EMIT's few-shot heatmap, its projector and the soft prompt, injected into the input embeddings.

Heatmap: patch features of the query and of the template (the template also rotated by 90°,
180° and 270°) from several vision-encoder layers; per query patch the maximum cosine
similarity to template patches within a ±``window`` neighbourhood, averaged over layers;
anomaly map = 1 − similarity. A projector (BatchNorm2d(1) → Conv2d(1→hidden, k=4, s=2, p=1))
turns the map into tokens; ``n_soft`` learnable soft-prompt tokens go before them. Together they
replace ``<FS_PROMPT>`` placeholder tokens in the text embeddings, through a forward hook on the
embedding layer, so the same path serves training forward passes and ``generate()``.

Written by hand: no library implements EMIT's heatmap or its injection.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from emit_iad.params import setting
from emit_iad.vlm.vision import patch_features


@dataclass(frozen=True)
class FewShotConfig:
    """Mirrors ``model.fewshot`` in parameters_model.yml."""

    enabled: bool = setting(True, "false: no soft prompt, the plain VLM (vlm/build.py)")
    layers: tuple[int, ...] = setting(
        (1, 2), "vision hidden states compared (0 = patch embeddings; InternVL3-8B: 4, 8, 16, 20)")
    window: int = setting(6, "neighbourhood half-width in patches")
    n_soft: int = setting(9, "soft-prompt tokens")
    # One extra token: the projector's features max-pooled over the map. Not in EMIT; an 8B
    # LLM finds the hottest patch by itself, a 2-layer one learns it far faster from this token.
    peak_token: bool = setting(False, "+ the heat tokens max-pooled (not in EMIT)")
    # GELU + 1×1 conv after EMIT's conv, and each heat token told where it lies (a conv over
    # the patch coordinates, added). The first layer's RMSNorm erases a token's length, and a
    # linear projector puts "how hot" mostly into the length; the nonlinearity turns it into a
    # direction. Not in EMIT, whose 8B LLM copes; the tiny one learns nothing without it.
    projector_mlp: bool = setting(False, "+ GELU and a 1x1 conv after EMIT's conv (not in EMIT)")
    rotations: tuple[int, ...] = setting((0, 1, 2, 3), "template rotations, in quarter turns")
    question_types: tuple[str, ...] = setting(
        ("Anomaly Detection", "Defect Localization"), "question types given the soft prompt")

    @classmethod
    def from_dict(cls, d: dict) -> FewShotConfig:
        d = dict(d)
        for key in ("layers", "rotations", "question_types"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)

    def to_dict(self) -> dict:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def neighbourhood_mask(h: int, w: int, window: int, device=None) -> torch.Tensor:
    """(h*w, h*w) bool: query patch i may match template patch j (Chebyshev distance ≤ window)."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device), torch.arange(w, device=device), indexing="ij"
    )
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return ((ys[:, None] - ys[None, :]).abs() <= window) & (
        (xs[:, None] - xs[None, :]).abs() <= window
    )


def heatmap_from_features(
    query: Sequence[torch.Tensor], templates: Sequence[torch.Tensor], window: int
) -> torch.Tensor:
    """Anomaly map (B, h, w) in [0, 2] from per-layer patch features.

    query[l]: (B, h, w, C) features of layer l; templates[l]: (B, R, h, w, C) features of the R
    rotated templates. For every query patch: the max cosine similarity to any template patch
    of any rotation within the window; mean over layers; map = 1 − similarity. Computed in fp32
    whatever the features' dtype: in bf16 the similarities keep ~3 significant digits and the
    map collapses to a few dozen distinct values.
    """
    maps = []
    for q, t in zip(query, templates, strict=True):
        q, t = q.float(), t.float()
        b, h, w, c = q.shape
        r = t.shape[1]
        qn = nn.functional.normalize(q.reshape(b, h * w, c), dim=-1)  # [B, N, C]
        tn = nn.functional.normalize(t.reshape(b, r, h * w, c), dim=-1)  # [B, R, N, C]
        sim = torch.einsum("bnc,brmc->brnm", qn, tn)  # [B, R, N, N]
        mask = neighbourhood_mask(h, w, window, q.device)  # [N, N]
        sim = sim.masked_fill(~mask, float("-inf"))
        best = sim.amax(dim=(1, 3))  # [B, N]: best over rotations and template patches
        maps.append(best.reshape(b, h, w))
    return 1.0 - torch.stack(maps).mean(dim=0)


def heatmap_reference(query, templates, window: int) -> torch.Tensor:
    """Slow, obvious loop version of :func:`heatmap_from_features`, for tests."""
    b, h, w, _ = query[0].shape
    out = torch.zeros(b, h, w)
    for bi in range(b):
        for y in range(h):
            for x in range(w):
                per_layer = []
                for q, t in zip(query, templates, strict=True):
                    best = -2.0
                    for ri in range(t.shape[1]):
                        for ty in range(max(0, y - window), min(h, y + window + 1)):
                            for tx in range(max(0, x - window), min(w, x + window + 1)):
                                cos = nn.functional.cosine_similarity(
                                    q[bi, y, x], t[bi, ri, ty, tx], dim=0
                                )
                                best = max(best, float(cos))
                    per_layer.append(best)
                out[bi, y, x] = 1.0 - sum(per_layer) / len(per_layer)
    return out


def fewshot_heatmap(
    vision_tower: nn.Module,
    query_pixels: torch.Tensor,
    template_pixels: torch.Tensor,
    config: FewShotConfig,
) -> torch.Tensor:
    """Anomaly map (B, h, w) of query images against their templates (same preprocessing)."""
    b = query_pixels.shape[0]
    rotated = torch.stack(
        [torch.rot90(template_pixels, k, dims=(-2, -1)) for k in config.rotations], dim=1
    )  # [B, R, 3, H, W]
    r = rotated.shape[1]
    feats = patch_features(
        vision_tower, torch.cat([query_pixels, rotated.flatten(0, 1)]), config.layers
    )
    query = [f[:b] for f in feats]
    templates = [f[b:].reshape(b, r, *f.shape[1:]) for f in feats]
    return heatmap_from_features(query, templates, config.window)


class FewShotModule(nn.Module):
    """Projector and soft prompt; ``tokens(heatmap)`` gives (B, n_soft + n_heat [+ 1], hidden)."""

    def __init__(self, hidden_size: int, config: FewShotConfig):
        super().__init__()
        self.config = config
        layers = [nn.BatchNorm2d(1), nn.Conv2d(1, hidden_size, kernel_size=4, stride=2, padding=1)]
        self.projector = nn.Sequential(*layers)
        self.where = self.mlp = None
        if config.projector_mlp:
            self.where = nn.Conv2d(2, hidden_size, kernel_size=4, stride=2, padding=1)
            self.mlp = nn.Sequential(nn.GELU(), nn.Conv2d(hidden_size, hidden_size, kernel_size=1))
        self.soft_prompt = nn.Parameter(torch.randn(config.n_soft, hidden_size) * 0.02)

    def n_tokens(self, grid: int) -> int:
        """Placeholders needed for a heatmap of ``grid``×``grid`` patches."""
        return self.config.n_soft + (grid // 2) ** 2 + int(self.config.peak_token)

    def tokens(self, heatmap: torch.Tensor) -> torch.Tensor:
        heatmap = heatmap.unsqueeze(1).to(self.soft_prompt.dtype)
        heat = self.projector(heatmap)  # [B, D, h/2, w/2]
        if self.mlp is not None:
            h, w = heatmap.shape[-2:]
            ys, xs = torch.meshgrid(
                torch.linspace(-1, 1, h, device=heat.device, dtype=heat.dtype),
                torch.linspace(-1, 1, w, device=heat.device, dtype=heat.dtype),
                indexing="ij",
            )
            # the same for every row: one conv, broadcast over the batch
            heat = self.mlp(heat + self.where(torch.stack([ys, xs])[None]))
        heat = heat.flatten(2).transpose(1, 2)  # [B, h*w/4, D]
        soft = self.soft_prompt.unsqueeze(0).expand(heat.shape[0], -1, -1)
        if self.config.peak_token:
            heat = torch.cat([heat, heat.amax(dim=1, keepdim=True)], dim=1)
        return torch.cat([soft, heat], dim=1)


@contextlib.contextmanager
def inject_tokens(
    embedding: nn.Module, placeholder_id: int, values: torch.Tensor | None, rows: int | None = None
) -> Iterator[None]:
    """While active, the outputs of ``embedding`` at ``placeholder_id`` positions are replaced,
    in row-major order, by ``values`` (rows with placeholders, each ``values.shape[1]`` of them).

    ``rows``: the batch's row count; a call with k times as many rows (``generate`` with
    ``num_return_sequences=k`` repeats each prompt k times, interleaved) gets each row's values
    k times. Pure tensor operations, no host sync: calls without placeholders (the later steps
    of generation) leave the embeddings as they are. That the placeholders and the values agree
    in number is checked when the batch is built (:meth:`VLM.collate`). With ``values=None``
    nothing is hooked.
    """
    if values is None:
        yield
        return

    def hook(module, args, output):
        ids = args[0]
        vals = values
        if rows and ids.shape[0] != rows and ids.shape[0] % rows == 0:
            vals = values.repeat_interleave(ids.shape[0] // rows, dim=0)
        mask = (ids == placeholder_id).unsqueeze(-1)  # [B, L, 1]
        return output.masked_scatter(mask, vals.reshape(-1, vals.shape[-1]).to(output.dtype))

    handle = embedding.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
