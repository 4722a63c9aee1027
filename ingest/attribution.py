"""Node effects (indirect effects) of features and error nodes on the metric (docs/sites-and-metrics.md).

For a batch, every method returns per-example, per-position effects: ``features[s]`` ``[b, p, d_dict]`` and
``errors[s]`` ``[b, p]``, with ``IE(a) = m(clean | do(a = a_patch)) - m(clean)``.

* ``attrib``: ``∇_a m |_clean · Δa`` from one backward pass;
* ``ig``: the gradient averaged over ``steps`` points (midpoints) of the straight line from the clean to
  the patch activation of one site at a time, with everything downstream recomputed, times ``Δa``;
* ``exact``: one forward pass per (example, position, node) whose activation the patch changes.

The gradients used (``grads[s]``, ``∂m/∂x_s`` ``[b, p, d_model]``) are returned too: they are the left
vectors of the edge computation. ``exact`` returns the clean gradients for that purpose.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sfc_graph.errors import ComputeError
from sfc_graph.sites import Site

from .metrics import Metric
from .splice import Record, SplicedModel, mean_at
from .tasks import Batch

log = logging.getLogger(__name__)

METHODS = ("attrib", "ig", "exact")
ABLATIONS = ("mean", "zero")
Advance = Callable[[int], None]


@dataclass
class PatchState:
    """The patch value of every node: codes ``f`` and errors ``e`` per site, and ``x = x̂ + e``."""

    f: dict[Site, Tensor]
    e: dict[Site, Tensor]
    x: dict[Site, Tensor]


@dataclass
class BatchEffects:
    features: dict[Site, Tensor]  # [b, p, d_dict]
    errors: dict[Site, Tensor]  # [b, p]
    grads: dict[Site, Tensor]  # [b, p, d_model], the metric gradient at each site used for the effects
    metric_clean: Tensor  # [b]
    metric_patch: Tensor | None  # [b], counterfactual runs only


def patch_state(
    spliced: SplicedModel,
    batch: Batch,
    clean: Record,
    *,
    ablation: str,
    means: dict[Site, tuple[Tensor, Tensor]] | None,
) -> tuple[PatchState, Record | None]:
    """Patch codes and errors: from the counterfactual prompts, or a zero / mean ablation without them."""
    if batch.patch is not None:
        record = spliced.record(batch.patch)
        x = {site: record.x[site] for site in spliced.sites}
        return PatchState(f=record.f, e=record.e, x=x), record
    f, e, x = {}, {}, {}
    for site in spliced.sites:
        if ablation == "zero":
            f[site], e[site] = torch.zeros_like(clean.f[site]), torch.zeros_like(clean.x[site])
        elif ablation == "mean":
            if means is None:
                raise ComputeError("mean ablation needs the dataset means of every site")
            n_pos = clean.f[site].shape[1]
            mean_f, mean_e = (mean_at(m, n_pos) for m in means[site])
            f[site], e[site] = mean_f.expand_as(clean.f[site]), mean_e.expand_as(clean.x[site])
        else:
            raise ComputeError(f"unknown ablation {ablation!r}; use one of {', '.join(ABLATIONS)}")
        x[site] = spliced.dictionary(site).decode(f[site]) + e[site]
    return PatchState(f=f, e=e, x=x), None


def effects_from_grads(
    spliced: SplicedModel, grads: dict[Site, Tensor], clean: Record, patch: PatchState
) -> tuple[dict[Site, Tensor], dict[Site, Tensor]]:
    """``grad · Δ`` per node: features via ``W_dec`` (affine decoder), errors summed over ``d_model``.

    ``x = f @ W_dec + b_dec + e`` gives ``Δe = Δx - Δf @ W_dec``, so the error node's ``grad · Δe`` is
    ``grad · Δx`` minus the features' effects at that (example, position): no decoder product is needed.
    """
    features, errors = {}, {}
    for site in spliced.sites:
        grad = grads[site]
        feature_grad = grad @ spliced.dictionary(site).W_dec.T
        features[site] = feature_grad * (patch.f[site] - clean.f[site])
        errors[site] = (grad * (patch.x[site] - clean.x[site])).sum(-1) - features[site].sum(-1)
    return features, errors


def clean_grads(spliced: SplicedModel, batch: Batch, metric: Metric) -> tuple[Record, dict[Site, Tensor], Tensor]:
    """Record the clean run and ``∂m/∂x`` at every site (one forward and one backward pass)."""
    clean = spliced.record(batch.clean, with_grad=True)
    value = metric(clean.logits, batch.answers())
    sites = spliced.sites
    grads = torch.autograd.grad(value.sum(), [clean.x[site] for site in sites])
    clean.x = {site: x.detach() for site, x in clean.x.items()}
    clean.logits = clean.logits.detach()
    return clean, dict(zip(sites, grads)), value.detach()


def ig_grads(
    spliced: SplicedModel,
    batch: Batch,
    metric: Metric,
    clean: Record,
    patch: PatchState,
    *,
    steps: int,
    max_rows: int,
    advance: Advance | None = None,
) -> dict[Site, Tensor]:
    """Mean gradient along the line from clean to patch, one site at a time, ``steps`` midpoints.

    Interpolating codes and errors is interpolating ``x`` (the decoder is affine), so the line is drawn in
    activation space. Steps are stacked along the batch, at most ``max_rows`` rows per pass.
    """
    grads: dict[Site, Tensor] = {}
    b = batch.size
    per_pass = max(1, min(steps, max_rows // max(b, 1)))
    for site in spliced.sites:
        x_clean, x_patch = clean.x[site], patch.x[site]
        total = torch.zeros_like(x_clean)
        for first in range(0, steps, per_pass):
            ks = torch.arange(first, min(steps, first + per_pass), device=x_clean.device, dtype=x_clean.dtype)
            alphas = ((ks + 0.5) / steps).view(-1, 1, 1, 1)
            value = (x_clean + alphas * (x_patch - x_clean)).reshape(-1, *x_clean.shape[1:])
            value.requires_grad_(True)
            with torch.enable_grad():
                logits = spliced.run_with_site_value(site, value, clean.resid_pre)
                m = metric(logits, batch.answers(repeat=len(ks)))
                (grad,) = torch.autograd.grad(m.sum(), value)
            total += grad.view(len(ks), *x_clean.shape).sum(0)
        grads[site] = total / steps
        if advance:
            advance(1)
    return grads


def exact_effects(
    spliced: SplicedModel,
    batch: Batch,
    metric: Metric,
    clean: Record,
    patch: PatchState,
    metric_clean: Tensor,
    *,
    max_rows: int,
    advance: Advance | None = None,
) -> tuple[dict[Site, Tensor], dict[Site, Tensor]]:
    """Activation patching: one intervention per (example, position, node) that the patch changes.

    Interventions are stacked into passes of at most ``max_rows`` rows; each row continues one recorded
    example from the intervened site on.
    """
    features: dict[Site, Tensor] = {}
    errors: dict[Site, Tensor] = {}
    for site in spliced.sites:
        W_dec = spliced.dictionary(site).W_dec
        x_clean = clean.x[site]
        delta_f = patch.f[site] - clean.f[site]
        delta_e = patch.e[site] - clean.e[site]
        feature_effect = torch.zeros_like(delta_f)
        error_effect = torch.zeros(delta_e.shape[:2], device=x_clean.device, dtype=x_clean.dtype)

        # feature interventions: x[b, p] += Δf[b, p, i] · W_dec[i]
        idx = delta_f.nonzero()
        for chunk in idx.split(max_rows):
            rows, pos, feat = chunk.unbind(-1)
            shift = delta_f[rows, pos, feat].unsqueeze(-1) * W_dec[feat]
            feature_effect[rows, pos, feat] = _patched_metric(
                spliced, site, batch, metric, clean, rows, pos, shift
            ) - metric_clean[rows]
        # error interventions: x[b, p] += Δe[b, p]
        idx = (delta_e != 0).any(-1).nonzero()
        for chunk in idx.split(max_rows):
            rows, pos = chunk.unbind(-1)
            error_effect[rows, pos] = _patched_metric(
                spliced, site, batch, metric, clean, rows, pos, delta_e[rows, pos]
            ) - metric_clean[rows]
        features[site], errors[site] = feature_effect, error_effect
        if advance:
            advance(1)
    return features, errors


def _patched_metric(
    spliced: SplicedModel,
    site: Site,
    batch: Batch,
    metric: Metric,
    clean: Record,
    rows: Tensor,
    pos: Tensor,
    shift: Tensor,
) -> Tensor:
    value = clean.x[site][rows].clone()
    value[torch.arange(len(rows), device=value.device), pos] += shift
    with torch.no_grad():
        logits = spliced.run_with_site_value(site, value, clean.resid_pre, rows=rows)
        return metric(logits, batch.answers(rows))


def batch_effects(
    spliced: SplicedModel,
    batch: Batch,
    metric: Metric,
    *,
    method: str,
    ig_steps: int = 10,
    ablation: str = "mean",
    means: dict[Site, tuple[Tensor, Tensor]] | None = None,
    max_rows: int = 4096,
    advance: Advance | None = None,
) -> tuple[BatchEffects, Record, PatchState]:
    """Node effects of one batch by ``method``, with the clean record and patch state they came from."""
    if method not in METHODS:
        raise ComputeError(f"unknown method {method!r}; use one of {', '.join(METHODS)}")
    if method == "ig":
        clean = spliced.record(batch.clean)  # the IG gradients replace the clean ones: no backward needed
        metric_clean = metric(clean.logits, batch.answers())
    else:
        clean, grads, metric_clean = clean_grads(spliced, batch, metric)
    patch, patch_record = patch_state(spliced, batch, clean, ablation=ablation, means=means)
    metric_patch = None
    if patch_record is not None:
        metric_patch = metric(patch_record.logits, batch.answers())
    if method == "ig":
        grads = ig_grads(spliced, batch, metric, clean, patch, steps=ig_steps, max_rows=max_rows, advance=advance)
    if method == "exact":
        features, errors = exact_effects(
            spliced, batch, metric, clean, patch, metric_clean, max_rows=max_rows, advance=advance
        )
    else:
        features, errors = effects_from_grads(spliced, grads, clean, patch)
        if method == "attrib" and advance:
            advance(len(spliced.sites))
    effects = BatchEffects(features, errors, grads, metric_clean, metric_patch)
    return effects, clean, patch
