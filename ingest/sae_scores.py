"""SCR and TPP: dictionary quality scores from targeted concept removal (seed 001; SAEBench's definitions).

Both read one dictionary at its own site. Per bio, the site's activation and the dictionary's codes are
mean-pooled over real tokens (every position but a prepended BOS); linear probes read the pooled activation.
Ablating latents zeroes their codes at every token with the dictionary's error kept, so the pooled activation
becomes ``pooled(x) − Σ_i pooled(f_i) · W_dec[i]`` exactly (pooling is linear, the decoder affine).
Latents are ranked per concept as SAEBench does: ``(mean f | positive − mean f | negative) · (w · W_dec[i])``
with ``w`` the concept probe's direction (absolute value for SCR; the mean difference clamped at 0 for TPP).

* **SCR** (spurious correlation removal, SHIFT with an automatic judge). A probe trained on the ``ambiguous``
  bios (profession ≡ gender) is read on the balanced test bios. Direction 1 ablates the top-N *gender* latents
  and measures the biased probe on *profession*: ``SCR = (A_abl − A_base) / (A_oracle − A_base)``, with
  ``A_base`` the biased probe's profession accuracy, ``A_oracle`` that of a profession probe trained on
  balanced bios (0 when ``A_oracle − A_base < 0.001``). Direction 2 swaps the concepts. The reported score is
  the direction whose target the biased probe reads worse (SAEBench's ``scr_metric``).
* **TPP** (targeted probe perturbation). One-vs-rest probes for each profession of ``professions.jsonl``;
  ablating class i's top-N latents should hurt probe i and no other:
  ``TPP = mean_i [(A_i − A_i^(i)) − mean_{j≠i} (A_j − A_j^(i))]``.

N ∈ {2, 5, 10, 20, 50} by default (capped at the dictionary's size).
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from sfc_graph.errors import ComputeError
from sfc_graph.sites import Site

from .dictionaries import DictionarySet
from .model import ModelHandle
from .probe import LinearProbe, skips_bos, train_probe
from .splice import SplicedModel
from .tasks import Example, Task, tokenize_task

log = logging.getLogger(__name__)

TOP_N = (2, 5, 10, 20, 50)


# ----------------------------------------------------------------------------------------- formulas


def scr_score(a_ablated: float, a_base: float, a_oracle: float) -> float:
    """``(A_abl − A_base) / (A_oracle − A_base)``; 0 when the oracle is not better than the base (< 0.001).

    >>> round(scr_score(0.8, 0.6, 1.0), 6)
    0.5
    >>> scr_score(0.9, 0.95, 0.9505)
    0.0
    """
    if a_oracle - a_base < 0.001:
        return 0.0
    return (a_ablated - a_base) / (a_oracle - a_base)


def tpp_score(clean: dict[str, float], ablated: dict[str, dict[str, float]]) -> tuple[float, dict[str, float]]:
    """``mean_i [(A_i − A_i^(i)) − mean_{j≠i} (A_j − A_j^(i))]``: ``clean[j] = A_j``, ``ablated[i][j] = A_j^(i)``.
    Returns the score and each class's term.

    >>> score, terms = tpp_score({"a": 0.9, "b": 0.8}, {"a": {"a": 0.5, "b": 0.8}, "b": {"a": 0.8, "b": 0.6}})
    >>> round(score, 6), {k: round(v, 6) for k, v in terms.items()}
    (0.25, {'a': 0.4, 'b': 0.1})
    """
    classes = list(clean)
    if len(classes) < 2:
        raise ComputeError("TPP needs at least two classes")
    terms = {}
    for i in classes:
        intended = clean[i] - ablated[i][i]
        unintended = [clean[j] - ablated[i][j] for j in classes if j != i]
        terms[i] = intended - sum(unintended) / len(unintended)
    return sum(terms.values()) / len(terms), terms


def latent_effects(codes: Tensor, positive: Tensor, probe_direction: Tensor, W_dec: Tensor, *,
                   absolute: bool) -> Tensor:
    """SAEBench's ranking: ``(mean codes | positive − mean codes | negative) · (W_dec @ w)`` per latent ``[d_dict]``.

    ``absolute`` (SCR): ``|·|`` of the product; otherwise (TPP) the mean difference is clamped at 0 first.
    """
    codes = codes.double()
    diff = codes[positive].mean(0) - codes[~positive].mean(0)
    if not absolute:
        diff = diff.clamp_min(0.0)
    effect = diff * (W_dec.double() @ probe_direction.double())
    return effect.abs() if absolute else effect


def top_latents(effects: Tensor, n: int) -> Tensor:
    """The ``n`` latents with the largest effect (ties by index), only those with a non-zero effect."""
    n = min(n, effects.numel())
    order = sorted(range(effects.numel()), key=lambda i: (-float(effects[i]), i))[:n]
    return torch.tensor([i for i in order if float(effects[i]) != 0.0], dtype=torch.long)


def ablate_pooled(x: Tensor, codes: Tensor, W_dec: Tensor, latents: Tensor) -> Tensor:
    """Pooled activations with ``latents`` zeroed at every token, the error kept: ``x − codes[:, L] @ W_dec[L]``."""
    if len(latents) == 0:
        return x
    return x - codes[:, latents].double() @ W_dec[latents].double()


def direction(probe: LinearProbe, positive_class: int = 1) -> Tensor:
    """A two-class probe's direction towards ``positive_class`` (the logit difference)."""
    if probe.weight.shape[0] != 2:
        raise ComputeError("a concept probe has two classes")
    return probe.weight[positive_class] - probe.weight[1 - positive_class]


