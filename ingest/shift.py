"""SHIFT — Sparse Human-Interpretable Feature Trimming (Marks et al. 2024, §4).

A classifier is trained on data where a spurious attribute (gender) is perfectly correlated with the label
(profession): the ``ambiguous`` split. Then:

1. its circuit is computed by the one attribution engine (the classifier is the model's output,
   :mod:`probe`), metric ``-log C(y | x)``, zero ablation as the patch (the paper's ``patch=None``);
2. a judge marks features of the circuit spurious: a person through a query or a file of feature ids, or the
   automatic rule of :func:`auto_judge`;
3. the spurious features are zero-ablated at every position, the SAE errors kept (:mod:`ablation`), and the
   classifier is re-measured on the ``balanced`` split;
4. optionally the probe is retrained on the ambiguous split with the features ablated.

The table (:func:`shift_table`) has the paper's rows, each defined as in its notebook
(saprmarks/feature-circuits, experiments/bib_shift.ipynb):

* *original*: the probe trained on ``ambiguous``;
* *SHIFT*: the original probe, spurious features ablated;
* *SHIFT + retrain*: a probe retrained on ``ambiguous`` with the features ablated, read with them ablated;
* *neuron skyline*: the original probe with the top-k neurons for *gender* mean-ablated — neurons (identity
  dictionaries at the same sites) ranked by their attribution (same engine, same metric) towards the class the
  *gender* predicts, on labelled ``balanced`` training data; a skyline because it uses gender labels;
* *feature skyline*: the same with SAE features, zero-ablated;
* *oracle*: a probe trained on ``balanced`` (no spurious correlation to learn).

k for both skylines is the number of features SHIFT ablated. Accuracies are on the ``balanced`` test split:
*profession* (against the profession), *gender* (against the class the gender predicts in ``ambiguous``:
how much the classifier still reads gender; 50 % is none), *worst group* (the lowest profession accuracy over
the four profession × gender groups).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from sfc_graph import naming
from sfc_graph.errors import ComputeError, SfcError, TaskError
from sfc_graph.sites import Site, parse_site

from .ablation import Ablation, neuron_dictionaries
from .compute import Circuit, CircuitSettings, compute_circuit
from .dictionaries import DictionarySet
from .model import ModelHandle
from .probe import LinearProbe, attach_probe, probe_head, train_probe
from .splice import SplicedModel
from .tasks import Example, Task, TokenizedTask, tokenize_task

log = logging.getLogger(__name__)

BIOS_SPLITS = ("ambiguous", "balanced", "professions")
GENDERS = ("male", "female")


# ------------------------------------------------------------------------------------------------ data


@dataclass(frozen=True)
class Bio:
    text: str
    profession: str
    gender: str
    split: str  # train | test


def read_bios(path: str | Path) -> list[Bio]:
    """One bio per JSONL line: ``{"text", "profession", "gender": male|female, "split": train|test}``."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise TaskError(f"{path}: cannot read the bios file ({exc})") from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{number}", json.loads(line)))
        except json.JSONDecodeError as exc:
            raise TaskError(f"{path}:{number}: not valid JSON ({exc.msg})") from None
    if not rows:
        raise TaskError(f"{path}: no bios")
    return [_bio(row, where) for where, row in rows]


def _bio(row: Any, where: str) -> Bio:
    if not isinstance(row, dict):
        raise TaskError(f"{where}: each bio must be a JSON object")
    for key in ("text", "profession", "gender", "split"):
        if not isinstance(row.get(key), str) or not row[key].strip():
            raise TaskError(f"{where}: needs a non-empty string {key!r}")
    if row["gender"] not in GENDERS:
        raise TaskError(f"{where}: gender must be 'male' or 'female', not {row['gender']!r}")
    if row["split"] not in ("train", "test"):
        raise TaskError(f"{where}: split must be 'train' or 'test', not {row['split']!r}")
    return Bio(row["text"], row["profession"], row["gender"], row["split"])


