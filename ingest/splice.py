"""Running a transformer_lens model with dictionaries spliced in at its sites (docs/sites-and-metrics.md).

At a site the activation ``x`` is written ``x = x̂ + e`` with ``x̂ = decode(encode(x))`` and ``e = x - x̂``.
Left alone, the splice is the identity, so gradient passes use the plain model and read ``∂m/∂x`` at each
site; the gradient of a feature is then ``W_dec[i] · ∂m/∂x`` (the decoder is affine) and that of the error
node is ``∂m/∂x`` itself, which is what detaching ``e`` from the features' gradient means. Forward passes that
change some nodes (ablation, evaluation) run the real splice.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor

from sfc_graph.sites import Site

from .dictionaries import Dictionary, DictionarySet
from .model import ModelHandle

Hook = tuple[str, Callable]


@contextlib.contextmanager
def hooks_on(model, hooks: list[Hook]) -> Iterator[None]:
    """Forward hooks on ``model``'s hook points for the duration of the block.

    What ``run_with_hooks`` does, but removing only the hooks it added from only the points it touched:
    transformer_lens resets every hook point of the model after each run, which costs more than a forward
    pass of a small model (and grows with the model's size), and the engine runs thousands of passes.
    """
    model.context_level += 1
    level = model.context_level
    points = {}
    try:
        for name, fn in hooks:
            point = model.hook_dict[name]
            point.add_hook(fn, dir="fwd", level=level)
            points[id(point)] = point
        yield
    finally:
        for point in points.values():
            point.remove_hooks("fwd", level=level)
        model.context_level -= 1


class Errors(Mapping):
    """A record's error nodes ``e = x - decode(f)`` per site, computed when first read.

    Node effects never need them (``∇·Δe = ∇·Δx - Σ_i ∇f_i·Δf_i``, see attribution.py), so a pass that only
    feeds the effects skips one decoder product per site.
    """

    def __init__(self, record: Record, decode: Callable[[Site, Tensor], Tensor]) -> None:
        self._record, self._decode, self._cache = record, decode, {}

    def __getitem__(self, site: Site) -> Tensor:
        if site not in self._cache:
            with torch.no_grad():
                self._cache[site] = self._record.x[site].detach() - self._decode(site, self._record.f[site])
        return self._cache[site]

    def __iter__(self):
        return iter(self._record.f)

    def __len__(self) -> int:
        return len(self._record.f)


@dataclass
class Record:
    """One forward pass: logits and, per site, the activation, its codes and its error."""

    logits: Tensor
    x: dict[Site, Tensor] = field(default_factory=dict)  # [b, p, d_model]; in the graph when recorded with grad
    f: dict[Site, Tensor] = field(default_factory=dict)  # [b, p, d_dict], detached
    e: Mapping[Site, Tensor] = field(default_factory=dict)  # [b, p, d_model], detached (computed when read)
    resid_pre: dict[int, Tensor] = field(default_factory=dict)  # layer -> [b, p, d_model], detached


@dataclass
class LeafRecord:
    """A forward pass in which every site's output is a fresh leaf, so gradients stop at the nearest sites.

    ``pre[s]`` is the site's value as computed from the leaves upstream of it (in the graph) and
    ``inputs[s]`` what its dictionary reads (the same tensor except for transcoders).
    """

    logits: Tensor
    leaves: dict[Site, Tensor] = field(default_factory=dict)
    pre: dict[Site, Tensor] = field(default_factory=dict)
    inputs: dict[Site, Tensor] = field(default_factory=dict)


class SplicedModel:
    """A model, its dictionaries, and the forward passes the attribution code needs."""

    def __init__(self, handle: ModelHandle, dictionaries: DictionarySet) -> None:
        self.handle = handle
        self.model = handle.model
        self.dictionaries = dictionaries
        self.sites: list[Site] = dictionaries.sites

    @property
    def device(self) -> torch.device:
        return self.handle.device

    def dictionary(self, site: Site) -> Dictionary:
        return self.dictionaries[site]

    def encode(self, site: Site, x: Tensor, dict_input: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """Codes and error of activation ``x`` at ``site`` (``dict_input``: what a transcoder reads)."""
        dictionary = self.dictionary(site)
        f = dictionary.encode(x if dict_input is None else dict_input)
        return f, x - dictionary.decode(f)

    def _input_hooks(self, stash: dict[Site, Tensor], detach: bool) -> list[Hook]:
        hooks = []
        for site in self.sites:
            name = self.dictionary(site).input_hook
            if name is not None:
                def grab(x: Tensor, hook, site=site) -> None:
                    stash[site] = x.detach() if detach else x
                hooks.append((name, grab))
        return hooks

    # ------------------------------------------------------------------------------------ recording

    def record(self, tokens: Tensor, *, with_grad: bool = False) -> Record:
        """Run on ``tokens`` and record every site; with ``with_grad`` the ``x`` tensors stay in the graph."""
        inputs: dict[Site, Tensor] = {}
        record = Record(logits=torch.empty(0))

        def leaf_embed(x: Tensor, hook) -> Tensor:
            return x.detach().requires_grad_(True)

        def grab_resid(x: Tensor, hook) -> None:
            record.resid_pre[int(hook.name.split(".")[1])] = x.detach()

        def grab_site(x: Tensor, hook, site: Site) -> None:
            record.x[site] = x
            with torch.no_grad():
                record.f[site] = self.dictionary(site).encode(inputs.get(site, x).detach())

        hooks: list[Hook] = []
        if with_grad:
            hooks.append(("blocks.0.hook_resid_pre", leaf_embed))  # puts every later activation in the graph
        hooks += [(f"blocks.{layer}.hook_resid_pre", grab_resid) for layer in range(self.handle.n_layers)]
        hooks += self._input_hooks(inputs, detach=True)
        hooks += [(site.hook, lambda x, hook, site=site: grab_site(x, hook, site)) for site in self.sites]
        with torch.set_grad_enabled(with_grad), hooks_on(self.model, hooks):
            record.logits = self.model(tokens)
        record.e = Errors(record, lambda site, f: self.dictionary(site).decode(f))
        return record

    # ------------------------------------------------------------------------------- interventions

    def start_layer(self, site: Site) -> int:
        """The first block a change at ``site`` can affect."""
        if site.kind == "embed":
            return 0
        return site.layer + 1 if site.kind == "resid" else site.layer

    def run_with_site_value(
        self, site: Site, value: Tensor, resid_pre: dict[int, Tensor], rows: Tensor | None = None
    ) -> Tensor:
        """Logits when ``site`` holds ``value`` ``[n, p, d]`` and everything upstream is as recorded.

        Row ``j`` of ``value`` continues recorded example ``rows[j]``; without ``rows``, ``n`` is a multiple
        of the recorded batch (stacked interpolation steps). Only the blocks from ``site`` on are run.
        """
        start = self.start_layer(site)
        if site.kind in ("embed", "resid"):
            return self.model(value, start_at_layer=start)
        base = resid_pre[start]
        if rows is not None:
            base = base[rows]
        elif value.shape[0] != base.shape[0]:
            base = base.repeat(value.shape[0] // base.shape[0], 1, 1)
        with hooks_on(self.model, [(site.hook, lambda x, hook: value)]):
            return self.model(base, start_at_layer=start)

    def leaf_forward(self, tokens: Tensor) -> LeafRecord:
        """Forward pass with every site cut into a leaf (for direct edges, docs/sites-and-metrics.md)."""
        inputs: dict[Site, Tensor] = {}
        record = LeafRecord(logits=torch.empty(0))

        def cut(x: Tensor, hook, site: Site) -> Tensor:
            record.pre[site] = x
            record.inputs[site] = inputs.get(site, x)
            leaf = x.detach().requires_grad_(True)
            record.leaves[site] = leaf
            return leaf

        hooks = self._input_hooks(inputs, detach=False)
        hooks += [(site.hook, lambda x, hook, site=site: cut(x, hook, site)) for site in self.sites]
        with torch.enable_grad(), hooks_on(self.model, hooks):
            record.logits = self.model(tokens)
        return record

    def codes_of(self, leaf: LeafRecord) -> Record:
        """The clean record of a leaf pass (its site values are the clean activations): codes, errors, logits,
        without a second forward pass."""
        record = Record(logits=leaf.logits.detach())
        with torch.no_grad():
            for site in self.sites:
                record.x[site] = leaf.pre[site].detach()
                record.f[site] = self.dictionary(site).encode(leaf.inputs[site].detach())
        record.e = Errors(record, lambda site, f: self.dictionary(site).decode(f))
        return record

    def spliced_forward(
        self,
        tokens: Tensor,
        *,
        keep_features: dict[Site, Tensor] | None = None,
        keep_error: dict[Site, Tensor] | None = None,
        means: dict[Site, tuple[Tensor, Tensor]] | None = None,
    ) -> Tensor:
        """Logits of the model run on ``x̂ + e`` at every site.

        With ``keep_features[s]`` (bool, ``[d_dict]`` or ``[p, d_dict]``) and ``keep_error[s]`` (bool, ``[]``
        or ``[p]``), nodes not kept are replaced by their mean ``means[s] = (mean f, mean e)``: the
        mean-ablation of docs/sites-and-metrics.md. Without them the splice changes nothing but rounding.
        """
        inputs: dict[Site, Tensor] = {}

        def splice(x: Tensor, hook, site: Site) -> Tensor:
            dictionary = self.dictionary(site)
            f, e = self.encode(site, x, inputs.get(site))
            if keep_features is not None and means is not None:
                mean_f, mean_e = (mean_at(m, x.shape[1]) for m in means[site])
                # masks broadcast against [b, p, d]: [d] / [p, d] for features, [] / [p] for the error
                f = torch.where(keep_features[site], f, mean_f)
                e = torch.where(keep_error[site].unsqueeze(-1), e, mean_e)  # type: ignore[index]
            return dictionary.decode(f) + e

        hooks = self._input_hooks(inputs, detach=True)
        hooks += [(site.hook, lambda x, hook, site=site: splice(x, hook, site)) for site in self.sites]
        with torch.no_grad(), hooks_on(self.model, hooks):
            return self.model(tokens)


def mean_at(mean: Tensor, n_pos: int) -> Tensor:
    """A site mean for a batch of ``n_pos`` positions: per-position means ``[P, d]`` are cut to
    ``[n_pos, d]``; a single mean ``[d]`` serves every position."""
    return mean if mean.ndim == 1 else mean[:n_pos]