# ---------------------------------------------------------------------------------------- activations


@dataclass
class SiteActivations:
    """Per bio, the site's pooled activation ``x`` ``[n, d_model]`` and pooled codes ``f`` ``[n, d_dict]``."""

    x: Tensor
    f: Tensor


def pooled_sites(handle: ModelHandle, dictionaries: DictionarySet, texts: Sequence[str], *,
                 batch_size: int = 64) -> dict[Site, SiteActivations]:
    """Mean over real tokens of every site's activation and codes, for each text, in one pass per batch."""
    task = Task("pooled", tuple(Example(t, "-") for t in texts), "texts")
    # tokenize_task checks every word; the answer is never read, so it names a one-class stand-in
    tokenized = tokenize_task(task, dataclasses.replace(handle, class_labels=("-",)))
    dictionaries.to(handle.device, handle.model.cfg.dtype)
    spliced = SplicedModel(handle, dictionaries)
    skip = skips_bos(handle)
    out = {s: SiteActivations(torch.zeros(len(texts), handle.d_model, dtype=torch.float64),
                              torch.zeros(len(texts), dictionaries[s].d_dict, dtype=torch.float64))
           for s in spliced.sites}
    for batch in tokenized.batches(batch_size, handle.device):
        record = spliced.record(batch.clean)
        rows = torch.tensor(batch.indices)
        for site in spliced.sites:
            x, f = record.x[site].detach(), record.f[site]
            if skip and x.shape[1] > 1:
                x, f = x[:, 1:], f[:, 1:]
            out[site].x[rows] = x.mean(1).double().cpu()
            out[site].f[rows] = f.mean(1).double().cpu()
    return out


# ------------------------------------------------------------------------------------------- scores


@dataclass
class DictionaryScores:
    dictionary: str  # id
    site: str
    metric: str  # scr | tpp
    by_n: dict[int, float]
    details: dict[str, Any] = field(default_factory=dict)


def _labels(values: Sequence[str], positive: str) -> Tensor:
    return torch.tensor([1 if v == positive else 0 for v in values])


