"""Feature dashboards from a corpus: top activating contexts, density and logit lens, for every latent.

One pass over the corpus in batches. At each site the dictionary's codes of the clean activations (the same
encoder the circuits use, :class:`~sfc_graph.ingest.splice.SplicedModel`) update, per latent, a running top-k
of (activation, document, position) with the activations of the window around it, a count of active tokens
and a histogram of active values. The ``<bos>`` position is left out: it is not a token of the text and
dictionaries fire on it for reasons of their own. The logit lens is ``W_dec · W_U`` (no final layer norm, as
Neuronpedia shows it).

The result is a polars table with the ``FeatureInfo`` columns (:mod:`sfc_graph.features` stores it).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

import polars as pl
import torch
from torch import Tensor

from sfc_graph.errors import FeatureError
from sfc_graph.features import COMMON, draft_label, feature_id, now, top_tokens
from sfc_graph.sites import Site

from .compute import NoProgress
from .dictionaries import DictionarySet
from .model import ModelHandle
from .splice import SplicedModel

log = logging.getLogger(__name__)

ZOO_CORPUS = "zoo"
# Log-spaced bins, the same for every latent: activations span orders of magnitude, and shared edges make
# densities comparable across latents. Values below the first edge count in the first bin, above the last in the last.
HISTOGRAM_EDGES = torch.logspace(-3, 3, 25)


@dataclass(frozen=True)
class DashboardSettings:
    k: int = 12  # top contexts per latent
    before: int = 10  # context tokens shown before the peak
    after: int = 4  # ... and after it
    n_logits: int = 8  # top and bottom logit-lens tokens
    batch_size: int = 32
    max_docs: int | None = None

    @property
    def window(self) -> int:
        return self.before + 1 + self.after


@dataclass
class Corpus:
    """Documents as token ids (``<bos>`` first), their token strings and, when known, a behaviour per token."""

    name: str
    ids: list[list[int]]
    tokens: list[list[str]]
    behaviours: list[list[str] | None] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(len(doc) for doc in self.ids)

    def fingerprint(self) -> str:
        digest = hashlib.sha256()
        for doc in self.ids:
            digest.update(json.dumps(doc).encode())
        return digest.hexdigest()[:16]


# --- corpora ---------------------------------------------------------------------------------------------
def load_corpus(spec: str, handle: ModelHandle, *, max_docs: int | None = None) -> Corpus:
    """``zoo`` (the zoo's labelled text stream, or its task sentences before v2), a ``.txt`` file (one
    document per line) or a ``.jsonl`` file (``{"text": ...}`` or ``{"tokens": [...], "labels": [...]}``)."""
    if spec == ZOO_CORPUS:
        texts, behaviours, name = _zoo_documents()
    else:
        texts, behaviours = _file_documents(Path(spec))
        name = Path(spec).name
    if max_docs is not None:
        texts, behaviours = texts[:max_docs], behaviours[:max_docs]
    if not texts:
        raise FeatureError(f"the corpus {spec} holds no documents")
    n_ctx = int(handle.model.cfg.n_ctx)
    ids, tokens, labels = [], [], []
    for text, behaviour in zip(texts, behaviours):
        doc = [int(t) for t in handle.model.to_tokens(text, prepend_bos=True)[0].tolist()]
        if behaviour is not None and len(behaviour) != len(doc) - 1:
            behaviour = None  # the tokenizer split differently from the labels: keep the text, drop the labels
        # long documents: consecutive chunks, each with its own <bos>
        step = n_ctx - 1
        for start in range(1, max(len(doc), 2), step):
            chunk = [doc[0], *doc[start: start + step]]
            if len(chunk) < 2:
                continue
            ids.append(chunk)
            tokens.append([str(t) for t in handle.model.to_str_tokens(torch.tensor(chunk))])
            labels.append(None if behaviour is None else ["<bos>", *behaviour[start - 1: start - 1 + step]])
    return Corpus(name=name, ids=ids, tokens=tokens, behaviours=labels)


def _zoo_documents() -> tuple[list[str], list[list[str] | None], str]:
    from sfc_graph import zoo

    load_stream = getattr(zoo, "load_stream", None)
    if load_stream is not None:
        try:
            docs = load_stream()
        except Exception as exc:  # noqa: BLE001 - the stream is optional until zoo v2; fall back below
            log.info("no zoo text stream (%s); using the task sentences", exc)
        else:
            return ([" ".join(d["tokens"]) for d in docs], [list(d["labels"]) for d in docs],
                    f"{zoo.ZOO_NAME}/stream")
    from sfc_graph.errors import ZooError

    texts: list[str] = []
    for task in zoo.task_names():
        for split in ("train", "test"):
            try:
                path = zoo.task_path(task, split)
            except ZooError:  # a task this build of the zoo does not ship
                continue
            for line in path.read_text().splitlines():
                if line.strip():
                    pair = json.loads(line)
                    texts.append(f"{pair['clean']} {pair['clean_answer']}".strip())
    texts = list(dict.fromkeys(texts))
    return texts, [None] * len(texts), f"{zoo.ZOO_NAME}/task-sentences"


def _file_documents(path: Path) -> tuple[list[str], list[list[str] | None]]:
    if not path.is_file():
        raise FeatureError(f"{path}: no such corpus file (give a .txt or .jsonl file, or 'zoo')")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FeatureError(f"{path}: cannot read the corpus as UTF-8 text ({exc})") from None
    lines = [line for line in text.splitlines() if line.strip()]
    if path.suffix != ".jsonl":
        return lines, [None] * len(lines)
    texts, behaviours = [], []
    for n, line in enumerate(lines, 1):
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise FeatureError(f"{path}: line {n} is not JSON") from None
        if isinstance(record, dict) and isinstance(record.get("text"), str):
            texts.append(record["text"])
            behaviours.append(None)
        elif isinstance(record, dict) and isinstance(record.get("tokens"), list):
            texts.append(" ".join(map(str, record["tokens"])))
            labels = record.get("labels")
            behaviours.append(list(map(str, labels)) if isinstance(labels, list) else None)
        else:
            raise FeatureError(f"{path}: line {n} has neither 'text' nor 'tokens'")
    return texts, behaviours


# --- the pass --------------------------------------------------------------------------------------------
@dataclass
class _SiteState:
    """Running statistics of one site's latents."""

    values: Tensor  # [k, d] top activations (−inf where empty)
    docs: Tensor  # [k, d] document of each
    positions: Tensor  # [k, d] position of each
    windows: Tensor  # [k, d, W] activations around each (NaN outside the document)
    active: Tensor  # [d] active token count
    total: Tensor  # [d] sum of active values
    maximum: Tensor  # [d]
    histogram: Tensor  # [d, bins] active values per log-spaced bin (HISTOGRAM_EDGES)