def load_bios(spec: str, name: str) -> list[Bio]:
    """``toy-zoo`` (the zoo's bios, ``sfc_graph.zoo.load_bios``) or a directory holding ``NAME.jsonl``."""
    if name not in BIOS_SPLITS:
        raise TaskError(f"unknown bios split {name!r}; one of {', '.join(BIOS_SPLITS)}")
    if spec == "toy-zoo":
        from sfc_graph.errors import SfcError

        try:
            from sfc_graph import zoo

            rows = zoo.load_bios(name)
        except ImportError as exc:
            raise TaskError(f"the toy zoo is not available ({exc})") from None
        except AttributeError:
            raise TaskError("the installed zoo has no bios data; it comes with toy-zoo-v2") from None
        except (OSError, SfcError) as exc:
            raise TaskError(f"the zoo's {name} bios cannot be read ({exc}); they come with toy-zoo-v2") from None
        if not rows:
            raise TaskError(f"the zoo's {name} bios are empty")
        return [_bio(row, f"zoo bios/{name}.jsonl:{i}") for i, row in enumerate(rows, start=1)]
    root = Path(spec)
    if not root.is_dir():
        raise TaskError(f"--bios {spec}: not 'toy-zoo' nor a directory of bios JSONL files")
    if not (root / f"{name}.jsonl").is_file():
        raise TaskError(f"{root}: no {name}.jsonl (a bios directory holds ambiguous.jsonl, balanced.jsonl, "
                        "professions.jsonl)")
    return read_bios(root / f"{name}.jsonl")


@dataclass
class ShiftData:
    """The two splits SHIFT needs, and how gender maps to a class in the ambiguous one."""

    ambiguous: list[Bio]
    balanced: list[Bio]
    classes: tuple[str, ...] = field(init=False)
    aligned: dict[str, str] = field(init=False)  # gender -> the profession it always comes with in ambiguous

    def __post_init__(self) -> None:
        professions = sorted({b.profession for b in self.ambiguous})
        if len(professions) != 2:
            raise TaskError(f"the ambiguous bios must hold two professions; found {len(professions)}: {professions}")
        self.classes = tuple(professions)
        pairs = {(b.gender, b.profession) for b in self.ambiguous}
        aligned = {g: p for g, p in pairs}
        if len(pairs) != 2 or len(aligned) != 2:
            raise TaskError(
                "in the ambiguous bios each gender must come with exactly one profession (a perfectly "
                f"correlated spurious cue); found the pairs {sorted(pairs)}"
            )
        self.aligned = aligned
        other = {b.profession for b in self.balanced} - set(professions)
        if other:
            raise TaskError(f"the balanced bios hold professions the ambiguous ones do not: {sorted(other)}")
        groups = {(b.profession, b.gender) for b in self.split("balanced", "test")}
        if len(groups) != 4:
            raise TaskError(f"the balanced test bios must hold all four profession × gender groups; found {sorted(groups)}")

    def split(self, which: str, part: str) -> list[Bio]:
        bios = self.ambiguous if which == "ambiguous" else self.balanced
        chosen = [b for b in bios if b.split == part]
        if not chosen:
            raise TaskError(f"the {which} bios have no {part!r} examples")
        return chosen


# --------------------------------------------------------------------------------------- encoded sets


@dataclass
class BiosSet:
    """Bios tokenized for a classifier, with their labels as class indices."""

    bios: list[Bio]
    tokenized: TokenizedTask
    profession: Tensor  # [n] class index of the profession
    gender: Tensor  # [n] class index the gender predicts (the spurious label)
    group: list[tuple[str, str]]  # (profession, gender) per bio

    def __len__(self) -> int:
        return len(self.bios)


def bios_task(bios: Sequence[Bio], *, name: str, label: Callable[[Bio], str]) -> Task:
    return Task(name, tuple(Example(b.text, label(b)) for b in bios), f"bios:{name}")


def encode_bios(handle: ModelHandle, bios: list[Bio], data: ShiftData, *, name: str) -> BiosSet:
    task = bios_task(bios, name=name, label=lambda b: b.profession)
    tokenized = tokenize_task(task, handle)
    index = {c: i for i, c in enumerate(data.classes)}
    return BiosSet(
        bios=list(bios),
        tokenized=tokenized,
        profession=torch.tensor([index[b.profession] for b in bios]),
        gender=torch.tensor([index[data.aligned[b.gender]] for b in bios]),
        group=[(b.profession, b.gender) for b in bios],
    )


def pooled(handle: ModelHandle, encoded: BiosSet, *, ablation: Ablation | None = None,
           batch_size: int = 64) -> Tensor:
    """What the classifier reads — the mean-pooled last residual stream — for every bio, ``[n, d_model]``."""
    head = probe_head(handle)
    out = torch.zeros(len(encoded), handle.d_model, dtype=torch.float64)
    for batch in encoded.tokenized.batches(batch_size, handle.device):
        with head.reading_pooled(), torch.no_grad():
            if ablation is None:
                values = handle.model(batch.clean)
            else:
                values = ablation.forward(handle, batch.clean)
        out[torch.tensor(batch.indices)] = values[:, -1, :].detach().cpu().double()
    return out


