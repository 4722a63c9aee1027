"""Behaviour discovery: cluster a corpus's contexts, then one sparse feature circuit per cluster.

The unsupervised pipeline of Marks et al. (their §5, after Michaud et al.'s "quanta"):

1. **Contexts.** Every (prefix, next token) pair of a corpus — the zoo's labelled stream or any text file,
   one document per line — with at least ``min_prefix`` tokens before the predicted one; ``n_contexts`` of
   them are sampled (seeded).
2. **Vectors.** Per context, from one forward and one backward pass at its last position: ``act``, the last
   residual stream; ``grad``, the gradient of the next-token loss ``-log p(next)`` with respect to that
   residual stream (what the model would change to predict better — Michaud et al. cluster gradients);
   ``both``, the two side by side. Each block is standardised, reduced by PCA to ``pca_dims`` and
   L2-normalised, so that the two halves of ``both`` weigh the same.
3. **Clusters.** scikit-learn: spectral clustering on the cosine affinity ``(1 + cos) / 2`` (as quanta
   does), or k-means.
4. **Circuits.** Each cluster of at least ``min_cluster_size`` contexts is a task (its contexts, up to
   ``examples_per_circuit``, as examples without counterfactuals), and its circuit is computed by the one
   engine (``ingest/compute.py``) with metric ``-log p(next token)`` and zero ablation, as the paper does.

A cluster is stored as a ``Behaviour`` node linked to its circuit (``sfc_graph/behaviours.py``), so that
queries and reports treat discovered behaviours like tasks. Where the corpus carries planted labels (the
zoo's stream), the clustering is scored against them: adjusted Rand index and purity.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sfc_graph.errors import ComputeError

from .compute import CircuitSettings
from .model import ModelHandle
from .settings_checks import require
from .tasks import Example, Task

log = logging.getLogger(__name__)

FEATURE_KINDS = ("act", "grad", "both")
ALGORITHMS = ("spectral", "kmeans")
ZOO_CORPUS = "zoo"


@dataclass(frozen=True)
class DiscoverySettings:
    """How behaviours are discovered. Every field enters the discovery id (and so each circuit's task name)."""

    n_clusters: int = 8
    features: str = "grad"
    algorithm: str = "kmeans"
    n_contexts: int = 1024
    min_prefix: int = 2
    pca_dims: int = 32
    seed: int = 0
    min_cluster_size: int = 4
    examples_per_circuit: int = 32
    batch_size: int = 64
    exclude_labels: tuple[str, ...] = ()  # labelled corpora: leave out contexts with these labels (e.g. "none")

    def __post_init__(self) -> None:
        object.__setattr__(self, "exclude_labels", tuple(self.exclude_labels))
        checks = [
            (self.n_clusters >= 2, "n_clusters must be at least 2"),
            (self.features in FEATURE_KINDS, f"features must be one of {', '.join(FEATURE_KINDS)}"),
            (self.algorithm in ALGORITHMS, f"algorithm must be one of {', '.join(ALGORITHMS)}"),
            (self.n_contexts >= self.n_clusters, "n_contexts must be at least n_clusters"),
            (self.min_prefix >= 1, "min_prefix must be at least 1"),
            (self.pca_dims >= 1, "pca_dims must be at least 1"),
            (self.min_cluster_size >= 1, "min_cluster_size must be at least 1"),
            (self.examples_per_circuit >= 1, "examples_per_circuit must be at least 1"),
            (self.batch_size >= 1, "batch_size must be at least 1"),
        ]
        require(checks)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Context:
    """A prefix of a document and the token that follows it (what the model is asked to predict)."""

    doc: int
    position: int  # index of the predicted token in its document
    prefix: tuple[str, ...]
    answer: str
    label: str | None = None  # the planted mechanism deciding the answer, when the corpus has labels
    joiner: str = " "  # word-level corpora (the zoo's) join tokens with spaces; decoded subword pieces with ""

    @property
    def text(self) -> str:
        return self.joiner.join(self.prefix)


@dataclass
class Behaviour:
    """One cluster: its contexts and, once computed, its circuit."""

    discovery: str
    cluster: int
    contexts: list[Context]
    task: Task
    circuit_id: str | None = None
    bundle: Path | None = None

    @property
    def name(self) -> str:
        return self.task.name

    @property
    def size(self) -> int:
        return len(self.contexts)

    def label_counts(self) -> dict[str, int]:
        return dict(Counter(c.label for c in self.contexts if c.label is not None).most_common())

    @property
    def dominant_label(self) -> str | None:
        counts = self.label_counts()
        return next(iter(counts)) if counts else None


@dataclass
class Discovery:
    """The outcome of clustering: behaviours (largest first), and agreement with planted labels if any."""

    id: str
    settings: DiscoverySettings
    corpus: str
    model: str
    behaviours: list[Behaviour]
    assignments: np.ndarray  # cluster of every sampled context
    contexts: list[Context]
    agreement: dict[str, float] = field(default_factory=dict)  # ari, purity (labelled corpora only)
    seconds: dict[str, float] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ corpus


def read_corpus(spec: str, handle: ModelHandle | None = None) -> list[dict[str, Any]]:
    """Documents ``{"doc", "tokens", "labels"}`` of ``zoo`` (the toy zoo's labelled stream), of a ``.jsonl`` file
    in the stream's format (labels optional), or of a text file (one document per line; tokens as the model's
    tokenizer splits them, no labels)."""
    if spec == ZOO_CORPUS:
        from sfc_graph import zoo

        return zoo.load_stream()
    path = Path(spec)
    if not path.is_file():
        raise ComputeError(f"{path}: no such corpus file (give a text file, one document per line, or 'zoo')")
    if path.suffix == ".jsonl":
        return _read_labelled(path)
    if handle is None or handle.model.tokenizer is None:
        raise ComputeError(f"{path}: reading a text corpus needs the model's tokenizer")
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as exc:
        raise ComputeError(f"{path}: cannot read the corpus ({exc})") from None
    tokenizer = handle.model.tokenizer
    docs = []
    for number, line in enumerate(line for line in lines if line):
        ids = tokenizer(line, add_special_tokens=False)["input_ids"]
        # Pieces as the tokenizer decodes them, and how they join back into the text: subword tokenizers keep
        # their spaces in the pieces (join with ""), word-level ones (the zoo's) drop them (join with " ").
        pieces = [tokenizer.decode([i]) for i in ids]
        joiner = "" if tokenizer.decode(ids) == "".join(pieces) else " "
        docs.append({"doc": number, "tokens": pieces, "labels": None, "joiner": joiner})
    if not docs:
        raise ComputeError(f"{path}: the corpus has no documents")
    return docs


def _read_labelled(path: Path) -> list[dict[str, Any]]:
    """A labelled corpus in the zoo stream's format: ``{"tokens": [...], "labels": [...]}`` per line."""
    docs = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ComputeError(f"{path}: cannot read the corpus ({exc})") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            tokens, labels = [str(t) for t in row["tokens"]], row.get("labels")
        except (ValueError, KeyError, TypeError):
            raise ComputeError(f"{path} line {number}: expected a JSON object with a 'tokens' list") from None
        if labels is not None and (not isinstance(labels, list) or len(labels) != len(tokens)):
            raise ComputeError(f"{path} line {number}: 'labels' must be a list as long as 'tokens'")
        docs.append({"doc": row.get("doc", len(docs)), "tokens": tokens, "labels": labels})
    if not docs:
        raise ComputeError(f"{path}: the corpus has no documents")
    return docs


def sample_contexts(docs: list[dict[str, Any]], settings: DiscoverySettings) -> list[Context]:
    """All (prefix, next token) pairs with at least ``min_prefix`` tokens of prefix; ``n_contexts`` of them."""
    contexts = []
    for doc in docs:
        tokens, labels = doc["tokens"], doc.get("labels")
        for position in range(settings.min_prefix, len(tokens)):
            if labels is not None and labels[position] in settings.exclude_labels:
                continue
            contexts.append(Context(
                doc=int(doc["doc"]), position=position, prefix=tuple(tokens[:position]), answer=tokens[position],
                label=None if labels is None else str(labels[position]), joiner=doc.get("joiner", " "),
            ))
    if len(contexts) < settings.n_clusters:
        raise ComputeError(f"the corpus has {len(contexts)} contexts, fewer than the {settings.n_clusters} clusters asked")
    rng = random.Random(settings.seed)
    if len(contexts) > settings.n_contexts:
        contexts = rng.sample(contexts, settings.n_contexts)
    return contexts


# ----------------------------------------------------------------------------------------------- vectors


def context_vectors(handle: ModelHandle, contexts: list[Context], *, batch_size: int = 64) -> dict[str, np.ndarray]:
    """``act`` (last residual stream at the last position), ``grad`` (d -log p(answer) / d that residual
    stream) and ``loss`` (-log p(answer)) of every context, from one forward and one backward pass per batch.

    Contexts of different lengths share a batch, right-padded: a causal model's last real position does not
    see the padding.
    """
    import torch

    from .model import answer_token, tokenize

    model = handle.model
    hook = f"blocks.{handle.n_layers - 1}.hook_resid_post"
    n_ctx = int(model.cfg.n_ctx)
    acts, grads, losses = [], [], []
    for start in range(0, len(contexts), batch_size):
        chunk = contexts[start:start + batch_size]
        rows = [tokenize(handle, c.text)[-n_ctx:] for c in chunk]
        answer_ids = [answer_token(handle, c.answer) for c in chunk]
        unknown = [c for c, a in zip(chunk, answer_ids) if a is None]
        if unknown:
            raise ComputeError(f"corpus document {unknown[0].doc}: token {unknown[0].answer!r} is not a single token "
                               "the model knows")
        answers = torch.tensor(answer_ids, device=handle.device)
        width = max(len(r) for r in rows)
        tokens = torch.zeros((len(rows), width), dtype=torch.long, device=handle.device)
        for i, row in enumerate(rows):
            tokens[i, : len(row)] = torch.tensor(row, device=handle.device)
        last = torch.tensor([len(r) - 1 for r in rows], device=handle.device)
        captured: dict[str, torch.Tensor] = {}

        def keep(resid, hook, captured=captured):
            # a leaf here: the gradient we want stops at the last residual stream (and the weights may be frozen)
            leaf = resid.detach().requires_grad_(True)
            captured["resid"] = leaf
            return leaf

        with torch.enable_grad():
            logits = model.run_with_hooks(tokens, fwd_hooks=[(hook, keep)])
            picked = logits[torch.arange(len(rows)), last]
            per_context = torch.nn.functional.cross_entropy(picked.float(), answers, reduction="none")
            per_context.sum().backward()
        resid = captured["resid"]
        index = torch.arange(len(rows), device=handle.device)
        acts.append(resid.detach()[index, last].float().cpu().numpy())
        grads.append(resid.grad[index, last].float().cpu().numpy())
        losses.append(per_context.detach().float().cpu().numpy())
        model.zero_grad(set_to_none=True)
    return {"act": np.concatenate(acts), "grad": np.concatenate(grads), "loss": np.concatenate(losses)}


def embed(vectors: dict[str, np.ndarray], settings: DiscoverySettings) -> np.ndarray:
    """The clustering input: each kind standardised, PCA-reduced and row-normalised; ``both`` side by side."""
    from sklearn.decomposition import PCA
    from sklearn.preprocessing import StandardScaler

    kinds = ("act", "grad") if settings.features == "both" else (settings.features,)
    blocks = []
    for kind in kinds:
        matrix = StandardScaler().fit_transform(vectors[kind].astype(np.float64))
        dims = min(settings.pca_dims, matrix.shape[0], matrix.shape[1])
        reduced = PCA(n_components=dims, random_state=settings.seed).fit_transform(matrix)
        norms = np.linalg.norm(reduced, axis=1, keepdims=True)
        blocks.append(reduced / np.maximum(norms, 1e-12))
    return np.concatenate(blocks, axis=1) / np.sqrt(len(blocks))


def cluster(points: np.ndarray, settings: DiscoverySettings) -> np.ndarray:
    """Cluster assignments (0 … n_clusters-1) of the rows of ``points``."""
    from sklearn.cluster import KMeans, SpectralClustering

    if settings.algorithm == "kmeans":
        model = KMeans(n_clusters=settings.n_clusters, n_init=10, random_state=settings.seed)
        return model.fit_predict(points)
    affinity = np.clip((1.0 + points @ points.T) / 2.0, 0.0, 1.0)
    model = SpectralClustering(n_clusters=settings.n_clusters, affinity="precomputed", random_state=settings.seed,
                               assign_labels="cluster_qr")
    return model.fit_predict(affinity)


def agreement(assignments: np.ndarray, labels: list[str | None], *, background: str = "none") -> dict[str, float]:
    """Adjusted Rand index and purity of the clusters against planted labels (empty without labels).

    Purity: the fraction of contexts whose cluster's most common label is their own. When most contexts carry
    the ``background`` label (filler text decided by no planted mechanism), purity over all of them says
    little, so ``ari_planted`` / ``purity_planted`` score the same clustering on the planted contexts only.
    """
    from sklearn.metrics import adjusted_rand_score

    def score(assigned: np.ndarray, wanted: list[str]) -> tuple[float, float]:
        majority = sum(Counter(wanted[i] for i in np.flatnonzero(assigned == k)).most_common(1)[0][1]
                       for k in np.unique(assigned))
        return float(adjusted_rand_score(wanted, assigned)), majority / len(wanted)

    if not labels or any(label is None for label in labels):
        return {}
    result = dict(zip(("ari", "purity"), score(np.asarray(assignments), [str(label) for label in labels])))
    planted = [i for i, label in enumerate(labels) if label != background]
    if 0 < len(planted) < len(labels) and len({labels[i] for i in planted}) > 1:
        result.update(zip(("ari_planted", "purity_planted"),
                          score(np.asarray(assignments)[planted], [str(labels[i]) for i in planted])))
    return result


# ---------------------------------------------------------------------------------------------- pipeline


def discovery_id(model_id: str, corpus_digest: str, settings: DiscoverySettings) -> str:
    payload = json.dumps({"model": model_id, "corpus": corpus_digest, "settings": settings.to_dict()}, sort_keys=True)
    return f"discovery-{settings.features}-{hashlib.sha256(payload.encode()).hexdigest()[:12]}"


def discover(handle: ModelHandle, corpus: str, settings: DiscoverySettings) -> Discovery:
    """Sample contexts, compute their vectors, cluster them; behaviours largest first (circuits not yet)."""
    import time

    timings = {}
    started = time.perf_counter()
    docs = read_corpus(corpus, handle)
    contexts = sample_contexts(docs, settings)
    digest = hashlib.sha256(json.dumps([[c.doc, c.position] for c in contexts]).encode()).hexdigest()
    ident = discovery_id(handle.model_id, digest, settings)
    timings["contexts"] = time.perf_counter() - started

    started = time.perf_counter()
    vectors = context_vectors(handle, contexts, batch_size=settings.batch_size)
    timings["vectors"] = time.perf_counter() - started
    started = time.perf_counter()
    assignments = cluster(embed(vectors, settings), settings)
    timings["clustering"] = time.perf_counter() - started

    rng = random.Random(settings.seed)
    behaviours = []
    sizes = Counter(int(k) for k in assignments)
    for rank, (k, size) in enumerate(sorted(sizes.items(), key=lambda item: (-item[1], item[0]))):
        members = [c for c, a in zip(contexts, assignments) if a == k]
        if size < settings.min_cluster_size:
            continue
        chosen = members if size <= settings.examples_per_circuit else rng.sample(members, settings.examples_per_circuit)
        examples = tuple(Example(clean=c.text, clean_answer=c.answer) for c in chosen)
        task = Task(name=f"{ident}/c{rank:03d}", examples=examples, source=f"{corpus} ({ident}, cluster {rank})")
        behaviours.append(Behaviour(discovery=ident, cluster=rank, contexts=members, task=task))
    labels = [c.label for c in contexts]
    return Discovery(id=ident, settings=settings, corpus=corpus, model=handle.model_id, behaviours=behaviours,
                     assignments=assignments, contexts=contexts, agreement=agreement(assignments, labels),
                     seconds=timings)


def circuit_settings(base: CircuitSettings | None = None) -> CircuitSettings:
    """The paper's circuit settings for discovered behaviours: ``-log p(next token)`` with zero ablation."""
    base = base or CircuitSettings()
    return dataclasses.replace(base, metric="neg_log_prob", ablation="zero", aggregation="sum", n_examples=None)


__all__ = ["ALGORITHMS", "FEATURE_KINDS", "Behaviour", "Context", "Discovery", "DiscoverySettings", "agreement",
           "circuit_settings", "cluster", "context_vectors", "discover", "embed", "read_corpus", "sample_contexts"]


# ------------------------------------------------------------------------------- circuits, store, agreement


@dataclass
class DiscoveryRun:
    """What ``sfc discover`` did: the discovery, the circuits computed and loaded, and overlap figures."""

    discovery: Discovery
    computed: int = 0
    loaded: int = 0
    overlap: dict[str, float] = field(default_factory=dict)  # within / across planted behaviour, mean Jaccard
    seconds: dict[str, float] = field(default_factory=dict)


def run_discovery(
    handle: ModelHandle,
    *,
    model_spec: str,
    dict_specs: list[str],
    corpus: str,
    settings: DiscoverySettings,
    circuit: CircuitSettings,
    out: Path,
    store=None,
    executor: str = "local",
    workers: int = 2,
    address: str | None = None,
    device: str = "auto",
    report=None,
) -> DiscoveryRun:
    """Discover behaviours, compute one circuit per behaviour (in this process or on Ray), load each into
    ``store`` as it arrives with its ``Behaviour`` record, and measure overlap within vs across planted labels."""
    import time

    from sfc_graph.behaviours import BehaviourRecord, write_behaviour

    from .executor import CircuitJob, ModelSpec, _Worker, run_circuits

    report = report or (lambda line: log.info(line))
    discovery = discover(handle, corpus, settings)
    run = DiscoveryRun(discovery=discovery, seconds=dict(discovery.seconds))
    behaviours = {b.name: b for b in discovery.behaviours}
    jobs = [CircuitJob(task=b.task, settings=circuit_settings(circuit), out=out, key=b.name)
            for b in discovery.behaviours]
    spec = ModelSpec(model=model_spec, dictionaries=tuple(dict_specs), device=device)
    local = None
    if executor == "local":  # reuse the model already loaded here
        from .dictionaries import load_dictionary_set

        local = _Worker.of(handle, load_dictionary_set(list(dict_specs), n_layers=handle.n_layers,
                                                       d_model=handle.d_model, model_id=handle.model_id))
    started = time.perf_counter()
    for done in run_circuits(spec, jobs, executor=executor, workers=workers, address=address, worker=local):
        behaviour = behaviours[done.job.key]
        behaviour.circuit_id, behaviour.bundle = done.circuit_id, done.path
        run.computed += done.computed
        loaded = False
        if store is not None:
            loaded = bool(store.load(done.path).loaded) if not store.has_circuit(done.circuit_id) else False
            write_behaviour(store, BehaviourRecord(
                id=behaviour.name, discovery=discovery.id, cluster=behaviour.cluster, size=behaviour.size,
                features=settings.features, algorithm=settings.algorithm, corpus=corpus, model=discovery.model,
                circuit=done.circuit_id, examples=_examples(behaviour), label_counts=behaviour.label_counts(),
            ))
        run.loaded += loaded
        report(f"{behaviour.name}: {behaviour.size} contexts"
               + (f", mostly {behaviour.dominant_label}" if behaviour.dominant_label else "")
               + f" -> {done.circuit_id} ({'computed' if done.computed else 'already computed'} "
               f"in {done.seconds:.1f} s on {done.worker}{', loaded' if loaded else ''})")
    run.seconds["circuits"] = time.perf_counter() - started
    if store is not None:
        run.overlap = overlap_by_label(store, discovery.behaviours)
    return run


def overlap_by_label(store, behaviours: list[Behaviour], *, max_circuits: int = 200) -> dict[str, float]:
    """Mean node Jaccard (the store's ``circuit-overlap`` query) between circuits of behaviours with the same
    dominant planted label, and between those with different ones (labelled corpora only)."""
    labelled = [b for b in behaviours if b.circuit_id and b.dominant_label][:max_circuits]
    if len(labelled) < 2:
        return {}
    frame = store.query("circuit-overlap", circuits=[b.circuit_id for b in labelled])
    label_of = {b.circuit_id: b.dominant_label for b in labelled}
    within, across = [], []
    for row in frame.iter_rows(named=True):
        if row["jaccard"] is None:
            continue
        same = label_of[row["circuit_a"]] == label_of[row["circuit_b"]]
        (within if same else across).append(row["jaccard"])
    result = {"pairs_within": float(len(within)), "pairs_across": float(len(across))}
    if within:
        result["within"] = float(np.mean(within))
    if across:
        result["across"] = float(np.mean(across))
    return result


def _examples(behaviour: Behaviour, n: int = 5) -> list[dict[str, Any]]:
    return [{"text": c.text, "answer": c.answer, "label": c.label} for c in behaviour.contexts[:n]]
