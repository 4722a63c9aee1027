"""Faithfulness and completeness of circuits under mean ablation (docs/sites-and-metrics.md).

``faithfulness(C) = (m(C) - m(∅)) / (m(M) - m(∅))`` with every node outside ``C`` replaced by its mean
over the task's examples of the same template at the same position; ``completeness(C) = faithfulness(M \\ C)``. ``m`` is averaged over the examples.
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


SiteMeans = dict[Site, tuple[Tensor, Tensor]]


@dataclass
class TemplateMeans:
    """Per-position site means of each template: ``by_template[t][s] = (mean f [P, d_dict], mean e [P, d_model])``.

    Examples of different templates put different slots at the same position, so a mean is only ever taken
    over one template's examples (``None`` is the template of untemplated examples).
    """

    by_template: dict[str | None, SiteMeans]

    def for_batch(self, batch: Batch) -> SiteMeans:
        return self.by_template[batch.template]


def dataset_means(
    spliced: SplicedModel, batches: list[Batch], *, advance: Callable[[int], None] | None = None
) -> TemplateMeans:
    """Mean codes ``[P, d_dict]`` and mean error ``[P, d_model]`` of every site, per template and position,
    over the task's clean examples (``P`` the template's longest example; a position's mean is over the
    examples that reach it).

    Per position, as in Marks et al.: in templated prompts the mean keeps what every example shares at a
    position (the template) and removes what varies, which is what ablating a node should remove.
    """
    n_max: dict[str | None, int] = {}
    for batch in batches:
        n_max[batch.template] = max(n_max.get(batch.template, 0), batch.n_pos)
    sums: dict[str | None, dict[Site, list[Tensor]]] = {t: {} for t in n_max}
    counts = {t: torch.zeros(n, device=batches[0].clean.device) for t, n in n_max.items()}
    for batch in batches:
        record = spliced.record(batch.clean)
        p, t = batch.n_pos, batch.template
        for site in spliced.sites:
            f, e = record.f[site].sum(dim=0), record.e[site].sum(dim=0)
            if site not in sums[t]:
                sums[t][site] = [f.new_zeros(n_max[t], f.shape[-1]), e.new_zeros(n_max[t], e.shape[-1])]
            sums[t][site][0][:p] += f
            sums[t][site][1][:p] += e
        counts[t][:p] += batch.size
        if advance:
            advance(1)
    by_template = {}
    for t, site_sums in sums.items():
        scale = counts[t].unsqueeze(-1)
        by_template[t] = {site: (f / scale.to(f.dtype), e / scale.to(e.dtype)) for site, (f, e) in site_sums.items()}
    return TemplateMeans(by_template)


def _mean_metric(
    spliced: SplicedModel,
    batches: list[Batch],
    metric: Metric,
    keep_f: dict[Site, Tensor] | None,
    keep_e: dict[Site, Tensor] | None,
    means: TemplateMeans,
) -> float:
    total, n = 0.0, 0
    for batch in batches:
        logits = spliced.spliced_forward(batch.clean, keep_features=keep_f, keep_error=keep_e,
                                         means=means.for_batch(batch))
        total += float(metric(logits, batch.answers()).sum())
        n += batch.size
    return total / n


def evaluate(
    spliced: SplicedModel,
    batches: list[Batch],
    metric: Metric,
    effects: AggregatedEffects,
    thresholds: list[float],
    means: TemplateMeans,
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