@dataclass(frozen=True)
class Accuracies:
    profession: float
    gender: float
    worst_group: float
    groups: dict[str, float]

    def as_dict(self) -> dict[str, Any]:
        return {"profession": self.profession, "gender": self.gender, "worst_group": self.worst_group,
                "groups": dict(self.groups)}


def accuracies(probe: LinearProbe, x: Tensor, encoded: BiosSet) -> Accuracies:
    """Profession, gender (spurious-label) and worst-group accuracy of ``probe`` on pooled ``x``."""
    predicted = probe.predict(x.to(probe.weight.dtype)).cpu()
    right = predicted == encoded.profession
    groups: dict[str, list[bool]] = {}
    for ok, (profession, gender) in zip(right.tolist(), encoded.group):
        groups.setdefault(f"{profession}/{gender}", []).append(ok)
    per_group = {g: sum(v) / len(v) for g, v in sorted(groups.items())}
    return Accuracies(
        profession=float(right.double().mean()),
        gender=float((predicted == encoded.gender).double().mean()),
        worst_group=min(per_group.values()),
        groups=per_group,
    )


# ----------------------------------------------------------------------------------------- features


@dataclass(frozen=True)
class FeatureRef:
    """A dictionary latent: its site in this run and its global id ``<dictionary id>/<latent>``."""

    site: Site
    latent: int
    feature_id: str


def feature_ref(dictionaries: DictionarySet, ref: str) -> FeatureRef:
    """Resolve a global feature id (``<dictionary id>/<latent>``) or a node id (``resid_3/12``)."""
    try:  # a node id (resid_3/12) reads like a feature id whose "dictionary" is the site name
        head, latent = naming.parse_feature_identity(ref.strip())
    except SfcError:
        raise ComputeError(f"{ref!r} is not a feature: give '<dictionary id>/<latent>' or a node id like resid_3/12") from None
    by_id = {info.id: name for name, info in dictionaries.infos().items()}
    if head in by_id:
        site = parse_site(by_id[head])
    else:
        try:
            site = parse_site(head)
        except Exception:
            raise ComputeError(
                f"feature {ref!r}: its dictionary {head!r} is not one of this run's ({', '.join(sorted(by_id))})"
            ) from None
        if site not in dictionaries.by_site:
            raise ComputeError(f"feature {ref!r}: this run has no dictionary at site {site}")
    d_dict = dictionaries[site].d_dict
    if latent >= d_dict:
        raise ComputeError(f"feature {ref!r}: latent {latent} is out of range (the dictionary has {d_dict})")
    return FeatureRef(site, latent, naming.feature_identity(dictionaries.infos()[site.name].id, latent))


def circuit_features(circuit_nodes, dictionaries: DictionarySet) -> list[tuple[FeatureRef, float]]:
    """The feature nodes of a circuit (a bundle's node table) with their effects, largest |effect| first."""
    rows = circuit_nodes.filter(circuit_nodes["kind"] == "feature").to_dicts()
    effects: dict[str, float] = {}
    for row in rows:
        effects[row["node_id"]] = effects.get(row["node_id"], 0.0) + float(row["effect"])
    refs = [(feature_ref(dictionaries, node_id), effect) for node_id, effect in effects.items()]
    return sorted(refs, key=lambda item: (-abs(item[1]), item[0].feature_id))


def ablation_of(refs: Sequence[FeatureRef], dictionaries: DictionarySet, *, name: str) -> Ablation:
    indices: dict[Site, list[int]] = {}
    for ref in refs:
        indices.setdefault(ref.site, []).append(ref.latent)
    return Ablation(dictionaries, {s: torch.tensor(sorted(set(v)), dtype=torch.long) for s, v in indices.items()},
                    name=name)


# ------------------------------------------------------------------------------------------- judges


@dataclass(frozen=True)
class Judgement:
    feature: FeatureRef
    spurious: bool
    judge: str  # auto | query | file
    reason: str
    effect: float | None = None
    gender_separation: float | None = None
    profession_separation: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"feature": self.feature.feature_id, "site": self.feature.site.name, "latent": self.feature.latent,
                "judgement": "spurious" if self.spurious else "relevant", "judge": self.judge, "reason": self.reason,
                "effect": self.effect, "gender_separation": self.gender_separation,
                "profession_separation": self.profession_separation}


