"""The input-invariant weight graph of a model and its transcoders (Dunefsky et al. 2024, seed 004, §4.1).

Computed once per model and dictionary set, independent of any circuit:

* ``resid``: transcoder feature ``i`` of layer ``l`` → feature ``j`` of layer ``l' > l`` through the residual
  stream, the pullback ``W_dec[l][i] · enc_read[l'][:, j]``;
* ``ov``: the same through attention head ``(L, h)`` with ``l < L ≤ l'``: ``W_dec[l][i] · ov_read[L,h] ·
  enc_read[l'][:, j]`` (the attention pattern is the input-dependent part, left out);
* ``embed`` / ``embed_ov``: de-embeddings, token ``t`` → feature ``j``: ``W_E[t] · enc_read[l'][:, j]``, and
  through each head of a layer ``L ≤ l'``: ``W_E[t] · ov_read[L,h] · enc_read[l'][:, j]`` (top tokens);
* ``logit``: the logit lens of every dictionary feature (transcoders and SAEs alike), ``W_dec[i] ·
  unembed_read`` — the top and the bottom tokens.

LayerNorm is a fixed scale: see :data:`ingest.transcoder_model.LN_CONVENTION` (recorded in the manifest).
For every target feature the ``top_k`` inputs by ``|weight|`` of each kind (``resid``, ``ov``) are kept, plus
every input with ``|weight| ≥ floor`` when a floor is set.

Memory is bounded by construction: the loop runs over (target layer, source layer, head) and, inside, over
blocks of ``block`` target features, so the largest temporary is ``d_sae × block`` floats, plus the running
top-k of one target layer (``2 · top_k × d_sae`` values and indices) — never a ``d_sae × d_sae`` matrix per
layer pair. A head's OV map is applied in its low-rank form (``W_dec · C diag(w) W_V`` is ``d_sae × d_head``).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from dataclasses import asdict, dataclass

import polars as pl
import torch
from torch import Tensor

from sfc_graph.errors import ComputeError

from .transcoder_model import LN_CONVENTION, TranscoderModel

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]
FEATURE_EDGE_SCHEMA = {
    "src_layer": pl.Int16, "src_index": pl.Int32, "dst_layer": pl.Int16, "dst_index": pl.Int32,
    "kind": pl.String, "via_layer": pl.Int16, "via_head": pl.Int16, "weight": pl.Float32, "rank": pl.Int32,
}
TOKEN_EDGE_SCHEMA = {
    "token": pl.Int32, "site": pl.String, "index": pl.Int32, "kind": pl.String, "via_layer": pl.Int16,
    "via_head": pl.Int16, "weight": pl.Float32, "rank": pl.Int32,
}


@dataclass(frozen=True)
class WeightSettings:
    """What the weight graph keeps. Every field enters the weight graph's id."""

    top_k: int = 50  # inputs kept per target feature and kind (resid, ov)
    floor: float | None = None  # also keep every input with |weight| >= floor
    n_tokens: int = 10  # de-embedding tokens per feature (and per head), logit-lens tokens per end
    block: int = 1024  # target features per block (memory: d_sae × block floats)
    deembeddings: bool = True
    logit_lens: bool = True
    max_targets: int | None = None  # only the first N features of each target layer (benchmark extrapolation)

    def validate(self) -> None:
        if self.top_k < 1 or self.n_tokens < 1 or self.block < 1:
            raise ComputeError("top_k, n_tokens and block must be at least 1")
        if self.max_targets is not None and self.max_targets < 1:
            raise ComputeError("max_targets must be at least 1 (or unset for every feature)")
        if self.floor is not None and not self.floor > 0:
            raise ComputeError("the floor must be a positive number (or unset)")


@dataclass
class WeightGraph:
    """The weight graph's tables and what identifies it."""

    manifest: dict
    feature_edges: pl.DataFrame  # transcoder feature -> transcoder feature (resid, ov)
    token_edges: pl.DataFrame  # token -> feature (embed, embed_ov) and feature -> token (logit)
    tokens: pl.DataFrame  # token, text


