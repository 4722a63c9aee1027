"""Edge effects between kept nodes of adjacent sites (docs/sites-and-metrics.md).

The weight of ``u → d`` is ``∇_d m · ∂d/∂u · Δu``. One forward pass cuts every site into a leaf
(:meth:`SplicedModel.leaf_forward`), so a gradient taken from a site's value stops at the nearest sites
upstream: exactly the direct wiring ``resid_{l-1} → attn_l, mlp_l, resid_l``, ``attn_l → mlp_l, resid_l``,
``mlp_l → resid_l``, with no path through an intermediate site. For each downstream site the gradients of
the kept nodes' values, weighted by their metric gradients (``left``), are formed in closed form at the site
(:class:`_Downstream`) and backpropagated to the upstream leaves a chunk of nodes at a time (batched
vector–Jacobian products), then contracted with the upstream ``Δ`` of kept nodes only.
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


@dataclass
class _Downstream:
    """What the vector–Jacobian products of one downstream site need, computed once per batch.

    The value of kept feature ``i`` at (example, position) is ``left_i · f_i(input)`` and that of the error node
    ``g · (x - decode(f(input)))``, with ``g = ∂m/∂x`` and ``left_i = g · W_dec[i]`` held fixed. Their
    gradients with respect to the site's output ``x`` and the dictionary's ``input`` (the same tensor except for
    transcoders) have a closed form, because ``pre`` and ``decode`` are affine and the activation acts on each
    latent alone (ReLU, JumpReLU, TopK: ``∂f/∂pre`` is the diagonal ``slope``):

    * feature ``i``: ``∂/∂input = left_i · slope_i · W_enc[:, i]``, nothing through ``x``;
    * error: ``∂/∂x = g``, ``∂/∂input = -((slope ⊙ (g @ W_decᵀ)) @ W_encᵀ)``.

    So each kept node costs one backward pass through the model's block, not one more through the dictionary.
    """

    x: Tensor  # [b, p, d] the site's output, in the leaf graph
    input: Tensor  # [b, p, d_in] what the dictionary reads, in the leaf graph
    coef: Tensor  # [b, p, k] left_i · slope_i of the kept features
    W_enc: Tensor  # [d_in, k] encoder columns of the kept features
    error_x: Tensor  # [b, p, d]
    error_input: Tensor  # [b, p, d_in] (a zero scalar when the error node is not kept: its rows are not computed)

    @property
    def n_nodes(self) -> int:
        return self.coef.shape[-1] + 1

    def cotangents(self, nodes: Tensor, positions: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """Cotangents of ``input`` (and ``x`` when it is another tensor) for the rows ``nodes`` (node index,
        ``k`` = the error node), restricted to ``positions`` (per-position rows) when given.

        ``[n, b, p, d_in]`` (and ``[n, b, p, d]`` or None).
        """
        k = self.coef.shape[-1]
        is_error = nodes == k
        feature = nodes.clamp(max=max(k - 1, 0))
        if k:
            # [n, b, p, d_in]: coef[b, p, i] · W_enc[:, i] for the feature rows
            cot_in = self.coef[..., feature].permute(2, 0, 1).unsqueeze(-1) * self.W_enc[:, feature].T[:, None, None]
            cot_in = torch.where(is_error.view(-1, 1, 1, 1), self.error_input, cot_in)
        else:
            cot_in = self.error_input.expand(len(nodes), *self.error_input.shape).clone()
        same = self.input is self.x
        cot_x = is_error.view(-1, 1, 1, 1).to(self.error_x.dtype) * self.error_x
        if same:
            cot_in = cot_in + cot_x
        if positions is not None:
            at = torch.arange(cot_in.shape[2], device=cot_in.device)
            mask = (at.view(1, 1, -1, 1) == positions.view(-1, 1, 1, 1)).to(cot_in.dtype)
            cot_in = cot_in * mask
            cot_x = cot_x * mask
        return cot_in, None if same else cot_x


def _downstream(spliced: SplicedModel, site: Site, leaf: LeafRecord, grad: Tensor, kept: KeptNodes) -> _Downstream:
    dictionary = spliced.dictionary(site)
    inp = leaf.inputs[site]
    g = grad.detach()
    with torch.enable_grad():
        pre = dictionary.pre(inp.detach()).requires_grad_(True)
        f = dictionary.activation(pre)
        (slope,) = torch.autograd.grad(f, pre, torch.ones_like(f))  # the diagonal of ∂f/∂pre
    with torch.no_grad():
        W_dec = dictionary.W_dec
        coef = (g @ W_dec[kept.features].T) * slope[..., kept.features]
        # the error rows are computed only for a kept error node; otherwise skip two products with the dictionary
        error_input = -((slope * (g @ W_dec.T)) @ dictionary.W_enc.T) if _error_kept(kept) else g.new_zeros(())
    return _Downstream(x=leaf.pre[site], input=inp, coef=coef, W_enc=dictionary.W_enc[:, kept.features],
                       error_x=g, error_input=error_input)


class _Upstream:
    """``Δ`` of the kept nodes of one upstream site, arranged so that contracting a batch of gradients
    ``∂(left·d)/∂x_up`` ``[n, b, p, d_model]`` with it is one matrix product, built once per batch.

    Column ``j < k`` of ``M`` is ``Δf_j ⊗ W_dec[j]`` over (example, position, d_model) and the last column
    ``Δe``: ``grad · M`` is ``Σ grad · W_dec[j] Δf_j`` for the features and ``Σ grad · Δe`` for the error node.
    Where ``M`` would be large (many kept nodes of a large site) it is not built and two einsums do the same.
    """

    def __init__(self, spliced: SplicedModel, site: Site, clean: Record, patch: PatchState, kept: KeptNodes,
                 per_position: bool) -> None:
        self.per_position = per_position
        self.W = spliced.dictionary(site).W_dec[kept.features]  # [k, d]
        self.delta_f = (patch.f[site] - clean.f[site])[..., kept.features]  # [b, p, k]
        self.delta_e = patch.e[site] - clean.e[site]  # [b, p, d]
        b, p, d = self.delta_e.shape
        self.M: Tensor | None = None
        if b * p * d * (len(kept.features) + 1) <= MAX_GRAD_ELEMENTS:
            M = torch.cat([self.delta_f.unsqueeze(-2) * self.W.T, self.delta_e.unsqueeze(-1)], dim=-1)  # [b,p,d,k+1]
            self.M = M.transpose(0, 1).reshape(p, b * d, -1) if per_position else M.reshape(b * p * d, -1)

    def contract(self, grad_up: Tensor) -> Tensor:
        """``[n, k + 1]`` (summed over examples and positions) or ``[n, p, k + 1]`` (per position)."""
        n, b, p, d = grad_up.shape
        if self.M is not None:
            if self.per_position:
                return (grad_up.permute(2, 0, 1, 3).reshape(p, n, b * d) @ self.M).transpose(0, 1)
            return grad_up.reshape(n, b * p * d) @ self.M
        if self.per_position:
            features = torch.einsum("nbpd,kd,bpk->npk", grad_up, self.W, self.delta_f)
            error = torch.einsum("nbpd,bpd->np", grad_up, self.delta_e).unsqueeze(-1)
        else:
            features = torch.einsum("nbpd,kd,bpk->nk", grad_up, self.W, self.delta_f)
            error = torch.einsum("nbpd,bpd->n", grad_up, self.delta_e).unsqueeze(-1)
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
    leaf: LeafRecord | None = None,
) -> list[EdgeBlock]:
    """Edge weights of one batch, summed over its examples, between every pair of directly wired sites.

    ``per_position`` (aggregation ``none``): rows are (downstream position, node) and columns (upstream
    position, node), flattened ``[p·(k+1)]``. Otherwise rows and columns are nodes, positions summed.
    ``chunk`` downstream rows are backpropagated together (memory ∝ chunk · batch activations of one block).
    ``leaf``: the leaf pass of ``tokens`` when the caller has run it already (to read ``clean`` from it).
    """
    leaf = leaf if leaf is not None else spliced.leaf_forward(tokens)
    blocks: list[EdgeBlock] = []
    sites = spliced.sites
    deltas: dict[Site, _Upstream] = {}
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
        down_nodes = _downstream(spliced, down, leaf, grads[down], kept[down])
        b, p, _ = down_nodes.x.shape
        n_nodes = down_nodes.n_nodes
        n_rows = p * n_nodes if per_position else n_nodes
        # rows of the weight matrix to compute: the error node's only when it is kept (else they stay zero)
        node_of_row = torch.arange(n_rows, device=down_nodes.x.device) % n_nodes
        position_of_row = torch.arange(n_rows, device=down_nodes.x.device) // n_nodes if per_position else None
        computed = torch.arange(n_rows, device=down_nodes.x.device)
        if not _error_kept(kept[down]):  # every row but each position's last (arithmetic: no device sync)
            per_block = n_nodes - 1
            computed = torch.arange(n_rows // n_nodes * per_block, device=down_nodes.x.device)
            computed = computed // per_block * n_nodes + computed % per_block if per_block else computed
        # bound the batched gradients ([rows, b, p, d_model] per upstream site) to ~2^25 elements
        step = max(1, min(chunk, MAX_GRAD_ELEMENTS // (b * p * spliced.handle.d_model)))
        outputs = [down_nodes.input] if down_nodes.input is down_nodes.x else [down_nodes.input, down_nodes.x]
        results: dict[Site, list[Tensor]] = {s: [] for s in upstream}
        for start in range(0, len(computed), step):
            rows = computed[start : start + step]
            cot_in, cot_x = down_nodes.cotangents(
                node_of_row[rows], None if position_of_row is None else position_of_row[rows]
            )
            grads_up = torch.autograd.grad(
                outputs,
                [leaf.leaves[s] for s in upstream],
                grad_outputs=[cot_in] if cot_x is None else [cot_in, cot_x],
                is_grads_batched=True,
                retain_graph=True,
                allow_unused=True,
            )
            for s, grad_up in zip(upstream, grads_up):
                if grad_up is None:
                    continue  # not wired to this downstream site
                if s not in deltas:
                    deltas[s] = _Upstream(spliced, s, clean, patch, kept[s], per_position)
                results[s].append(deltas[s].contract(grad_up).detach())
        for s in upstream:
            if not results[s]:
                continue
            computed_weights = torch.cat(results[s], dim=0).reshape(len(computed), -1)
            if not torch.any(computed_weights != 0):
                continue  # wired in the graph, but no gradient reaches it
            weights = computed_weights.new_zeros(n_rows, computed_weights.shape[1])
            weights[computed] = computed_weights
            blocks.append(EdgeBlock(up=s, down=down, weights=weights))
        if advance:
            advance(1)
    return blocks


def _error_kept(nodes: KeptNodes) -> bool:
    if nodes.positions is None:
        return nodes.error
    return nodes.error_positions is not None and len(nodes.error_positions) > 0


def output_parents(spliced: SplicedModel, tokens: Tensor) -> list[Site]:
    """Sites whose leaf the logits depend on directly (normally only the last resid)."""
    leaf = spliced.leaf_forward(tokens)
    sites = spliced.sites
    grads = torch.autograd.grad(leaf.logits.sum(), [leaf.leaves[s] for s in sites], allow_unused=True)
    return [s for s, g in zip(sites, grads) if g is not None and torch.any(g != 0)]
