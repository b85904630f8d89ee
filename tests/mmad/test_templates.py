"""Template choice is the same on every machine: near-ties break by candidate order, not by how
a CPU's matrix product rounds."""

import numpy as np

from emit_iad.mmad.templates import SIMILARITY_DECIMALS, top_k_similar


def test_a_near_tie_breaks_by_candidate_order_whatever_the_rounding():
    q = np.array([[1.0, 0.0, 0.0]])
    near = 10.0 ** -(SIMILARITY_DECIMALS + 3)  # far below the compared decimals
    for sign in (1, -1):  # the second candidate a hair above, then a hair below the first
        c = np.array([[0.8, 0.6, 0.0], [0.8 + sign * near, 0.6, 0.0], [0.0, 1.0, 0.0]])
        assert top_k_similar(q, c, 2).tolist() == [[0, 1]]


def test_a_real_difference_still_ranks_and_float32_input_gives_the_same_choice():
    rng = np.random.default_rng(0)
    q, c = rng.normal(size=(5, 48)), rng.normal(size=(30, 48))
    top64 = top_k_similar(q, c, 3)
    assert top64.tolist() == np.argsort(-(q @ c.T) / np.linalg.norm(c, axis=1), axis=1)[:, :3].tolist()
    assert top_k_similar(q.astype(np.float32), c.astype(np.float32), 3).tolist() == top64.tolist()
