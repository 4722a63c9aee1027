"""The small SAE of the discrete-SAE method, trained from scratch on a handful of examples' head outputs.

As the published method defines it: ReLU encoder ``f = ReLU(W_enc (x - b) + b_enc)``, decoder
``x̂ = W_dec f + b`` with the same (tied) bias ``b`` subtracted before encoding and added after decoding,
unit-norm dictionary atoms, loss ``MSE(x̂, x) + λ · mean over vectors of ‖f‖₁``, Adam, full-batch epochs.
The published code's layer keeps the rows of both weight matrices at unit norm (renormalised at every forward
pass): for the encoder, one row per latent; for its decoder, one row per *input dimension*, not the atoms. By
default we keep the atoms (columns of ``W_dec``) at unit norm, the usual meaning of a unit-norm decoder;
``decoder_norm="rows"`` reproduces the published code. Encoder rows are kept at unit norm as there. Weights are
renormalised after every optimiser step (the published code does it before each forward: the same sequence).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from .settings import DECODER_NORMS



class HeadSAE(nn.Module):
    def __init__(self, d_in: int, n_latents: int, *, generator: torch.Generator, decoder_norm: str = "atoms"):
        super().__init__()
        if decoder_norm not in DECODER_NORMS:
            raise ValueError(f"decoder_norm must be one of {', '.join(DECODER_NORMS)}")
        self.decoder_dim = 0 if decoder_norm == "atoms" else 1
        self.bias = nn.Parameter(torch.zeros(d_in))  # tied pre-encoder / post-decoder bias
        w_enc = torch.randn(n_latents, d_in, generator=generator)
        self.w_enc = nn.Parameter(w_enc / w_enc.norm(dim=1, keepdim=True))
        bound = 1 / math.sqrt(d_in)
        self.b_enc = nn.Parameter(torch.rand(n_latents, generator=generator) * 2 * bound - bound)
        w_dec = torch.randn(d_in, n_latents, generator=generator)
        self.w_dec = nn.Parameter(w_dec / w_dec.norm(dim=self.decoder_dim, keepdim=True))

    def encode(self, x: Tensor) -> Tensor:
        return torch.relu((x - self.bias) @ self.w_enc.T + self.b_enc)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = self.encode(x)
        return f, f @ self.w_dec.T + self.bias

    @torch.no_grad()
    def normalise(self) -> None:
        self.w_dec /= self.w_dec.norm(dim=self.decoder_dim, keepdim=True).clamp_min(1e-12)
        self.w_enc /= self.w_enc.norm(dim=1, keepdim=True).clamp_min(1e-12)


def sae_loss(x: Tensor, f: Tensor, x_hat: Tensor, l1: float) -> Tensor:
    """``MSE + l1 · mean ‖f‖₁`` over every vector of ``x`` (any leading shape)."""
    return torch.nn.functional.mse_loss(x_hat, x) + l1 * f.abs().sum(-1).mean()


def train_head_sae(
    vectors: Tensor, *, n_latents: int, l1: float, lr: float, epochs: int, seed: int, decoder_norm: str = "atoms"
) -> tuple[HeadSAE, list[float]]:
    """Train on ``vectors`` ``[..., d_in]`` (all heads of all training examples), full batch; returns the SAE
    and the loss after each epoch."""
    generator = torch.Generator().manual_seed(seed)
    x = vectors.detach().float().cpu()
    sae = HeadSAE(x.shape[-1], n_latents, generator=generator, decoder_norm=decoder_norm)
    optimiser = torch.optim.Adam(sae.parameters(), lr=lr)
    losses = []
    for _ in range(epochs):
        optimiser.zero_grad()
        f, x_hat = sae(x)
        loss = sae_loss(x, f, x_hat, l1)
        loss.backward()
        optimiser.step()
        sae.normalise()
        losses.append(float(loss.detach()))
    return sae, losses


@torch.no_grad()
def argmax_codes(sae: HeadSAE, vectors: Tensor) -> Tensor:
    """The discrete code of each vector: the index of its largest latent (``[examples, heads]`` int64).

    A vector whose latents are all zero gets code 0, as with ``argmax`` in the published code."""
    return sae.encode(vectors.float().cpu()).argmax(-1)
