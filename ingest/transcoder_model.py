"""A model with transcoders at its MLPs, seen as linear maps between features (Dunefsky et al. 2024, seed 004).

Everything the weight graph and transcoder attribution need from the weights lives here, so both read the
residual stream the same way. The one convention that matters — **LayerNorm as a fixed scale** — is:

* every sublayer reads ``LN(x) = (C x / s) ⊙ w + b`` of the residual stream ``x`` (``C`` centres, ``s`` is the
  token's RMS of the centred stream); for a fixed ``s`` that is linear in ``x``;
* the centring ``C`` and the LN weight ``w`` (where the reader sees it) are folded into the *reading* weights:
  ``enc_read[l] = C diag(w) W_enc[l]``, ``ov_read[L,h] = C diag(w1) W_V[L,h] W_O[L,h]``, ``unembed_read = C
  diag(wf) W_U``; input-invariant weights (:mod:`ingest.weights`) are products with these;
* ``1/s`` is input-dependent: left out of every input-invariant weight, and frozen at the clean run's value in
  attributions (:mod:`ingest.transcoder_attribution`), where the LN bias ``b`` goes to the bias term.

A transcoder in the zoo reads ``blocks.L.ln2.hook_normalized`` (transformer_lens: ``C x / s``, before ``w`` and
``b``), so its read has centring and scale but no weight or bias; one reading ``hook_mlp_in`` sees ``w`` and ``b``;
one reading ``hook_resid_mid`` reads the stream itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from sfc_graph.errors import ComputeError
from sfc_graph.sites import Site

from .dictionaries import Dictionary, DictionaryInfo, DictionarySet
from .model import ModelHandle

LN_CONVENTION = (
    "LayerNorm as a fixed scale: centring and the LN weight are folded into the reading weights "
    "(enc_read = C diag(w) W_enc, ov_read = C diag(w1) W_V W_O, unembed_read = C diag(wf) W_U); the per-token "
    "1/scale is input-dependent, excluded from weight_invariant and frozen at the clean run in attributions; "
    "LN biases go to the bias term"
)


@dataclass(frozen=True)
class Read:
    """How one sublayer reads the residual stream: ``((C x) / s) ⊙ weight + bias`` (each part optional).

    >>> r = Read(center=True, weight=None, bias=None, scale_hook="blocks.0.ln2.hook_scale")
    >>> r.direction(torch.eye(2)).tolist()   # centring a 2-d stream: C = I - 1/2
    [[0.5, -0.5], [-0.5, 0.5]]
    """

    center: bool
    weight: Tensor | None
    bias: Tensor | None
    scale_hook: str | None  # None: no normalisation (scale 1)

    def direction(self, reads: Tensor) -> Tensor:
        """``C diag(weight) reads``: the input-invariant residual-stream directions of ``reads`` [d_model, n]."""
        out = reads if self.weight is None else reads * self.weight[:, None]
        return out - out.mean(0, keepdim=True) if self.center else out

    def constant(self, reads: Tensor) -> Tensor:
        """``bias · reads`` [n]: the part of the reading that does not depend on the stream."""
        if self.bias is None:
            return torch.zeros(reads.shape[-1], dtype=reads.dtype)
        return self.bias @ reads


class TranscoderModel:
    """A transformer_lens model and one transcoder per MLP layer, with the weights the paper's analysis uses."""

    def __init__(self, handle: ModelHandle, dictionaries: DictionarySet) -> None:
        self.handle = handle
        self.model = handle.model
        cfg = self.model.cfg
        self.n_layers, self.n_heads, self.d_model = int(cfg.n_layers), int(cfg.n_heads), int(cfg.d_model)
        self.transcoders: dict[int, Dictionary] = {}
        self.infos: dict[int, DictionaryInfo] = {}
        for site in dictionaries.sites:
            entry = dictionaries.by_site[site]
            if site.kind == "mlp" and entry.info.kind == "transcoder":
                self.transcoders[site.layer] = entry.dictionary
                self.infos[site.layer] = entry.info
        missing = [layer for layer in range(self.n_layers) if layer not in self.transcoders]
        if missing:
            raise ComputeError(
                f"transcoder analysis needs a transcoder at every MLP; none at {', '.join(f'mlp_{m}' for m in missing)} "
                "(pass --dict toy-zoo-transcoders, or mlp_L=PATH for each layer)"
            )
        if getattr(cfg, "attn_only", False) or getattr(cfg, "parallel_attn_mlp", False):
            raise ComputeError("transcoder analysis needs sequential attention and MLP blocks")
        if cfg.positional_embedding_type not in ("standard",):
            raise ComputeError(
                f"positional embedding {cfg.positional_embedding_type!r} is not supported by transcoder analysis "
                "(only learned absolute positions add into the residual stream)"
            )
        self.others = {site: dictionaries.by_site[site] for site in dictionaries.sites
                       if not (site.kind == "mlp" and dictionaries.by_site[site].info.kind == "transcoder")}
        self.mlp_reads = [self._transcoder_read(layer) for layer in range(self.n_layers)]
        self.attn_reads = [self._ln_read(f"blocks.{layer}.ln1") for layer in range(self.n_layers)]
        self.final_read = self._ln_read("ln_final")

    # --- reads --------------------------------------------------------------------------------------------
    def _norm_kind(self) -> str:
        return str(self.model.cfg.normalization_type or "none")

    def _ln_read(self, prefix: str) -> Read:
        """The read of the LayerNorm module at ``prefix`` (``blocks.0.ln1``, ``ln_final``)."""
        kind = self._norm_kind()
        if kind == "none":
            return Read(center=False, weight=None, bias=None, scale_hook=None)
        module = self.model.get_submodule(prefix)
        center = kind in ("LN", "LNPre")
        weight = module.w.detach().float() if hasattr(module, "w") else None
        bias = module.b.detach().float() if hasattr(module, "b") else None
        return Read(center=center, weight=weight, bias=bias, scale_hook=f"{prefix}.hook_scale")

    def _transcoder_read(self, layer: int) -> Read:
        hook = self.transcoders[layer].input_hook or f"blocks.{layer}.ln2.hook_normalized"
        if hook == f"blocks.{layer}.ln2.hook_normalized":
            kind = self._norm_kind()
            if kind == "none":
                return Read(center=False, weight=None, bias=None, scale_hook=None)
            return Read(center=kind in ("LN", "LNPre"), weight=None, bias=None, scale_hook=f"blocks.{layer}.ln2.hook_scale")
        if hook == f"blocks.{layer}.hook_mlp_in":
            return self._ln_read(f"blocks.{layer}.ln2")
        if hook == f"blocks.{layer}.hook_resid_mid":
            return Read(center=False, weight=None, bias=None, scale_hook=None)
        raise ComputeError(
            f"the transcoder at mlp_{layer} reads {hook}; transcoder analysis supports blocks.{layer}.ln2.hook_normalized, "
            f"blocks.{layer}.hook_mlp_in and blocks.{layer}.hook_resid_mid"
        )

    # --- weights ------------------------------------------------------------------------------------------
    def d_sae(self, layer: int) -> int:
        return int(self.transcoders[layer].W_enc.shape[1])

    def W_dec(self, layer: int) -> Tensor:
        return self.transcoders[layer].W_dec

    def enc_read(self, layer: int, columns: slice | Tensor | None = None) -> Tensor:
        """``C diag(w) W_enc[l][:, columns]`` [d_model, n]: what transcoder ``l``'s features read, LN folded."""
        W = self.transcoders[layer].W_enc
        return self.mlp_reads[layer].direction(W if columns is None else W[:, columns])

    def enc_constant(self, layer: int) -> Tensor:
        """The part of each pre-activation that no residual component writes: ``b_ln · W_enc + b_enc``."""
        tc = self.transcoders[layer]
        return self.mlp_reads[layer].constant(tc.W_enc) + tc.b_enc

    def W_V(self, layer: int, head: int) -> Tensor:
        return self.model.W_V[layer, head].detach().float()

    def W_O(self, layer: int, head: int) -> Tensor:
        return self.model.W_O[layer, head].detach().float()

    def v_read(self, layer: int, head: int) -> Tensor:
        """``C diag(w1) W_V[L,h]`` [d_model, d_head]: the head's value read, LN folded (OV = v_read @ W_O)."""
        return self.attn_reads[layer].direction(self.W_V(layer, head))

    def ov_read(self, layer: int, head: int) -> Tensor:
        """``C diag(w1) W_V W_O`` [d_model, d_model]: a residual direction at the source → the head's output."""
        return self.v_read(layer, head) @ self.W_O(layer, head)

    @property
    def W_E(self) -> Tensor:
        return self.model.W_E.detach().float()

    @property
    def W_pos(self) -> Tensor:
        return self.model.W_pos.detach().float()

    def unembed_read(self) -> Tensor:
        """``C diag(wf) W_U`` [d_model, d_vocab]: logit lens directions, LN folded."""
        return self.final_read.direction(self.model.W_U.detach().float())

    def token_text(self, token: int) -> str:
        tokenizer = self.model.tokenizer
        if tokenizer is None:
            return str(token)
        return str(tokenizer.convert_ids_to_tokens(int(token)))

    def vocab_texts(self) -> list[str]:
        tokenizer = self.model.tokenizer
        n = int(self.model.cfg.d_vocab)
        if tokenizer is None:
            return [str(t) for t in range(n)]
        return [str(t) for t in tokenizer.convert_ids_to_tokens(list(range(n)))]

    def transcoder_site(self, layer: int) -> Site:
        return Site("mlp", layer)