class _TopK:
    """The running top-k (by |value|) of each of ``n`` targets over a stream of blocks of candidate rows.

    Blocks arrive transposed, ``[targets, candidates]``, so that top-k runs along the contiguous dimension (about
    three times faster than along the first one for a 32k-row block). Empty slots hold NaN, which ranks below
    every real value.
    """

    def __init__(self, k: int, n: int, n_tags: int) -> None:
        self.values = torch.full((n, k), float("nan"))
        self.tags = torch.zeros(n, k, n_tags, dtype=torch.int32)

    def add(self, values: Tensor, tags: Tensor, targets: slice) -> None:
        """Merge ``values`` [b, candidates] (targets ``targets``); ``tags`` [candidates, n_tags] label candidates."""
        k = self.values.shape[1]
        _, idx = values.abs().topk(min(k, values.shape[1]), dim=1)  # the block's own best first
        cat_v = torch.cat([self.values[targets], values.gather(1, idx)], dim=1)
        cat_t = torch.cat([self.tags[targets], tags[idx]], dim=1)
        _, order = torch.nan_to_num(cat_v.abs(), nan=-1.0).topk(k, dim=1)
        self.values[targets] = cat_v.gather(1, order)
        self.tags[targets] = cat_t.gather(1, order[..., None].expand(-1, -1, cat_t.shape[2]))


def weight_graph_id(tm: TranscoderModel, settings: WeightSettings, extra_dicts: dict[str, str]) -> str:
    """A content hash of the model's weights, the dictionaries and the settings."""
    digest = hashlib.sha256()
    digest.update(tm.handle.weights_sha256.encode())
    for layer in sorted(tm.infos):
        digest.update(tm.infos[layer].sha256.encode())
    for site in sorted(extra_dicts):
        digest.update(f"{site}:{extra_dicts[site]}".encode())
    keep = {k: v for k, v in asdict(settings).items() if k != "block"}
    digest.update(json.dumps(keep, sort_keys=True).encode())
    return "wg-" + digest.hexdigest()[:16]


@torch.no_grad()
def feature_edges(tm: TranscoderModel, settings: WeightSettings, progress: Progress | None = None) -> pl.DataFrame:
    """Top-k (and above-floor) inputs of every transcoder feature, through the stream and through heads."""
    settings.validate()
    units = _feature_units(tm)
    done = 0
    frames = []
    for dst in range(1, tm.n_layers):
        n = min(tm.d_sae(dst), settings.max_targets or tm.d_sae(dst))
        enc = tm.enc_read(dst, slice(0, n))  # [d_model, n]
        tops = {kind: _TopK(settings.top_k, n, 4) for kind in ("resid", "ov")}
        above: list[pl.DataFrame] = []
        for src in range(dst):
            W_dec = tm.W_dec(src)
            rows = torch.arange(W_dec.shape[0], dtype=torch.int32)
            tags = torch.stack([torch.full_like(rows, src), rows, torch.full_like(rows, -1), torch.full_like(rows, -1)], 1)
            _blocked(lambda c: enc[:, c].T @ W_dec.T, n, settings, tops["resid"], tags, above, dst, "resid")
            done += 1
            if progress:
                progress(done, units)
            for layer in range(src + 1, dst + 1):
                for head in range(tm.n_heads):
                    left = tm.v_read(layer, head).T @ W_dec.T  # [d_head, d_sae_src]: the OV map in low-rank form
                    right = enc.T @ tm.W_O(layer, head).T  # [n, d_head]
                    head_tags = tags.clone()
                    head_tags[:, 2], head_tags[:, 3] = layer, head
                    _blocked(lambda c: right[c] @ left, n, settings, tops["ov"], head_tags, above, dst, "ov")
                    done += 1
                    if progress:
                        progress(done, units)
        for kind, top in tops.items():
            frames.append(_topk_frame(top, dst, kind))
        log.info("weight graph: inputs of %d features of layer %d", n, dst)
        frames += above
    if not frames:
        return pl.DataFrame(schema=FEATURE_EDGE_SCHEMA)
    table = pl.concat([f.select(list(FEATURE_EDGE_SCHEMA)).cast(FEATURE_EDGE_SCHEMA) for f in frames])
    # an above-floor input may also be in the top k: keep it once
    table = table.unique(["src_layer", "src_index", "dst_layer", "dst_index", "kind", "via_layer", "via_head"],
                         keep="first", maintain_order=True)
    return _ranked(table, ["dst_layer", "dst_index", "kind"])


def _feature_units(tm: TranscoderModel) -> int:
    return sum(1 + tm.n_heads * (dst - src) for dst in range(1, tm.n_layers) for src in range(dst))


