"""Sites: where in a transformer_lens model a dictionary is attached (docs/sites-and-metrics.md).

A site name is ``embed`` or ``<kind>_<layer>`` with kind in attn, mlp, resid. The same names key the
bundle manifest's ``dictionaries`` and prefix node ids (``resid_3/1234``), so the store, the ingest job and
the zoo all use them; the names themselves are built and parsed by :mod:`sfc_graph.naming`.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import naming
from .errors import SfcError

SITE_KINDS = naming.SITE_KINDS


@dataclass(frozen=True, order=True)
class Site:
    """A dictionary attachment point. ``layer`` is -1 for ``embed`` (and for the ``output`` pseudo-site)."""

    kind: str
    layer: int

    @property
    def name(self) -> str:
        return naming.site_name(self.kind, self.layer)

    @property
    def hook(self) -> str:
        """The transformer_lens hook whose activation this site's dictionary reads and reconstructs.

        ``embed`` is the residual stream entering block 0 (token + positional embedding), so that it plays
        the role of ``resid_{-1}`` in the wiring of docs/sites-and-metrics.md.
        """
        if self.kind == "embed":
            return "blocks.0.hook_resid_pre"
        if self.kind == "attn":
            return f"blocks.{self.layer}.hook_attn_out"
        if self.kind == "mlp":
            return f"blocks.{self.layer}.hook_mlp_out"
        if self.kind == "resid":
            return f"blocks.{self.layer}.hook_resid_post"
        raise SfcError(f"site {self.name!r} has no hook")

    @property
    def order(self) -> tuple[int, int]:
        """Position in the forward pass: embed first, then attn, mlp, resid of each layer, output last."""
        rank = {"embed": 0, "attn": 1, "mlp": 2, "resid": 3, "output": 4}[self.kind]
        layer = 10**6 if self.kind == "output" else self.layer
        return (layer, rank)

    def __str__(self) -> str:
        return self.name


def parse_site(name: str) -> Site:
    """Parse ``embed``, ``attn_2``, ``mlp_0``, ``resid_3`` (or ``output``) into a :class:`Site`."""
    return Site(*naming.parse_site_name(name))


def all_sites(n_layers: int) -> list[Site]:
    """Every site of an ``n_layers`` model, in forward order."""
    sites = [Site("embed", -1)]
    for layer in range(n_layers):
        sites += [Site("attn", layer), Site("mlp", layer), Site("resid", layer)]
    return sites
