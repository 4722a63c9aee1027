"""The settings of the head methods (``sfc heads compute``), kept free of torch: the CLI builds its options from
:class:`HeadSettings` when it lists its help, and ``sfc heads --help`` should not wait for torch to import.

The choices of each setting live here; the modules that implement them (``examples``, ``patching``, ``sae``,
``codes``) import them from here.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from ..settings_checks import refuse_unknown, require

NEGATIVES = ("auto", "counterfactual", "abc")  # examples.py: where the negative prompts come from
PATCHES = ("counterfactual", "mean")  # patching.py: what eap/exact patch a head's output with
POSITIONS = ("mean", "last")  # patching.py: how a head's output over a prompt becomes one vector for the SAE
DECODER_NORMS = ("atoms", "rows")  # sae.py: which decoder norm is held at one
EDGE_AGGREGATIONS = ("top-pairs", "sum")  # codes.py: how edge scores rank heads

METHODS = ("discrete-sae", "eap", "exact")
BUNDLE_METHOD = {"discrete-sae": "discrete-sae", "eap": "head-eap", "exact": "head-exact"}


@dataclass(frozen=True)
class HeadSettings:
    """Every constant of the head methods. Defaults: the published discrete-SAE set-up (200 latents,
    λ = 0.02, Adam lr 1e-3, 500 full-batch epochs, 10 training prompts, unnormalised counts)."""

    method: str = "discrete-sae"
    seed: int = 0
    n_examples: int = 50  # positive prompts (and as many negatives); for eap/exact: examples patched
    negatives: str = "auto"  # auto: abc for ioi, else the task's counterfactual prompts
    position: str = "mean"  # a head's output per prompt: mean over positions (published) or the last position
    n_sae_examples: int = 10  # prompts (drawn from positives and negatives together) the SAE is trained on
    n_latents: int = 200
    l1: float = 0.02
    lr: float = 1e-3
    epochs: int = 500
    decoder_norm: str = "atoms"  # unit-norm decoder atoms, or "rows" as the published code's layer does
    normalise: bool = False  # node and edge counts divided by the number of distinct codes (pairs)
    edge_aggregation: str = "top-pairs"  # how edge scores rank heads: top-pairs (published) or sum
    edge_top_fraction: float = 0.25  # top-pairs: the fraction of ordered head pairs whose endpoints count
    edge_floor: float = 0.0  # keep head → head edges with weight above this
    patch: str = "counterfactual"  # eap/exact: counterfactual prompts or the per-position dataset mean
    batch_size: int = 64  # execution only

    EXECUTION_FIELDS = ("batch_size",)

    def __post_init__(self) -> None:
        checks = [
            (self.method in METHODS, f"method must be one of {', '.join(METHODS)}, not {self.method!r}"),
            (self.n_examples >= 1, "n_examples must be at least 1"),
            (self.negatives in NEGATIVES, f"negatives must be one of {', '.join(NEGATIVES)}"),
            (self.position in POSITIONS, f"position must be one of {', '.join(POSITIONS)}"),
            (self.decoder_norm in DECODER_NORMS, f"decoder_norm must be one of {', '.join(DECODER_NORMS)}"),
            (self.n_sae_examples >= 1, "n_sae_examples must be at least 1"),
            (self.n_latents >= 1, "n_latents must be at least 1"),
            (self.l1 >= 0 and self.lr > 0 and self.epochs >= 1, "l1 must be >= 0, lr > 0 and epochs >= 1"),
            (self.edge_aggregation in EDGE_AGGREGATIONS,
             f"edge_aggregation must be one of {', '.join(EDGE_AGGREGATIONS)}"),
            (0 < self.edge_top_fraction <= 0.5, "edge_top_fraction must be in (0, 0.5]"),
            (self.edge_floor >= 0, "edge_floor must be >= 0"),
            (self.patch in PATCHES, f"patch must be one of {', '.join(PATCHES)}"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
        ]
        require(checks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> HeadSettings:
        refuse_unknown(cls, data, what="head setting")
        return cls(**data)

    def identity(self) -> dict[str, Any]:
        """The settings that change the result (for the circuit id)."""
        data = self.to_dict()
        for name in self.EXECUTION_FIELDS:
            data.pop(name)
        sae_only = ("negatives", "position", "n_sae_examples", "n_latents", "l1", "lr", "epochs", "decoder_norm",
                    "normalise", "edge_aggregation", "edge_top_fraction", "edge_floor", "seed")
        for name in sae_only if self.method != "discrete-sae" else ("patch",):
            data.pop(name)
        return data