def _blocked(product, n: int, settings: WeightSettings, top: _TopK, tags: Tensor, above: list, dst: int, kind: str) -> None:
    for start in range(0, n, settings.block):
        columns = slice(start, min(n, start + settings.block))
        values = product(columns)  # [b targets, candidate rows]
        top.add(values, tags, columns)
        if settings.floor is not None:
            hit = torch.nonzero(values.abs() >= settings.floor)  # (target, candidate) pairs
            if hit.shape[0]:
                t = tags[hit[:, 1]]
                above.append(pl.DataFrame({
                    "src_layer": t[:, 0].numpy(), "src_index": t[:, 1].numpy(),
                    "dst_layer": [dst] * hit.shape[0], "dst_index": (hit[:, 0] + start).numpy(),
                    "kind": [kind] * hit.shape[0], "via_layer": t[:, 2].numpy(), "via_head": t[:, 3].numpy(),
                    "weight": values[hit[:, 0], hit[:, 1]].numpy(), "rank": [0] * hit.shape[0],
                }))


def _topk_frame(top: _TopK, dst: int, kind: str) -> pl.DataFrame:
    n, k = top.values.shape
    if k == 0:
        return pl.DataFrame(schema=FEATURE_EDGE_SCHEMA)
    values = top.values.reshape(-1)
    tags = top.tags.reshape(-1, 4)
    keep = ~torch.isnan(values)
    dst_index = torch.arange(n, dtype=torch.int32).repeat_interleave(k)[keep]
    tags, values = tags[keep], values[keep]
    return pl.DataFrame({
        "src_layer": tags[:, 0].numpy(), "src_index": tags[:, 1].numpy(), "dst_layer": [dst] * values.shape[0],
        "dst_index": dst_index.numpy(), "kind": [kind] * values.shape[0], "via_layer": tags[:, 2].numpy(),
        "via_head": tags[:, 3].numpy(), "weight": values.numpy(), "rank": [0] * values.shape[0],
    })


def _ranked(table: pl.DataFrame, group: list[str]) -> pl.DataFrame:
    """``rank``: 1 for the strongest |weight| within ``group`` (ties broken by the table's order)."""
    return (
        table.with_columns(pl.col("weight").abs().rank("ordinal", descending=True).over(group).cast(pl.Int32).alias("rank"))
        .sort(group + ["rank"])
    )


@torch.no_grad()
def token_edges(tm: TranscoderModel, settings: WeightSettings, progress: Progress | None = None) -> pl.DataFrame:
    """De-embeddings of every transcoder feature (directly and through each head), and the logit lens of every
    dictionary feature (top and bottom tokens)."""
    settings.validate()
    frames = []
    W_E = tm.W_E
    n_tok = min(settings.n_tokens, W_E.shape[0])
    heads = [(layer, head) for layer in range(tm.n_layers) for head in range(tm.n_heads)]
    units = (sum(1 + tm.n_heads * (dst + 1) for dst in range(tm.n_layers)) if settings.deembeddings else 0) + \
            (len(_lens_dictionaries(tm)) if settings.logit_lens else 0)
    done = 0
    if settings.deembeddings:
        for dst in range(tm.n_layers):
            enc = tm.enc_read(dst, slice(0, settings.max_targets))
            site = f"mlp_{dst}"
            frames.append(_top_tokens(lambda c: enc[:, c].T @ W_E.T, enc.shape[1], n_tok, settings.block, site, "embed",
                                      -1, -1))
            done += 1
            if progress:
                progress(done, units)
            for layer, head in heads:
                if layer > dst:
                    continue
                left = tm.v_read(layer, head).T @ W_E.T  # [d_head, vocab]
                right = enc.T @ tm.W_O(layer, head).T  # [n, d_head]
                frames.append(_top_tokens(lambda c: right[c] @ left, enc.shape[1], n_tok, settings.block, site,
                                          "embed_ov", layer, head))
                done += 1
                if progress:
                    progress(done, units)
    if settings.logit_lens:
        unembed = tm.unembed_read()  # [d_model, vocab]
        for site, W_dec in _lens_dictionaries(tm).items():
            W_dec = W_dec[: settings.max_targets]
            for sign, kind in ((1.0, "logit"), (-1.0, "logit")):
                frames.append(_top_tokens(lambda c: sign * (W_dec[c] @ unembed), W_dec.shape[0], n_tok,
                                          settings.block, site, kind, -1, -1, sign=sign))
            done += 1
            if progress:
                progress(done, units)
    if not frames:
        return pl.DataFrame(schema=TOKEN_EDGE_SCHEMA)
    table = pl.concat(frames).cast(TOKEN_EDGE_SCHEMA)
    table = table.with_columns(pl.when(pl.col("weight") >= 0).then(pl.lit(1)).otherwise(pl.lit(-1)).alias("_sign"))
    ranked = _ranked(table, ["site", "index", "kind", "via_layer", "via_head", "_sign"])
    return ranked.drop("_sign").select(list(TOKEN_EDGE_SCHEMA))