def separation(values: Tensor, labels: Tensor) -> float:
    """How well one scalar separates two classes: ``|2·AUROC − 1|`` (0 none, 1 perfect), ties counted half.

    >>> separation(torch.tensor([0., 0., 1., 1.]), torch.tensor([0, 0, 1, 1]))
    1.0
    >>> separation(torch.tensor([1., 1., 1., 1.]), torch.tensor([0, 1, 0, 1]))
    0.0
    """
    values = values.double()
    positive, negative = values[labels == 1], values[labels == 0]
    if len(positive) == 0 or len(negative) == 0:
        return 0.0
    greater = (positive[:, None] > negative[None, :]).double().mean()
    ties = (positive[:, None] == negative[None, :]).double().mean()
    return float(abs(2 * (greater + 0.5 * ties) - 1))


def pooled_codes(handle: ModelHandle, dictionaries: DictionarySet, encoded: BiosSet, refs: Sequence[FeatureRef],
                 *, batch_size: int = 64) -> Tensor:
    """Mean over real tokens of each feature's activation, per bio: ``[n, len(refs)]``."""
    head = probe_head(handle)
    sites = sorted({r.site for r in refs}, key=lambda s: s.order)
    subset = DictionarySet(by_site={s: dictionaries.by_site[s] for s in sites})
    subset.to(handle.device, handle.model.cfg.dtype)
    spliced = SplicedModel(handle, subset)
    out = torch.zeros(len(encoded), len(refs), dtype=torch.float64)
    for batch in encoded.tokenized.batches(batch_size, handle.device):
        record = spliced.record(batch.clean)
        columns = []
        for ref in refs:
            codes = record.f[ref.site][..., ref.latent]  # [b, p]
            body = codes[:, 1:] if head.skip_first and codes.shape[1] > 1 else codes
            columns.append(body.mean(dim=1))
        out[torch.tensor(batch.indices)] = torch.stack(columns, dim=-1).detach().cpu().double()
    return out


AUTO_RULE = (
    "spurious when the feature's mean activation over a bio separates the bios' gender better than their "
    "profession (|2·AUROC − 1| for gender > for profession + margin) and separates gender at all "
    "(|2·AUROC − 1| >= min_separation), on the labelled balanced training split"
)
MIN_SEPARATION = 0.2  # AUROC 0.6: below it a feature says little about gender, and is not "about gender"


def auto_judge(handle: ModelHandle, dictionaries: DictionarySet, labelled: BiosSet,
               features: Sequence[tuple[FeatureRef, float | None]], *, margin: float = 0.0,
               min_separation: float = MIN_SEPARATION) -> list[Judgement]:
    """The automatic stand-in for the paper's human judge (rule: :data:`AUTO_RULE`).

    Why the floor: a person ablates the features they can read as gender (names, pronouns), not every feature
    that says little about either concept; zeroing those too removes much of what the probe reads.
    """
    if not features:
        return []
    refs = [f for f, _ in features]
    codes = pooled_codes(handle, dictionaries, labelled, refs)
    gender = torch.tensor([1 if b.gender == "female" else 0 for b in labelled.bios])
    profession = labelled.profession
    out = []
    for column, (ref, effect) in enumerate(features):
        sep_g = separation(codes[:, column], gender)
        sep_p = separation(codes[:, column], profession)
        spurious = sep_g > sep_p + margin and sep_g >= min_separation
        reason = f"separates gender {sep_g:.2f} vs profession {sep_p:.2f}"
        out.append(Judgement(ref, spurious, "auto", reason, effect, sep_g, sep_p))
    return out


def listed_judgements(refs: Sequence[FeatureRef], *, judge: str, source: str,
                      effects: dict[str, float] | None = None) -> list[Judgement]:
    """The human judge: every listed feature is spurious (the list is the judgement)."""
    effects = effects or {}
    return [Judgement(r, True, judge, f"listed by {source}", effects.get(r.feature_id)) for r in refs]


def read_feature_file(path: str | Path) -> list[str]:
    """Feature ids, one per line (``#`` comments and blank lines ignored)."""
    try:
        lines = Path(path).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ComputeError(f"{path}: cannot read the feature list ({exc})") from None
    ids = [line.split("#", 1)[0].strip() for line in lines]
    return [i for i in ids if i]


# ---------------------------------------------------------------------------------------- the run


