"""Template (reference) images per query: the most similar normal training images, and random ones.

Similarity is the cosine of image embeddings. The default embedding is a 16×16 colour thumbnail,
mean-centred and L2-normalised: it needs no model (so it runs offline), and it ranks images by
pose, placement and lighting, which is what makes a template useful for side-by-side comparison
of a product. EMIT uses CLIP; any embedding function with the same signature can be passed.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
from PIL import Image

from emit_iad.sources.images import load_rgb

Embedder = Callable[[Sequence[str]], np.ndarray]
SIMILARITY_DECIMALS = 6  # far above float64's rounding (1e-16), far below real differences


def thumbnail_embeddings(paths: Sequence[str], side: int = 16) -> np.ndarray:
    """(N, side*side*3) unit vectors; mean-centred per image so overall brightness matters less."""
    vecs = np.zeros((len(paths), side * side * 3), dtype=np.float32)
    for i, path in enumerate(paths):  # float64 inside: the same vector on every CPU's SIMD
        arr = np.asarray(load_rgb(path).resize((side, side), Image.BILINEAR), np.float64)
        v = arr.ravel() - arr.mean()
        vecs[i] = v / (np.linalg.norm(v) + 1e-8)
    return vecs


def top_k_similar(
    query: np.ndarray, candidates: np.ndarray, k: int, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Indices (Q, k') of the ``k`` candidates with the highest cosine to each query.

    ``exclude`` (Q, C) bool marks pairs never to choose (a query is never its own template).
    Cosines are compared to ``SIMILARITY_DECIMALS`` decimals, and ties break by candidate
    order: near-ties (seen 6e-8 apart among synthetic images) would otherwise break by how the
    machine's matrix product rounds (float32 differs by up to 1.6e-6 from float64), so two CPUs
    would pick different templates. ``k' = min(k, C)``.

    >>> q = np.array([[1.0, 0.0]]); c = np.array([[0.0, 1.0], [1.0, 0.1], [0.9, 0.0]])
    >>> top_k_similar(q, c, 2).tolist()
    [[2, 1]]
    """
    query, candidates = np.asarray(query, np.float64), np.asarray(candidates, np.float64)
    qn = query / (np.linalg.norm(query, axis=1, keepdims=True) + 1e-8)
    cn = candidates / (np.linalg.norm(candidates, axis=1, keepdims=True) + 1e-8)
    sims = np.round(qn @ cn.T, SIMILARITY_DECIMALS)
    if exclude is not None:
        sims = np.where(exclude, -np.inf, sims)
    k = min(k, candidates.shape[0])
    return np.argsort(-sims, axis=1, kind="stable")[:, :k]


def random_templates(candidates: Sequence[str], query: str, k: int, seed: int) -> list[str]:
    """``k`` seeded random candidates other than the query itself."""
    pool = sorted(c for c in candidates if c != query)
    rng = np.random.default_rng([seed, zlib.crc32(query.encode())])
    picks = rng.choice(len(pool), size=min(k, len(pool)), replace=False) if pool else []
    return [pool[i] for i in sorted(picks)]