def scr_for_site(acts: dict[str, SiteActivations], labels: dict[str, dict[str, Tensor]], W_dec: Tensor, *,
                 top_n: Sequence[int] = TOP_N, l2: float = 1e-3) -> tuple[dict[int, float], dict[str, Any]]:
    """SCR of one dictionary. ``acts`` has ``ambiguous_train``, ``balanced_train``, ``balanced_test``;
    ``labels[split]`` has ``profession`` and ``gender`` (0/1, with gender 1 the class aligned with profession 1
    in the ambiguous bios)."""
    biased = train_probe(acts["ambiguous_train"].x, labels["ambiguous_train"]["profession"], n_classes=2, l2=l2)
    concept = {c: train_probe(acts["balanced_train"].x, labels["balanced_train"][c], n_classes=2, l2=l2)
               for c in ("profession", "gender")}
    test_x = acts["balanced_test"].x
    base = {c: biased.accuracy(test_x, labels["balanced_test"][c]) for c in ("profession", "gender")}
    oracle = {c: concept[c].accuracy(test_x, labels["balanced_test"][c]) for c in ("profession", "gender")}
    effects = {
        c: latent_effects(acts["balanced_train"].f, labels["balanced_train"][c] == 1, direction(concept[c]), W_dec,
                          absolute=True)
        for c in ("profession", "gender")
    }
    # direction 1 ablates gender and reads profession; direction 2 the reverse
    directions = {1: ("gender", "profession"), 2: ("profession", "gender")}
    chosen = 1 if base["profession"] < base["gender"] else 2
    scores: dict[int, float] = {}
    details: dict[str, Any] = {"base": base, "oracle": oracle, "direction": chosen, "by_n": {}}
    for n in top_n:
        row = {}
        for d, (ablated_concept, target) in directions.items():
            latents = top_latents(effects[ablated_concept], n)
            x_abl = ablate_pooled(test_x, acts["balanced_test"].f, W_dec, latents)
            a_abl = biased.accuracy(x_abl, labels["balanced_test"][target])
            row[f"dir{d}"] = {"ablated": a_abl, "score": scr_score(a_abl, base[target], oracle[target]),
                              "latents": latents.tolist()}
        scores[n] = row[f"dir{chosen}"]["score"]
        details["by_n"][n] = row
    return scores, details


def tpp_for_site(acts: dict[str, dict[str, SiteActivations]], labels: dict[str, dict[str, Tensor]], W_dec: Tensor,
                 *, top_n: Sequence[int] = TOP_N, l2: float = 1e-3) -> tuple[dict[int, float], dict[str, Any]]:
    """TPP of one dictionary. ``acts[class][train|test]`` are one-vs-rest sets, ``labels[class][train|test]``
    1 for the class."""
    classes = list(acts)
    probes = {c: train_probe(acts[c]["train"].x, labels[c]["train"], n_classes=2, l2=l2) for c in classes}
    clean = {c: probes[c].accuracy(acts[c]["test"].x, labels[c]["test"]) for c in classes}
    effects = {c: latent_effects(acts[c]["train"].f, labels[c]["train"] == 1, direction(probes[c]), W_dec,
                                 absolute=False) for c in classes}
    scores: dict[int, float] = {}
    details: dict[str, Any] = {"clean": clean, "by_n": {}}
    for n in top_n:
        ablated: dict[str, dict[str, float]] = {}
        for i in classes:
            latents = top_latents(effects[i], n)
            ablated[i] = {
                j: probes[j].accuracy(ablate_pooled(acts[j]["test"].x, acts[j]["test"].f, W_dec, latents),
                                      labels[j]["test"])
                for j in classes
            }
        score, terms = tpp_score(clean, ablated)
        scores[n] = score
        details["by_n"][n] = {"ablated": ablated, "terms": terms}
    return scores, details


# ------------------------------------------------------------------------------------------ datasets