@dataclass
class ShiftSettings:
    circuit: CircuitSettings = field(default_factory=lambda: CircuitSettings(
        method="ig", ablation="zero", metric="neg_log_prob", node_threshold=0.1, edge_threshold=0.01,
        n_examples=128, eval_thresholds=()))
    probe_l2: float = 1e-3
    skyline_k: int | None = None  # None: as many as SHIFT ablates
    # what an ablated feature is set to: zero (the paper) or its mean over the ambiguous training bios' real
    # tokens (keeps the probe's offset calibrated; removes only the feature's variation)
    fill: str = "zero"
    batch_size: int = 64


class ShiftExperiment:
    """The classifier, its data and every measurement of the table, on one model and dictionary set."""

    def __init__(self, handle: ModelHandle, dictionaries: DictionarySet, data: ShiftData,
                 settings: ShiftSettings | None = None) -> None:
        self.handle, self.dictionaries, self.data = handle, dictionaries, data
        self.settings = settings or ShiftSettings()
        blank = LinearProbe(torch.zeros(len(data.classes), handle.d_model), torch.zeros(len(data.classes)))
        # pooling only: the probe of this copy is never read
        self.reader = attach_probe(handle, blank, class_labels=data.classes, name="pool")
        self.sets = {
            "ambiguous_train": encode_bios(self.reader, data.split("ambiguous", "train"), data, name="bios-ambiguous"),
            "balanced_train": encode_bios(self.reader, data.split("balanced", "train"), data, name="bios-balanced"),
            "balanced_test": encode_bios(self.reader, data.split("balanced", "test"), data, name="bios-balanced-test"),
        }
        self._pooled: dict[str, Tensor] = {}
        self.probe = self.fit("ambiguous_train")
        self.classifier = attach_probe(handle, self.probe, class_labels=data.classes, name="bios-probe")

    def pooled(self, which: str, ablation: Ablation | None = None) -> Tensor:
        if ablation is None:
            if which not in self._pooled:
                self._pooled[which] = pooled(self.reader, self.sets[which], batch_size=self.settings.batch_size)
            return self._pooled[which]
        return pooled(self.reader, self.sets[which], ablation=ablation, batch_size=self.settings.batch_size)

    def fit(self, which: str, ablation: Ablation | None = None) -> LinearProbe:
        encoded = self.sets[which]
        return train_probe(self.pooled(which, ablation), encoded.profession, n_classes=len(self.data.classes),
                           l2=self.settings.probe_l2)

    def filled(self, ablation: Ablation) -> Ablation:
        """``ablation`` with the fill of :attr:`ShiftSettings.fill` (features only; neurons keep theirs)."""
        if self.settings.fill == "zero" or ablation.fill:
            return ablation
        if self.settings.fill != "mean":
            raise ComputeError(f"unknown fill {self.settings.fill!r}; zero or mean")
        refs = [FeatureRef(site, latent, naming.feature_id(site.name, latent)) for site, latent in ablation.pairs()]
        if not refs:
            return ablation
        codes = pooled_codes(self.reader, self.dictionaries, self.sets["ambiguous_train"], refs)
        weights = self._real_token_counts("ambiguous_train")
        means = (codes * weights[:, None]).sum(0) / weights.sum()  # mean over every real token, not per bio
        fill: dict[Site, Tensor] = {}
        for column, (site, latent) in enumerate(ablation.pairs()):
            fill.setdefault(site, torch.zeros(self.dictionaries[site].d_dict))[latent] = float(means[column])
        return Ablation(ablation.dictionaries, ablation.indices, fill, ablation.name)

    def _real_token_counts(self, which: str) -> Tensor:
        encoded = self.sets[which]
        skip = probe_head(self.reader).skip_first
        return torch.tensor([max(1, len(t) - (1 if skip and len(t) > 1 else 0)) for t in encoded.tokenized.clean],
                            dtype=torch.float64)

    def measure(self, probe: LinearProbe, ablation: Ablation | None = None) -> Accuracies:
        return accuracies(probe, self.pooled("balanced_test", ablation), self.sets["balanced_test"])

    # --- the circuit --------------------------------------------------------------------------------
    def task(self) -> Task:
        return bios_task(self.data.split("ambiguous", "train"), name="bios-ambiguous", label=lambda b: b.profession)

    def circuit(self, progress=None) -> Circuit:
        return compute_circuit(self.classifier, self.dictionaries, self.task(), self.settings.circuit,
                               progress=progress)

    # --- skylines -----------------------------------------------------------------------------------
    def _gender_effects(self, dictionaries: DictionarySet, progress=None):
        """Every node's attribution towards the class the *gender* predicts, on balanced training bios."""
        task = bios_task(self.data.split("balanced", "train"), name="bios-balanced-gender",
                         label=lambda b: self.data.aligned[b.gender])
        settings = CircuitSettings.from_dict({
            **self.settings.circuit.to_dict(), "node_threshold": 1e30, "eval_thresholds": [],  # effects only, no edges
        })
        circuit = compute_circuit(self.classifier, dictionaries, task, settings, progress=progress)
        assert circuit.effects is not None
        return circuit.effects

    def skyline(self, kind: str, k: int, progress=None) -> Ablation:
        """The top-``k`` ``features`` (zeroed) or ``neurons`` (mean-ablated) for gender; see the module docstring.

        The metric is ``-log C(gender class | x)``, so a node whose ablation would make the classifier read
        gender less has a positive effect; the ``k`` most positive are taken.
        """
        if kind == "features":
            dictionaries = self.dictionaries
        elif kind == "neurons":
            dictionaries = neuron_dictionaries(self.handle, self.dictionaries.sites)
        else:
            raise ComputeError(f"unknown skyline {kind!r}")
        effects = self._gender_effects(dictionaries, progress)
        flat = [(float(v), site, i) for site, f in effects.features.items() for i, v in enumerate(f.tolist())]
        flat.sort(key=lambda t: (-t[0], t[1].order, t[2]))
        chosen = [(site, i) for v, site, i in flat[:k] if v > 0]
        indices: dict[Site, list[int]] = {}
        for site, i in chosen:
            indices.setdefault(site, []).append(i)
        ablation = Ablation(dictionaries, {s: torch.tensor(sorted(v), dtype=torch.long) for s, v in indices.items()},
                            name=f"{kind} skyline")
        if kind == "neurons":  # the paper mean-ablates neurons: the mean over real tokens of the training bios
            ablation.fill = self._site_means(sorted(indices, key=lambda s: s.order))
            return ablation
        return self.filled(ablation)

    def _site_means(self, sites: list[Site]) -> dict[Site, Tensor]:
        head = probe_head(self.reader)
        sums = {s: torch.zeros(self.handle.d_model, dtype=torch.float64) for s in sites}
        count = 0
        hooks = {s.hook: s for s in sites}
        for batch in self.sets["balanced_train"].tokenized.batches(self.settings.batch_size, self.handle.device):
            _, cache = self.reader.model.run_with_cache(batch.clean, names_filter=lambda n: n in hooks)
            for hook, site in hooks.items():
                x = cache[hook]
                body = x[:, 1:] if head.skip_first and x.shape[1] > 1 else x
                sums[site] += body.sum(dim=(0, 1)).double().cpu()
            count += batch.size * (batch.n_pos - (1 if head.skip_first and batch.n_pos > 1 else 0))
        return {s: (v / count).float() for s, v in sums.items()}