def _lens_dictionaries(tm: TranscoderModel) -> dict[str, Tensor]:
    out = {f"mlp_{layer}": tm.W_dec(layer) for layer in range(tm.n_layers)}
    for site, entry in tm.others.items():
        out[site.name] = entry.dictionary.W_dec.detach().float()
    return out


def _top_tokens(product, n: int, k: int, block: int, site: str, kind: str, via_layer: int, via_head: int,
                sign: float = 1.0) -> pl.DataFrame:
    """Per feature (row of ``product``, [features, vocab]), the ``k`` tokens with the largest value (× ``sign``)."""
    parts = []
    for start in range(0, n, block):
        columns = slice(start, min(n, start + block))
        values = product(columns)  # [b, vocab]
        top, idx = values.topk(k, dim=1)  # [b, k]
        b = values.shape[0]
        parts.append(pl.DataFrame({
            "token": idx.reshape(-1).numpy().astype("int32"),
            "site": [site] * (k * b),
            "index": torch.arange(start, start + b, dtype=torch.int32).repeat_interleave(k).numpy(),
            "kind": [kind] * (k * b), "via_layer": [via_layer] * (k * b), "via_head": [via_head] * (k * b),
            "weight": (sign * top.reshape(-1)).numpy(), "rank": [0] * (k * b),
        }))
    return pl.concat(parts)


def weight_graph_units(tm: TranscoderModel, settings: WeightSettings) -> int:
    """How many steps :func:`build_weight_graph` reports progress in (one per matrix product series)."""
    return _feature_units(tm) + (sum(1 + tm.n_heads * (d + 1) for d in range(tm.n_layers)) if settings.deembeddings else 0) \
        + (len(_lens_dictionaries(tm)) if settings.logit_lens else 0)


def build_weight_graph(tm: TranscoderModel, settings: WeightSettings = WeightSettings(),
                       progress: Progress | None = None) -> WeightGraph:
    """The whole weight graph of ``tm`` (feature edges, de-embeddings, logit lens) with its manifest."""
    settings.validate()
    total = weight_graph_units(tm, settings)
    offset = 0

    def sub(done: int, _units: int) -> None:
        if progress:
            progress(offset + done, total)

    features = feature_edges(tm, settings, sub)
    offset = _feature_units(tm)
    tokens_table = token_edges(tm, settings, sub)
    if progress:
        progress(total, total)
    dictionaries = {f"mlp_{layer}": tm.infos[layer].manifest_entry() for layer in range(tm.n_layers)}
    for site, entry in tm.others.items():
        dictionaries[site.name] = entry.info.manifest_entry()
    extra = {site: entry["sha256"] for site, entry in dictionaries.items() if not site.startswith("mlp_")}
    manifest = {
        "schema_version": 1,
        "weight_graph_id": weight_graph_id(tm, settings, extra),
        "model": tm.handle.model_id,
        "model_sha256": tm.handle.weights_sha256,
        "dictionaries": dictionaries,
        "settings": asdict(settings),
        "layernorm": LN_CONVENTION,
        "kinds": {
            "resid": "transcoder feature -> later transcoder feature through the residual stream: W_dec[i] . enc_read[:, j]",
            "ov": "through attention head (via_layer, via_head): W_dec[i] . ov_read . enc_read[:, j]",
            "embed": "token -> transcoder feature: W_E[t] . enc_read[:, j]",
            "embed_ov": "token -> transcoder feature through a head's OV: W_E[t] . ov_read . enc_read[:, j]",
            "logit": "dictionary feature -> token, logit lens: W_dec[i] . unembed_read[:, t] (top and bottom)",
        },
        "n_layers": tm.n_layers,
        "n_heads": tm.n_heads,
        "counts": {"feature_edges": features.height, "token_edges": tokens_table.height},
    }
    texts = tm.vocab_texts()
    tokens = pl.DataFrame({"token": list(range(len(texts))), "text": texts}, schema={"token": pl.Int32, "text": pl.String})
    return WeightGraph(manifest=manifest, feature_edges=features, token_edges=tokens_table, tokens=tokens)