def _empty_state(k: int, d: int, window: int) -> _SiteState:
    return _SiteState(
        values=torch.full((k, d), float("-inf")), docs=torch.zeros((k, d), dtype=torch.long),
        positions=torch.zeros((k, d), dtype=torch.long), windows=torch.full((k, d, window), float("nan")),
        active=torch.zeros(d, dtype=torch.long), total=torch.zeros(d, dtype=torch.float64), maximum=torch.zeros(d),
        histogram=torch.zeros((d, len(HISTOGRAM_EDGES) - 1), dtype=torch.long),
    )


def _update(state: _SiteState, f: Tensor, valid: Tensor, doc_index: Tensor, settings: DashboardSettings) -> None:
    """Fold one batch's codes ``f`` [b, p, d] (``valid`` [b, p]) into ``state``."""
    b, p, d = f.shape
    f = torch.where(valid[..., None], f, torch.zeros((), dtype=f.dtype))
    active = f > 0
    state.active += active.sum((0, 1))
    state.total += f.sum((0, 1), dtype=torch.float64)
    state.maximum = torch.maximum(state.maximum, f.amax((0, 1)))
    flat = f.reshape(b * p, d)
    k = min(settings.k, b * p)
    vals, rows = flat.topk(k, dim=0)  # [k, d]
    row_b, row_p = rows // p, rows % p
    offsets = torch.arange(-settings.before, settings.after + 1)
    pos = row_p[..., None] + offsets  # [k, d, W]
    inside = (pos >= 0) & (pos < p)
    pos_c = pos.clamp(0, p - 1)
    latent = torch.arange(d)[None, :, None].expand_as(pos_c)
    batch = row_b[..., None].expand_as(pos_c)
    windows = f[batch, pos_c, latent]
    inside &= valid[batch, pos_c]
    windows = torch.where(inside, windows, torch.full((), float("nan")))
    vals = torch.where(vals > 0, vals, torch.full((), float("-inf")))  # only real activations compete

    all_vals = torch.cat([state.values, vals])
    top_vals, pick = all_vals.topk(settings.k, dim=0)
    all_docs = torch.cat([state.docs, doc_index[row_b]])
    all_pos = torch.cat([state.positions, row_p])
    all_windows = torch.cat([state.windows, windows])
    state.values = top_vals
    state.docs = all_docs.gather(0, pick)
    state.positions = all_pos.gather(0, pick)
    state.windows = all_windows.gather(0, pick[..., None].expand(-1, -1, settings.window))
    where = active.nonzero()
    if where.numel():
        bins = torch.bucketize(f[active], HISTOGRAM_EDGES[1:-1])
        state.histogram.index_put_((where[:, 2], bins), torch.ones_like(bins), accumulate=True)