@dataclass
class ShiftRow:
    method: str
    accuracies: Accuracies
    n_ablated: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"method": self.method, "n_ablated": self.n_ablated, **self.accuracies.as_dict()}


def shift_table(experiment: ShiftExperiment, ablation: Ablation, *, retrain: bool = True, skylines: bool = True,
                progress=None) -> list[ShiftRow]:
    """The paper's table on the balanced test split (rows defined in the module docstring)."""
    ablation = experiment.filled(ablation)
    rows = [ShiftRow("original", experiment.measure(experiment.probe), 0)]
    rows.append(ShiftRow("SHIFT", experiment.measure(experiment.probe, ablation), ablation.n_latents))
    if retrain:
        retrained = experiment.fit("ambiguous_train", ablation)
        rows.append(ShiftRow("SHIFT + retrain", experiment.measure(retrained, ablation), ablation.n_latents))
    if skylines:
        k = experiment.settings.skyline_k or max(1, ablation.n_latents)
        for kind, label in (("neurons", "neuron skyline"), ("features", "feature skyline")):
            sky = experiment.skyline(kind, k, progress=progress)
            rows.append(ShiftRow(label, experiment.measure(experiment.probe, sky), sky.n_latents))
    oracle = experiment.fit("balanced_train")
    rows.append(ShiftRow("oracle", experiment.measure(oracle), 0))
    return rows


# ------------------------------------------------------------------------------ choosing the features