def scr_data(ambiguous: Sequence, balanced: Sequence) -> tuple[dict[str, list[str]], dict[str, dict[str, Tensor]]]:
    """Texts and 0/1 labels per split for SCR, from bios (``ingest.shift.Bio``)."""
    professions = sorted({b.profession for b in ambiguous})
    if len(professions) != 2:
        raise ComputeError(f"SCR needs two professions in the ambiguous bios; found {professions}")
    positive = professions[1]
    aligned_female = {b.profession for b in ambiguous if b.gender == "female"}
    if len(aligned_female) != 1:
        raise ComputeError("SCR needs the ambiguous bios' gender perfectly correlated with the profession")
    # gender label 1 = the gender that comes with profession 1 in the ambiguous bios
    positive_gender = "female" if aligned_female == {positive} else "male"
    splits = {
        "ambiguous_train": [b for b in ambiguous if b.split == "train"],
        "balanced_train": [b for b in balanced if b.split == "train"],
        "balanced_test": [b for b in balanced if b.split == "test"],
    }
    for name, bios in splits.items():
        if not bios:
            raise ComputeError(f"SCR: the {name.replace('_', ' ')} bios are empty")
    texts = {name: [b.text for b in bios] for name, bios in splits.items()}
    labels = {name: {"profession": _labels([b.profession for b in bios], positive),
                     "gender": _labels([b.gender for b in bios], positive_gender)} for name, bios in splits.items()}
    return texts, labels


def tpp_data(bios: Sequence, *, seed: int = 0) -> tuple[dict[str, dict[str, list[str]]], dict[str, dict[str, Tensor]]]:
    """One-vs-rest sets per profession: all its bios, and as many others drawn evenly at random (seeded)."""
    professions = sorted({b.profession for b in bios})
    if len(professions) < 2:
        raise ComputeError(f"TPP needs at least two professions; found {professions}")
    rng = random.Random(seed)
    texts: dict[str, dict[str, list[str]]] = {}
    labels: dict[str, dict[str, Tensor]] = {}
    for c in professions:
        texts[c], labels[c] = {}, {}
        for split in ("train", "test"):
            pos = [b.text for b in bios if b.profession == c and b.split == split]
            others = [b.text for b in bios if b.profession != c and b.split == split]
            if not pos or not others:
                raise ComputeError(f"TPP: profession {c!r} has no {split} bios, or no others to contrast with")
            neg = rng.sample(others, min(len(pos), len(others)))
            texts[c][split] = pos + neg
            labels[c][split] = torch.tensor([1] * len(pos) + [0] * len(neg))
    return texts, labels


def evaluate_scr(handle: ModelHandle, dictionaries: DictionarySet, ambiguous: Sequence, balanced: Sequence, *,
                 top_n: Sequence[int] = TOP_N) -> list[DictionaryScores]:
    texts, labels = scr_data(ambiguous, balanced)
    pooled = {name: pooled_sites(handle, dictionaries, t) for name, t in texts.items()}
    out = []
    for site in dictionaries.sites:
        acts = {name: pooled[name][site] for name in texts}
        W_dec = dictionaries[site].W_dec.detach().cpu()
        scores, details = scr_for_site(acts, labels, W_dec, top_n=top_n)
        out.append(DictionaryScores(dictionaries.infos()[site.name].id, site.name, "scr", scores, details))
    return out


def evaluate_tpp(handle: ModelHandle, dictionaries: DictionarySet, bios: Sequence, *,
                 top_n: Sequence[int] = TOP_N) -> list[DictionaryScores]:
    texts, labels = tpp_data(bios)
    pooled = {c: {s: pooled_sites(handle, dictionaries, t) for s, t in by_split.items()}
              for c, by_split in texts.items()}
    out = []
    for site in dictionaries.sites:
        acts = {c: {s: pooled[c][s][site] for s in pooled[c]} for c in pooled}
        W_dec = dictionaries[site].W_dec.detach().cpu()
        scores, details = tpp_for_site(acts, labels, W_dec, top_n=top_n)
        out.append(DictionaryScores(dictionaries.infos()[site.name].id, site.name, "tpp", scores, details))
    return out
