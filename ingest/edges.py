"""Edge effects between kept nodes of adjacent sites (DESIGN.md §2.5).

The weight of ``u → d`` is ``∇_d m · ∂d/∂u · Δu``. One forward pass cuts every site into a leaf
(:meth:`SplicedModel.leaf_forward`), so a gradient taken from a site's value stops at the nearest sites
upstream: exactly the direct wiring ``resid_{l-1} → attn_l, mlp_l, resid_l``, ``attn_l → mlp_l, resid_l``,
``mlp_l → resid_l``, with no path through an intermediate site. For each downstream site the kept nodes'
values, weighted by their metric gradients (``left``), are backpropagated to the upstream leaves a chunk of
nodes at a time (batched vector–Jacobian products), and contracted with the upstream ``Δ`` of kept nodes only.
Weights are summed over examples here; the caller divides by the number of examples.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from sfc_graph.sites import Site

from .attribution import PatchState
from .splice import LeafRecord, Record, SplicedModel

MAX_GRAD_ELEMENTS = 1 << 25


@dataclass
class KeptNodes:
    """The nodes of a site above the node threshold.

    ``sum`` aggregation: ``features`` lists feature indices and ``error`` says whether the error node is
    kept (at every position). ``none``: ``positions`` is a list parallel to ``features`` and
    ``error_positions`` the positions where the error node is kept.
    """

    features: Tensor  # [k] int64
    error: bool = False
    positions: Tensor | None = None  # [k] int64, per-position (aggregation none)
    error_positions: Tensor | None = None  # [j] int64

    @property
    def empty(self) -> bool:
        has_error = self.error if self.positions is None else (
            self.error_positions is not None and len(self.error_positions) > 0
        )
        return len(self.features) == 0 and not has_error


@dataclass
class EdgeBlock:
    """Weights from every kept upstream node at ``up`` to every kept downstream node at ``down``.

    Rows follow the downstream nodes (kept features, then the error node / its kept positions); columns the
    upstream nodes likewise. With aggregation ``none`` the upstream columns are (position, node) pairs
    flattened as ``[p, k + 1]`` (feature columns then the error), and the same for rows.
    """

    up: Site
    down: Site
    weights: Tensor


def _downstream_values(
    spliced: SplicedModel, site: Site, leaf: LeafRecord, grad: Tensor, kept: KeptNodes
) -> Tensor:
    """``left · value`` per (example, position, kept node) ``[b, p, k + 1]``; the last column is the error."""
    dictionary = spliced.dictionary(site)
    f = dictionary.encode(leaf.inputs[site])
    feature_left = (grad @ dictionary.W_dec[kept.features].T).detach()
    values = [feature_left * f[..., kept.features]]
    error = leaf.pre[site] - dictionary.decode(f)
    values.append((grad.detach() * error).sum(-1, keepdim=True))
    return torch.cat(values, dim=-1)


def _upstream_contract(
    spliced: SplicedModel, site: Site, grad_up: Tensor, clean: Record, patch: PatchState, kept: KeptNodes,
    per_position: bool,
) -> Tensor:
    """Contract ``∂(left·d)/∂x_up`` ``[n, b, p, d_model]`` with ``Δ`` of the kept upstream nodes.

    Returns ``[n, k + 1]`` (summed over examples and positions) or ``[n, p, k + 1]`` (per position).
    """
    dictionary = spliced.dictionary(site)
    delta_f = (patch.f[site] - clean.f[site])[..., kept.features]  # [b, p, k]
    delta_e = patch.e[site] - clean.e[site]  # [b, p, d]
    W = dictionary.W_dec[kept.features]  # [k, d]
    if per_position:
        features = torch.einsum("nbpd,kd,bpk->npk", grad_up, W, delta_f)
        error = torch.einsum("nbpd,bpd->np", grad_up, delta_e).unsqueeze(-1)
    else:
        features = torch.einsum("nbpd,kd,bpk->nk", grad_up, W, delta_f)
        error = torch.einsum("nbpd,bpd->n", grad_up, delta_e).unsqueeze(-1)
    return torch.cat([features, error], dim=-1)


def batch_edges(
    spliced: SplicedModel,
    tokens: Tensor,
    grads: dict[Site, Tensor],
    clean: Record,
    patch: PatchState,
    kept: dict[Site, KeptNodes],
    *,
    per_position: bool,
    chunk: int = 64,
    advance: Callable[[int], None] | None = None,
) -> list[EdgeBlock]:
    """Edge weights of one batch, summed over its examples, between every pair of directly wired sites.

    ``per_position`` (aggregation ``none``): rows are (downstream position, node) and columns (upstream
    position, node), flattened ``[p·(k+1)]``. Otherwise rows and columns are nodes, positions summed.
    ``chunk`` downstream rows are backpropagated together (memory ∝ chunk · batch activations of one block).
    """
    leaf = spliced.leaf_forward(tokens)
    blocks: list[EdgeBlock] = []
    sites = spliced.sites
    for d_index, down in enumerate(sites):
        if down not in kept or kept[down].empty:
            if advance:
                advance(1)
            continue
        upstream = [s for s in sites[:d_index] if s in kept and not kept[s].empty]
        if not upstream:
            if advance:
                advance(1)
            continue
        values = _downstream_values(spliced, down, leaf, grads[down], kept[down])  # [b, p, k+1]
        b, p, _ = values.shape
        rows = _row_selectors(values, per_position)
        # bound the batched gradients ([rows, b, p, d_model] per upstream site) to ~2^25 elements
        step = max(1, min(chunk, MAX_GRAD_ELEMENTS // (b * p * spliced.handle.d_model)))
        results: dict[Site, list[Tensor]] = {s: [] for s in upstream}
        for start in range(0, rows.shape[0], step):
            selector = rows[start : start + step]  # [n, b, p, k+1] cotangents
            grads_up = torch.autograd.grad(
                values,
                [leaf.leaves[s] for s in upstream],
                grad_outputs=selector,
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
            )
            for s, grad_up in zip(upstream, grads_up):
                if grad_up is None:
                    continue  # not wired to this downstream site
                results[s].append(
                    _upstream_contract(spliced, s, grad_up, clean, patch, kept[s], per_position).detach()
                )
        for s in upstream:
            if not results[s]:
                continue
            weights = torch.cat(results[s], dim=0)
            if not torch.any(weights != 0):
                continue  # wired in the graph, but no gradient reaches it
            blocks.append(EdgeBlock(up=s, down=down, weights=weights.reshape(rows.shape[0], -1)))
        if advance:
            advance(1)
    return blocks


def _row_selectors(values: Tensor, per_position: bool) -> Tensor:
    """One-hot cotangents: one row per downstream node (or per (position, node) when ``per_position``)."""
    b, p, n_nodes = values.shape
    if per_position:
        eye = torch.eye(p * n_nodes, device=values.device, dtype=values.dtype).view(p * n_nodes, p, n_nodes)
        return eye.unsqueeze(1).expand(p * n_nodes, b, p, n_nodes)
    eye = torch.eye(n_nodes, device=values.device, dtype=values.dtype)
    return eye.view(n_nodes, 1, 1, n_nodes).expand(n_nodes, b, p, n_nodes)


def output_parents(spliced: SplicedModel, tokens: Tensor) -> list[Site]:
    """Sites whose leaf the logits depend on directly (normally only the last resid)."""
    leaf = spliced.leaf_forward(tokens)
    sites = spliced.sites
    grads = torch.autograd.grad(leaf.logits.sum(), [leaf.leaves[s] for s in sites], allow_unused=True)
    return [s for s, g in zip(sites, grads) if g is not None and torch.any(g != 0)]
