"""Faithfulness and completeness of circuits under mean ablation (DESIGN.md §2.8).

``faithfulness(C) = (m(C) - m(∅)) / (m(M) - m(∅))`` with every node outside ``C`` replaced by its mean
over the task's examples at the same position; ``completeness(C) = faithfulness(M \\ C)``. ``m`` is averaged over the examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sfc_graph.sites import Site

from .metrics import Metric
from .splice import SplicedModel
from .tasks import Batch

DEFAULT_EVAL_THRESHOLDS = (0.01, 0.03, 0.1, 0.3, 1.0)


@dataclass
class AggregatedEffects:
    """Node effects after aggregation: ``features[s]`` ``[d_dict]`` (sum) or ``[p, d_dict]`` (none);
    ``errors[s]`` ``[]`` or ``[p]``."""

    features: dict[Site, Tensor]
    errors: dict[Site, Tensor]

    def masks(self, threshold: float) -> tuple[dict[Site, Tensor], dict[Site, Tensor]]:
        keep_f = {s: f.abs() >= threshold for s, f in self.features.items()}
        keep_e = {s: e.abs() >= threshold for s, e in self.errors.items()}
        return keep_f, keep_e

    def count(self, threshold: float) -> int:
        keep_f, keep_e = self.masks(threshold)
        return int(sum(int(m.sum()) for m in keep_f.values()) + sum(int(m.sum()) for m in keep_e.values()))


def dataset_means(
    spliced: SplicedModel, batches: list[Batch], *, advance: Callable[[int], None] | None = None
) -> dict[Site, tuple[Tensor, Tensor]]:
    """Mean codes ``[P, d_dict]`` and mean error ``[P, d_model]`` of every site, per position, over the task's
    clean examples (``P`` the longest example; a position's mean is over the examples that reach it).

    Per position, as in Marks et al.: in templated prompts the mean keeps what every example shares at a
    position (the template) and removes what varies, which is what ablating a node should remove.
    """
    sums: dict[Site, list[Tensor]] = {}
    n_max = max(batch.n_pos for batch in batches)
    counts = torch.zeros(n_max, device=batches[0].clean.device)
    for batch in batches:
        record = spliced.record(batch.clean)
        p = batch.n_pos
        for site in spliced.sites:
            f, e = record.f[site].sum(dim=0), record.e[site].sum(dim=0)
            if site not in sums:
                sums[site] = [f.new_zeros(n_max, f.shape[-1]), e.new_zeros(n_max, e.shape[-1])]
            sums[site][0][:p] += f
            sums[site][1][:p] += e
        counts[:p] += batch.size
        if advance:
            advance(1)
    scale = counts.unsqueeze(-1)
    return {site: (f / scale.to(f.dtype), e / scale.to(e.dtype)) for site, (f, e) in sums.items()}


def _mean_metric(
    spliced: SplicedModel,
    batches: list[Batch],
    metric: Metric,
    keep_f: dict[Site, Tensor] | None,
    keep_e: dict[Site, Tensor] | None,
    means: dict[Site, tuple[Tensor, Tensor]],
) -> float:
    total, n = 0.0, 0
    for batch in batches:
        logits = spliced.spliced_forward(batch.clean, keep_features=keep_f, keep_error=keep_e, means=means)
        total += float(metric(logits, batch.answers()).sum())
        n += batch.size
    return total / n


def evaluate(
    spliced: SplicedModel,
    batches: list[Batch],
    metric: Metric,
    effects: AggregatedEffects,
    thresholds: list[float],
    means: dict[Site, tuple[Tensor, Tensor]],
    *,
    metric_model: float,
    advance: Callable[[int], None] | None = None,
) -> list[dict]:
    """One entry per threshold: ``node_threshold``, ``n_nodes``, ``faithfulness``, ``completeness``."""
    none_f = {s: torch.zeros_like(f, dtype=torch.bool) for s, f in effects.features.items()}
    none_e = {s: torch.zeros_like(e, dtype=torch.bool) for s, e in effects.errors.items()}
    metric_empty = _mean_metric(spliced, batches, metric, none_f, none_e, means)
    denominator = metric_model - metric_empty
    if advance:
        advance(1)
    rows = []
    for threshold in thresholds:
        keep_f, keep_e = effects.masks(threshold)
        m_circuit = _mean_metric(spliced, batches, metric, keep_f, keep_e, means)
        m_complement = _mean_metric(
            spliced, batches, metric, {s: ~m for s, m in keep_f.items()}, {s: ~m for s, m in keep_e.items()}, means
        )
        rows.append(
            {
                "node_threshold": float(threshold),
                "n_nodes": effects.count(threshold),
                "faithfulness": _ratio(m_circuit - metric_empty, denominator),
                "completeness": _ratio(m_complement - metric_empty, denominator),
                "metric_circuit": m_circuit,
                "metric_complement": m_complement,
            }
        )
        if advance:
            advance(1)
    for row in rows:
        row["metric_model"] = metric_model
        row["metric_empty"] = metric_empty
    return rows


def _ratio(numerator: float, denominator: float) -> float | None:
    """None when the model and the empty circuit score the same (faithfulness is then undefined)."""
    if abs(denominator) < 1e-9:
        return None
    return numerator / denominator