def features_from(source: str, *, store, dictionaries: DictionarySet, circuit_id: str,
                  params: dict[str, Any] | None = None) -> tuple[list[FeatureRef], str]:
    """The features a person chose: ``source`` is a file of feature ids, a ``.cypher`` file, a named query of
    the library, or Cypher text; a query must return a ``feature`` (or ``id``) column of global feature ids.
    ``$circuit`` is the classifier's circuit unless ``params`` say otherwise. Returns the features and the
    judge's name (``file`` or ``query``)."""
    params = dict(params or {})
    path = Path(source)
    if path.is_file() and path.suffix != ".cypher":
        ids, judge = read_feature_file(path), "file"
    else:
        judge = "query"
        frame = _run_feature_query(store, source, path, circuit_id, params)
        column = "feature" if "feature" in frame.columns else "id" if "id" in frame.columns else None
        if column is None:
            raise ComputeError(f"--features-from {source}: the query must return a 'feature' column of feature ids "
                               f"(it returned {', '.join(frame.columns) or 'no columns'})")
        ids = [str(v) for v in frame[column].to_list() if v is not None]
    refs = list({r.feature_id: r for r in (feature_ref(dictionaries, i) for i in ids)}.values())
    if not refs:
        raise ComputeError(f"--features-from {source}: no features to ablate")
    return refs, judge


def _run_feature_query(store, source: str, path: Path, circuit_id: str, params: dict[str, Any]):
    from sfc_graph.errors import QueryError
    from sfc_graph.queries import get_query, run_query

    if path.is_file():
        text = path.read_text(encoding="utf-8")
    else:
        try:
            query = get_query(source)
        except QueryError:
            query = None
        if query is not None:
            if "circuit" in {p.name for p in query.params}:
                params.setdefault("circuit", circuit_id)
            return run_query(store, source, params)
        if "RETURN" not in source.upper():
            raise ComputeError(f"--features-from {source!r}: not a file, a named query, nor Cypher with a RETURN")
        text = source
    if "$circuit" in text:
        params.setdefault("circuit", circuit_id)
    used = {k: v for k, v in params.items() if f"${k}" in text}
    return store.run(text, used)


# ------------------------------------------------------------------------------------------ one run


@dataclass
class ShiftResult:
    circuit_id: str
    judgements: list[Judgement]
    ablated: list[FeatureRef]
    rows: list[ShiftRow]
    intervention_id: str | None
    bundle_path: str
    feature_notes: dict[str, dict[str, Any]]  # per ablated feature: separations, top tokens, logit lens

    def row(self, method: str) -> ShiftRow:
        return next(r for r in self.rows if r.method == method)

    def to_json(self) -> dict[str, Any]:
        return {
            "circuit": self.circuit_id, "intervention": self.intervention_id, "bundle": self.bundle_path,
            "table": [r.as_dict() for r in self.rows],
            "judgements": [j.as_dict() for j in self.judgements],
            "ablated": [r.feature_id for r in self.ablated],
            "features": self.feature_notes,
        }


def run_shift(experiment: ShiftExperiment, *, store, out: str | Path, features: str | None = None,
              query_params: dict[str, Any] | None = None, margin: float = 0.0,
              min_separation: float = MIN_SEPARATION, retrain: bool = True,
              skylines: bool = True, overwrite: bool = False, progress=None) -> ShiftResult:
    """``sfc shift``: the circuit into the store, the judgement, the table, and the Intervention record."""
    from sfc_graph.interventions import AblatedFeature, InterventionRecord, write_intervention

    out = Path(out)
    bundle_dir = out / "circuit"
    if bundle_dir.exists() and not overwrite:
        raise ComputeError(f"{bundle_dir}: already exists; choose another --out or pass --overwrite")
    circuit = experiment.circuit(progress=progress)
    bundle = circuit.write(bundle_dir, overwrite=overwrite)
    store.load(bundle)
    cid = circuit.circuit_id
    stored = store.read_circuit(cid)  # the judge reads the circuit from the store, as a person would
    in_circuit = circuit_features(stored.nodes, experiment.dictionaries)
    effects = {r.feature_id: e for r, e in in_circuit}
    labelled = experiment.sets["balanced_train"]
    if features is None:
        judgements = auto_judge(experiment.reader, experiment.dictionaries, labelled, in_circuit, margin=margin,
                                min_separation=min_separation)
    else:
        refs, judge = features_from(features, store=store, dictionaries=experiment.dictionaries, circuit_id=cid,
                                    params=query_params)
        judgements = listed_judgements(refs, judge=judge, source=features, effects=effects)
    ablated = [j.feature for j in judgements if j.spurious]
    ablation = ablation_of(ablated, experiment.dictionaries, name="SHIFT")
    rows = shift_table(experiment, ablation, retrain=retrain, skylines=skylines, progress=progress)
    notes = describe_features(experiment, ablated)
    before, after = rows[0].accuracies, rows[1].accuracies
    infos = experiment.dictionaries.infos()
    judged = {j.feature.feature_id: j for j in judgements}
    record = InterventionRecord(
        circuit=cid, task=circuit.manifest["task"], model=circuit.manifest["model"],
        judge=judgements[0].judge if judgements else "auto",
        ablated=[AblatedFeature(
            feature=r.feature_id, dictionary=infos[r.site.name].id, latent=r.latent, site=r.site.kind,
            layer=r.site.layer, judgement="spurious", reason=judged[r.feature_id].reason,
            effect=effects.get(r.feature_id)) for r in ablated],
        before={"profession": before.profession, "gender": before.gender, "worst_group": before.worst_group},
        after={"profession": after.profession, "gender": after.gender, "worst_group": after.worst_group},
        results={"table": [r.as_dict() for r in rows],
                 "rule": None if features is not None else
                 f"{AUTO_RULE} (margin {margin}, min_separation {min_separation})",
                 "features_from": features, "settings": experiment.settings.circuit.identity()},
    )
    intervention_id = write_intervention(store, record) if ablated else None
    if not ablated:
        log.warning("the judge marked no feature spurious; nothing was ablated and no intervention was recorded")
    result = ShiftResult(cid, judgements, ablated, rows, intervention_id, str(bundle_dir), notes)
    (out / "shift.json").write_text(json.dumps(result.to_json(), indent=2, default=float) + "\n", encoding="utf-8")
    return result