def compute_dashboards(
    handle: ModelHandle,
    dictionaries: DictionarySet,
    corpus: Corpus,
    *,
    settings: DashboardSettings = DashboardSettings(),
    progress=None,
) -> pl.DataFrame:
    """One ``FeatureInfo`` row per latent of every dictionary, from ``corpus``."""
    frames = list(iter_dashboards(handle, dictionaries, corpus, settings=settings, progress=progress))
    return pl.concat(frames) if frames else pl.DataFrame()


def iter_dashboards(
    handle: ModelHandle,
    dictionaries: DictionarySet,
    corpus: Corpus,
    *,
    settings: DashboardSettings = DashboardSettings(),
    progress=None,
) -> Iterator[pl.DataFrame]:
    """:func:`compute_dashboards` one dictionary at a time (after the one pass over the corpus), so that a caller
    can store each before the next one's rows exist."""
    progress = progress or NoProgress()
    spliced = SplicedModel(handle, dictionaries)
    sites = dictionaries.sites
    states = {s: _empty_state(settings.k, dictionaries[s].d_dict, settings.window) for s in sites}
    order = sorted(range(len(corpus.ids)), key=lambda i: len(corpus.ids[i]))  # similar lengths per batch: less padding
    batches = [order[i: i + settings.batch_size] for i in range(0, len(order), settings.batch_size)]
    pad = 0
    n_tokens = 0
    with progress.step("dashboards", len(batches)) as advance, torch.no_grad():
        for batch in batches:
            length = max(len(corpus.ids[i]) for i in batch)
            tokens = torch.full((len(batch), length), pad, dtype=torch.long)
            valid = torch.zeros((len(batch), length), dtype=torch.bool)
            for row, i in enumerate(batch):
                doc = corpus.ids[i]
                tokens[row, : len(doc)] = torch.tensor(doc)
                valid[row, 1: len(doc)] = True  # position 0 is <bos>
            n_tokens += int(valid.sum())
            # right padding: causal attention keeps the real tokens' activations exact
            record = spliced.record(tokens.to(spliced.device))
            for site in sites:
                _update(states[site], record.f[site].float().cpu(), valid, torch.tensor(batch), settings)
            advance(1)
    common = common_tokens(corpus)
    W_U = handle.model.W_U.detach().float().cpu()
    vocab = [str(t) for t in handle.model.to_str_tokens(torch.arange(W_U.shape[1]))]
    built_at = now()
    corpus_name = f"{corpus.name} ({len(corpus.ids)} docs, {n_tokens} tokens, sha {corpus.fingerprint()})"
    for site in sites:
        yield _site_rows(site, dictionaries, states.pop(site), corpus, W_U, vocab, n_tokens, settings, corpus_name,
                         built_at, common)


