"""Ablating chosen dictionary latents (or neurons) at every position while keeping each site's error term.

SHIFT (seed 000) zeroes the features a judge marks task-irrelevant: at a site, ``x = D(f) + e`` becomes
``D(f') + e`` with ``f'`` the codes with those latents set to their fill value (zero for features; the paper's
neuron skyline mean-ablates neurons instead). The error ``e`` is kept, so with nothing ablated the model is
unchanged. The forward pass is the engine's own splice (:meth:`SplicedModel.spliced_forward`), restricted to
the sites that have something ablated.

Neurons are latents of a :class:`NeuronBasis` (the identity dictionary: ``f = x``, ``e = 0``), so one code
path ablates both, and the attribution engine scores neurons exactly as it scores features.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor

from sfc_graph.sites import Site

from .dictionaries import Dictionary, DictionaryInfo, DictionarySet, LoadedDictionary
from .model import ModelHandle
from .splice import SplicedModel


class NeuronBasis(Dictionary):
    """The identity "dictionary": every dimension of a site's activation is a latent (a neuron), no error."""

    architecture = "neurons"
    kind = "neurons"

    def __init__(self, d_model: int, *, dtype: torch.dtype = torch.float32) -> None:
        eye = torch.eye(d_model, dtype=dtype)
        zeros = torch.zeros(d_model, dtype=dtype)
        super().__init__(eye.clone(), zeros.clone(), eye.clone(), zeros.clone(), apply_b_dec_to_input=False)

    def activation(self, pre: Tensor) -> Tensor:
        return pre  # neurons may be negative: no ReLU


def neuron_dictionaries(handle: ModelHandle, sites: list[Site]) -> DictionarySet:
    """A :class:`NeuronBasis` at each of ``sites``."""
    loaded = {}
    for site in sites:
        info = DictionaryInfo(id=f"{handle.model_id}/{site.name}/neurons", kind="neurons", architecture="neurons",
                              d_dict=handle.d_model, sha256="identity", path="identity")
        loaded[site] = LoadedDictionary(site=site, dictionary=NeuronBasis(handle.d_model, dtype=handle.model.cfg.dtype),
                                        info=info)
    return DictionarySet(by_site=loaded)


@dataclass
class Ablation:
    """Latents set to a fill value at every position: ``indices[site]`` (int64), ``fill[site]`` ``[d_dict]``
    (zero when absent). ``dictionaries`` must hold every site named in ``indices``."""

    dictionaries: DictionarySet
    indices: dict[Site, Tensor] = field(default_factory=dict)
    fill: dict[Site, Tensor] = field(default_factory=dict)
    name: str = "ablation"

    @property
    def n_latents(self) -> int:
        return int(sum(len(i) for i in self.indices.values()))

    @property
    def sites(self) -> list[Site]:
        """The sites spliced (a site listed with no latents is spliced and left as it was)."""
        return sorted(self.indices, key=lambda s: s.order)

    def pairs(self) -> list[tuple[Site, int]]:
        """``(site, latent)`` for every ablated latent, in forward order."""
        return [(s, int(i)) for s in self.sites for i in sorted(self.indices[s].tolist())]

    def forward(self, handle: ModelHandle, tokens: Tensor) -> Tensor:
        """The model's output on ``tokens`` with the ablation applied (the plain model when no site is listed)."""
        if not self.sites:
            with torch.no_grad():
                return handle.model(tokens)
        subset = DictionarySet(by_site={s: self.dictionaries.by_site[s] for s in self.sites})
        subset.to(handle.device, handle.model.cfg.dtype)
        spliced = SplicedModel(handle, subset)
        keep_f, keep_e, fills = {}, {}, {}
        for site in self.sites:
            d_dict = subset[site].d_dict
            keep = torch.ones(d_dict, dtype=torch.bool, device=handle.device)
            keep[self.indices[site].to(handle.device)] = False
            keep_f[site] = keep
            keep_e[site] = torch.tensor(True, device=handle.device)
            fill = self.fill.get(site)
            fill = torch.zeros(d_dict) if fill is None else fill
            fills[site] = (fill.to(handle.device, handle.model.cfg.dtype),
                           torch.zeros(handle.d_model, device=handle.device, dtype=handle.model.cfg.dtype))
        return spliced.spliced_forward(tokens, keep_features=keep_f, keep_error=keep_e, means=fills)
