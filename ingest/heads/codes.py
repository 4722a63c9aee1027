"""Code statistics of the discrete-SAE method (O'Neill & Bui 2024, seed 003), on integer codes only.

Input: ``codes[example, head]``, the argmax latent of the head's SAE code on that example, and a boolean
``positive[example]``. Everything here is plain numpy, with no model or SAE, so that it can be checked on
hand-made codes.

* **Node score** of a head: how many distinct codes it shows on positives but never on negatives
  (optionally divided by the number of distinct codes it shows at all); softmaxed over all heads.
* **Edge score** of an ordered head pair ``(h1, h2)``, ``h1 != h2``: how many code pairs ``(c1, c2)``
  co-occur on some positive example (``h1`` shows ``c1`` while ``h2`` shows ``c2``) and on no negative one.
* **Edge scores as head scores**, two ways: ``top-pairs`` (the published evaluation: sort the ordered pairs by
  score, list both endpoints of each, and count how often a head appears among the first ``n_heads² / 2``
  endpoints, i.e. in the top quarter of pairs) and ``sum`` (a head's total edge score over its pairs).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .settings import EDGE_AGGREGATIONS



@dataclass(frozen=True)
class NodeCodeStats:
    """Per head (arrays of length ``n_heads``)."""

    n_positive_codes: np.ndarray  # distinct codes on positives
    n_negative_codes: np.ndarray  # distinct codes on negatives
    n_positive_only: np.ndarray  # on positives, never on negatives
    n_negative_only: np.ndarray  # on negatives, never on positives
    n_union: np.ndarray  # distinct codes on either

    def raw_score(self, *, normalise: bool) -> np.ndarray:
        """The number of positive-only codes, or that number over ``n_union`` when ``normalise``."""
        counts = self.n_positive_only.astype(np.float64)
        if not normalise:
            return counts
        return np.divide(counts, self.n_union, out=np.zeros_like(counts), where=self.n_union > 0)


def _split(codes: np.ndarray, positive: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes)
    positive = np.asarray(positive, dtype=bool)
    if codes.ndim != 2 or positive.shape != (codes.shape[0],):
        raise ValueError("codes must be [examples, heads] and positive a boolean [examples]")
    return codes[positive], codes[~positive]


def node_code_stats(codes: np.ndarray, positive: np.ndarray) -> NodeCodeStats:
    """Distinct-code counts of every head on the positive and the negative examples.

    >>> stats = node_code_stats(np.array([[1, 5], [2, 5], [1, 5], [3, 6]]), np.array([True, True, False, False]))
    >>> stats.n_positive_only.tolist(), stats.n_union.tolist()
    ([1, 0], [3, 2])
    """
    pos, neg = _split(codes, positive)
    columns = range(np.asarray(codes).shape[1])
    sets = [(set(pos[:, h].tolist()), set(neg[:, h].tolist())) for h in columns]
    return NodeCodeStats(
        n_positive_codes=np.array([len(p) for p, _ in sets]),
        n_negative_codes=np.array([len(n) for _, n in sets]),
        n_positive_only=np.array([len(p - n) for p, n in sets]),
        n_negative_only=np.array([len(n - p) for p, n in sets]),
        n_union=np.array([len(p | n) for p, n in sets]),
    )


def softmax(values: np.ndarray) -> np.ndarray:
    """Softmax over a flat array (shifted by its maximum for stability)."""
    shifted = np.asarray(values, dtype=np.float64) - np.max(values)
    weights = np.exp(shifted)
    return weights / weights.sum()


def node_scores(codes: np.ndarray, positive: np.ndarray, *, normalise: bool = False) -> np.ndarray:
    """The published node score: softmax over heads of the (optionally normalised) positive-only count."""
    return softmax(node_code_stats(codes, positive).raw_score(normalise=normalise))


def edge_scores(codes: np.ndarray, positive: np.ndarray, *, normalise: bool = False) -> np.ndarray:
    """``[n_heads, n_heads]``: code pairs co-occurring on positives and never on negatives (diagonal 0).

    With ``normalise``, the count is divided by the number of distinct code pairs the head pair shows on
    positives plus on negatives (as the published code does).

    >>> edge_scores(np.array([[1, 5], [2, 5], [1, 6]]), np.array([True, True, False])).tolist()
    [[0.0, 2.0], [2.0, 0.0]]
    """
    pos, neg = _split(codes, positive)
    n_heads = np.asarray(codes).shape[1]
    out = np.zeros((n_heads, n_heads))
    for h1 in range(n_heads):
        for h2 in range(n_heads):
            if h1 == h2:
                continue
            on_pos = set(zip(pos[:, h1].tolist(), pos[:, h2].tolist()))
            on_neg = set(zip(neg[:, h1].tolist(), neg[:, h2].tolist()))
            unique = len(on_pos - on_neg)
            if normalise:
                total = len(on_pos) + len(on_neg)
                out[h1, h2] = unique / total if total else 0.0
            else:
                out[h1, h2] = unique
    return out


def edge_head_scores(edges: np.ndarray, *, aggregation: str = "top-pairs", top_fraction: float = 0.25) -> np.ndarray:
    """Edge scores turned into one score per head (for ranking heads against a head-level ground truth).

    ``top-pairs``: the ordered off-diagonal pairs sorted by score (descending; ties in row-major order), both
    endpoints of each listed in turn, and a head's score is how often it occurs among the first
    ``2 · top_fraction · n_heads²`` endpoints (``top_fraction`` 0.25 reproduces the published ``k = n²/2``).
    ``sum``: a head's edge scores summed over the pairs it is in (either end).

    >>> e = np.array([[0, 3, 0], [3, 0, 1], [0, 1, 0]], dtype=float)
    >>> edge_head_scores(e, aggregation="sum").tolist()
    [6.0, 8.0, 2.0]
    >>> edge_head_scores(e, aggregation="top-pairs", top_fraction=2 / 9).tolist()
    [2.0, 2.0, 0.0]
    """
    edges = np.asarray(edges, dtype=np.float64)
    n_heads = edges.shape[0]
    if aggregation == "sum":
        off = edges * (1 - np.eye(n_heads))
        return off.sum(axis=0) + off.sum(axis=1)
    if aggregation != "top-pairs":
        raise ValueError(f"unknown edge aggregation {aggregation!r}; use one of {', '.join(EDGE_AGGREGATIONS)}")
    pairs = [(h1, h2) for h1 in range(n_heads) for h2 in range(n_heads) if h1 != h2]
    order = sorted(range(len(pairs)), key=lambda i: (-edges[pairs[i]], i))
    endpoints = [head for i in order for head in pairs[i]]
    k = int(round(2 * top_fraction * n_heads * n_heads))
    counts = np.zeros(n_heads)
    for head in endpoints[:k]:
        counts[head] += 1
    return counts