def _site_rows(site: Site, dictionaries: DictionarySet, state: _SiteState, corpus: Corpus, W_U: Tensor,
               vocab: Sequence[str], n_tokens: int, settings: DashboardSettings, corpus_name: str,
               built_at: str, common: frozenset[str]) -> pl.DataFrame:
    entry = dictionaries.by_site[site]
    dictionary = entry.dictionary
    top_v, top_i, bot_v, bot_i = _logit_lens(dictionary.W_dec.detach().float().cpu(), W_U, settings.n_logits)
    edges = [float(f"{e:.3g}") for e in HISTOGRAM_EDGES.tolist()]
    rows: list[dict[str, Any]] = []
    for latent in range(dictionary.d_dict):
        examples = []
        for j in range(settings.k):
            value = float(state.values[j, latent])
            if value == float("-inf"):
                break
            doc, pos = int(state.docs[j, latent]), int(state.positions[j, latent])
            examples.append(_example(corpus, doc, pos, state.windows[j, latent], value, settings))
        top = [[vocab[int(i)], round(float(v), 4)] for v, i in zip(top_v[latent], top_i[latent])]
        bottom = [[vocab[int(i)], round(-float(v), 4)] for v, i in zip(bot_v[latent], bot_i[latent])]
        active = int(state.active[latent])
        dashboard = {"examples": examples, "top_logits": top, "bottom_logits": bottom, "n_tokens": n_tokens,
                     "histogram": {"edges": edges, "counts": state.histogram[latent].tolist()}}
        rows.append({
            "id": feature_id(entry.info.id, latent),
            "dictionary": entry.info.id,
            "latent": latent,
            "site": site.kind,
            "layer": site.layer,
            "label": draft_label(dashboard, common=common),
            "label_source": "auto",
            "density": active / n_tokens if n_tokens else 0.0,
            "max_activation": float(state.maximum[latent]),
            "mean_activation": float(state.total[latent]) / active if active else 0.0,
            "top_tokens": top_tokens(dashboard),
            "top_logits": [t for t, _ in top],
            "bottom_logits": [t for t, _ in bottom],
            "dashboard": json.dumps(dashboard, separators=(",", ":"), ensure_ascii=False),
            "corpus": corpus_name,
            "built_at": built_at,
        })
    return pl.DataFrame(rows)


def common_tokens(corpus: Corpus) -> frozenset[str]:
    """Tokens that make up at least ``COMMON`` of the corpus (``<bos>`` aside): no use as a label's context."""
    counts = Counter(token for doc in corpus.tokens for token in doc[1:])
    total = sum(counts.values()) or 1
    return frozenset(t for t, c in counts.items() if c / total >= COMMON)


def _logit_lens(W_dec: Tensor, W_U: Tensor, n: int, chunk: int = 1024) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Top and bottom ``n`` of ``W_dec · W_U`` per latent, a chunk of latents at a time (a 16k-latent dictionary
    over a 50k vocabulary would be 3 GB at once)."""
    n = min(n, W_U.shape[1])
    parts = []
    for start in range(0, W_dec.shape[0], chunk):
        lens = W_dec[start: start + chunk] @ W_U
        parts.append((*lens.topk(n, dim=1), *(-lens).topk(n, dim=1)))
    top_v, top_i, bot_v, bot_i = (torch.cat([p[j] for p in parts]) for j in range(4))
    return top_v, top_i, bot_v, bot_i


def _example(corpus: Corpus, doc: int, pos: int, window: Tensor, value: float, settings: DashboardSettings) -> dict:
    start = pos - settings.before
    tokens, acts = [], []
    for offset, act in enumerate(window.tolist()):
        where = start + offset
        if act != act:  # NaN: outside the document (or <bos>)
            continue
        tokens.append(corpus.tokens[doc][where])
        acts.append(round(act, 4))
    at = pos - max(start, 1)  # index of the peak within the kept tokens (position 0, <bos>, is never kept)
    behaviours = corpus.behaviours[doc] if corpus.behaviours else None
    return {"doc": doc, "position": pos, "activation": round(value, 4), "tokens": tokens, "acts": acts, "at": at,
            "behaviour": behaviours[pos] if behaviours else None}


__all__ = ["DashboardSettings", "Corpus", "load_corpus", "compute_dashboards", "ZOO_CORPUS"]