def describe_features(experiment: ShiftExperiment, refs: Sequence[FeatureRef], *, k: int = 5) -> dict[str, dict]:
    """For reading what the ablated features are about: gender / profession separation on labelled bios,
    the tokens where each is most active, and its logit lens through the base model's unembedding."""
    if not refs:
        return {}
    labelled = experiment.sets["balanced_train"]
    codes = pooled_codes(experiment.reader, experiment.dictionaries, labelled, refs)
    gender = torch.tensor([1 if b.gender == "female" else 0 for b in labelled.bios])
    tokens = _top_tokens(experiment, refs, k=k)
    W_U = experiment.handle.model.W_U.detach().cpu().double()
    tokenizer = experiment.handle.model.tokenizer
    notes = {}
    for column, ref in enumerate(refs):
        W_dec = experiment.dictionaries[ref.site].W_dec[ref.latent].detach().cpu().double()
        logits = W_dec @ W_U
        top = logits.topk(min(k, logits.numel())).indices.tolist()
        notes[ref.feature_id] = {
            "gender_separation": separation(codes[:, column], gender),
            "profession_separation": separation(codes[:, column], labelled.profession),
            "top_tokens": tokens[column],
            "logit_lens": [tokenizer.convert_ids_to_tokens(int(t)) for t in top] if tokenizer is not None else top,
        }
    return notes


def _top_tokens(experiment: ShiftExperiment, refs: Sequence[FeatureRef], *, k: int) -> list[list[str]]:
    """Per feature, the ``k`` token types with the highest mean activation (over ≥ 2 occurrences) in the bios."""
    sites = sorted({r.site for r in refs}, key=lambda s: s.order)
    subset = DictionarySet(by_site={s: experiment.dictionaries.by_site[s] for s in sites})
    spliced = SplicedModel(experiment.reader, subset)
    sums = torch.zeros(len(refs), experiment.handle.model.cfg.d_vocab, dtype=torch.float64)
    counts = torch.zeros(experiment.handle.model.cfg.d_vocab, dtype=torch.float64)
    for batch in experiment.sets["balanced_train"].tokenized.batches(experiment.settings.batch_size,
                                                                     experiment.handle.device):
        record = spliced.record(batch.clean)
        flat_tokens = batch.clean.reshape(-1).cpu()
        counts.index_add_(0, flat_tokens, torch.ones_like(flat_tokens, dtype=torch.float64))
        for row, ref in enumerate(refs):
            values = record.f[ref.site][..., ref.latent].reshape(-1).detach().cpu().double()
            sums[row].index_add_(0, flat_tokens, values)
    means = sums / counts.clamp_min(1)
    means[:, counts < 2] = float("-inf")
    tokenizer = experiment.handle.model.tokenizer
    out = []
    for row in range(len(refs)):
        best = [int(t) for t in means[row].topk(k).indices.tolist() if means[row, t] > 0]
        out.append([tokenizer.convert_ids_to_tokens(t) for t in best] if tokenizer is not None else best)
    return out
