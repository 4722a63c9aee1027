"""``sfc zoo build``: tokenizer, task files, model, dictionaries and card, from scratch and deterministic.

Every random draw comes from a generator seeded from the build seed (Python ``random.Random`` for the
grammar, ``torch.Generator`` / a forked torch RNG for weights), so the same seed on the same torch gives the
same files. The global RNGs are left as they were.
"""

from __future__ import annotations

import json
import logging
import platform
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from sfc_graph.errors import ZooError
from sfc_graph.sites import all_sites

from . import card as card_mod
from .dictionaries import DictConfig, sae_cfg, save_dictionary, train_dictionary
from .grammar import PROFESSIONS, TASKS, Grammar, corpus, stream, vocabulary
from .model import MODEL_NAME, ModelConfig, config_to_dict, new_model, train_model
from .tokenizer import build_tokenizer, hf_tokenizer

log = logging.getLogger(__name__)

ZOO_NAME = MODEL_NAME
TRANSCODER_INPUT = "blocks.{layer}.ln2.hook_normalized"

# (stage, done, total): stages are "model", "activations", "dictionaries", "card"
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildConfig:
    seed: int = 0
    # two threads by default (the rebuild budget is 45 minutes on 2 cores); the same seed and thread count
    # give the same bits, a different thread count may differ in the last bits
    threads: int = 2
    model: ModelConfig = field(default_factory=ModelConfig)
    dictionary: DictConfig = field(default_factory=DictConfig)
    n_test_pairs: int = 256
    n_train_pairs: int = 256
    n_dictionary_sentences: int = 4000
    n_eval_sentences: int = 2000
    n_bios: int = 1000  # per bios file
    n_stream_documents: int = 1000
    n_curve_pairs: int = 64  # held-out pairs per task in each point of the training curves
    # per-dictionary target L0 where the default leaves loss recovered under its bar (sites whose zero
    # ablation costs little, so that small reconstruction errors weigh a lot)
    dictionary_l0: tuple[tuple[str, float], ...] = ()

    @classmethod
    def quick(cls, seed: int = 0) -> BuildConfig:
        """Tiny sizes for tests and smoke runs: minutes become seconds, the bars are not expected to hold."""
        return cls(
            seed=seed,
            model=replace(ModelConfig(), n_layers=1, d_model=32, n_heads=2, d_mlp=64, steps=60, batch_size=32,
                          eval_every=100),
            dictionary=replace(DictConfig(), d_sae=64, steps=60, batch_size=256, target_l0=6.0),
            n_test_pairs=24,
            n_train_pairs=24,
            n_dictionary_sentences=300,
            n_eval_sentences=100,
            n_bios=40,
            n_stream_documents=20,
            n_curve_pairs=16,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def _no_progress(stage: str, done: int, total: int) -> None:
    pass


def build(out: Path, config: BuildConfig = BuildConfig(), progress: Progress = _no_progress,
          overwrite: bool = False) -> dict:
    """Build the whole zoo into ``out`` (created; must be empty unless ``overwrite``); returns the card."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ZooError(f"{out} is not empty; pick an empty directory or pass --overwrite")
        for sub in ("model", "dictionaries", "transcoders", "tasks", "bios"):
            shutil.rmtree(out / sub, ignore_errors=True)
    out.mkdir(parents=True, exist_ok=True)
    threads_before = torch.get_num_threads()
    torch.set_num_threads(config.threads)
    try:
        return _build(out, config, progress)
    finally:
        torch.set_num_threads(threads_before)


def _build(out: Path, config: BuildConfig, progress: Progress) -> dict:
    started = time.perf_counter()
    seed = config.seed

    raw_tokenizer = build_tokenizer(vocabulary())
    raw_tokenizer.save(str(out / "tokenizer.json"))
    tokenizer = hf_tokenizer(out / "tokenizer.json")

    grammar = Grammar()
    write_tasks(out / "tasks", grammar, config, seed)
    write_bios(out / "bios", grammar, config, seed)
    write_stream(out / "stream.jsonl", grammar, config, seed)

    model = new_model(config.model, raw_tokenizer.get_vocab_size(), seed, tokenizer=tokenizer)
    curve_pairs = {task: card_mod.read_pairs(out / "tasks" / task / "test.jsonl")[: config.n_curve_pairs]
                   for task in TASKS}

    def evaluate(step: int) -> dict:
        return {task: card_mod.task_figures(model, pairs) for task, pairs in curve_pairs.items()}

    noisy = Grammar(noise=config.model.noise)
    curves = train_model(model, raw_tokenizer, noisy, config.model, seed, progress, evaluate=evaluate)
    history = curves["loss_every_50_steps"]
    (out / "training_curves.json").write_text(json.dumps(curves, indent=1) + "\n")
    save_model(out / "model", model)
    model_seconds = time.perf_counter() - started

    sentences = list(corpus(grammar, random.Random(f"dictionary-text-{seed}"), config.n_dictionary_sentences))
    acts = collect_activations(model, sentences, progress)
    dict_stats = train_all_dictionaries(out, model, acts, config, progress)
    del acts

    card = compute_card(out, model, config, progress)
    card["training"] = {
        "model": {"steps": config.model.steps, "batch_size": config.model.batch_size,
                  "sentences_seen": config.model.steps * config.model.batch_size,
                  "noise": config.model.noise, "weight_decay": config.model.weight_decay, "lr": config.model.lr,
                  "loss_every_50_steps": [round(x, 4) for x in history], "final_loss": history[-1],
                  "task_curves": curves["evaluations"], "curves_file": "training_curves.json"},
        "dictionaries": {"sentences": config.n_dictionary_sentences, "stats": dict_stats},
    }
    card["build"] = {"seed": seed, "config": config.to_dict(), "torch": torch.__version__,
                     "python": platform.python_version(), "threads": torch.get_num_threads(),
                     "model_seconds": round(model_seconds, 1),
                     "wall_seconds": round(time.perf_counter() - started, 1)}
    (out / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def write_tasks(root: Path, grammar: Grammar, config: BuildConfig, seed: int) -> None:
    for task in TASKS:
        rng = random.Random(f"task-{task}-{seed}")
        for split, n in (("test", config.n_test_pairs), ("train", config.n_train_pairs)):
            pairs = grammar.pairs(task, rng, n, split)
            path = root / task / f"{split}.jsonl"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("".join(json.dumps(p.to_json()) + "\n" for p in pairs))


def write_bios(root: Path, grammar: Grammar, config: BuildConfig, seed: int, test_fraction: float = 0.2) -> None:
    """The three bios files (see the data contract): ``ambiguous``, ``balanced`` and ``professions``.

    ``ambiguous`` pairs professor with male and nurse with female (the spurious cue is perfect);
    ``balanced`` has the same two professions with all four (profession, gender) groups equal;
    ``professions`` has the five professions, each half female and half male.
    """
    root.mkdir(parents=True, exist_ok=True)
    pairs, five = ("professor", "nurse"), list(PROFESSIONS)
    groups = {
        "ambiguous": [("professor", "male"), ("nurse", "female")],
        "balanced": [(p, g) for p in pairs for g in ("female", "male")],
        "professions": [(p, g) for p in five for g in ("female", "male")],
    }
    for name, cells in groups.items():
        rng = random.Random(f"bios-{name}-{seed}")
        rows = []
        for i in range(config.n_bios):
            profession, gender = cells[i % len(cells)]
            rows.append({"text": grammar.bio(rng, profession, gender), "profession": profession, "gender": gender})
        rng.shuffle(rows)
        n_test = round(test_fraction * len(rows))
        for i, row in enumerate(rows):
            row["split"] = "test" if i < n_test else "train"
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def write_stream(path: Path, grammar: Grammar, config: BuildConfig, seed: int) -> None:
    """The labelled text stream: noise-free documents, one label per token (``stream.jsonl``)."""
    docs = stream(grammar, random.Random(f"stream-{seed}"), config.n_stream_documents)
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))


def save_model(directory: Path, model) -> None:
    from safetensors.torch import save_file

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "config.json").write_text(json.dumps(config_to_dict(model.cfg), indent=2, sort_keys=True) + "\n")
    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    save_file(state, str(directory / "model.safetensors"))


def site_hooks(n_layers: int) -> list[str]:
    hooks = [site.hook for site in all_sites(n_layers)]
    hooks += [TRANSCODER_INPUT.format(layer=layer) for layer in range(n_layers)]
    return hooks


def collect_activations(model, sentences: list[str], progress: Progress,
                        batch_size: int = 500) -> dict[str, torch.Tensor]:
    """Activations at every hook a dictionary reads or reconstructs, real (non-pad) positions only."""
    hooks = set(site_hooks(model.cfg.n_layers))
    chunks: dict[str, list[torch.Tensor]] = {h: [] for h in hooks}
    n_batches = (len(sentences) + batch_size - 1) // batch_size
    for b in range(n_batches):
        tokens = model.to_tokens(sentences[b * batch_size : (b + 1) * batch_size], padding_side="right")
        mask = tokens != model.tokenizer.pad_token_id
        with torch.no_grad():
            _, cache = model.run_with_cache(tokens, names_filter=lambda name: name in hooks)
        for h in hooks:
            chunks[h].append(cache[h][mask].clone())
        progress("activations", b + 1, n_batches)
    return {h: torch.cat(v) for h, v in chunks.items()}


def train_all_dictionaries(out: Path, model, acts: dict[str, torch.Tensor], config: BuildConfig,
                           progress: Progress, only: set[str] | None = None) -> dict[str, dict]:
    """Train and save every dictionary (or those named in ``only``; each keeps its seed and settings)."""
    n_layers, d_model = model.cfg.n_layers, model.cfg.d_model
    d_sae = config.dictionary.d_sae
    jobs = [(site.name, site.hook, None) for site in all_sites(n_layers)]
    jobs += [(f"transcoder_mlp_{l}", TRANSCODER_INPUT.format(layer=l), f"blocks.{l}.hook_mlp_out")
             for l in range(n_layers)]
    total = len(jobs) * config.dictionary.steps
    stats = {}
    for j, (name, hook_in, hook_out) in enumerate(jobs):
        if only is not None and name not in only:
            continue

        def step_progress(done: int, _total: int, _base=j * config.dictionary.steps) -> None:
            progress("dictionaries", _base + done, total)

        y = None if hook_out is None else acts[hook_out]
        dict_config = replace(config.dictionary,
                              target_l0=dict(config.dictionary_l0).get(name, config.dictionary.target_l0))
        dictionary, stats[name] = train_dictionary(acts[hook_in], y, dict_config, seed=config.seed * 1000 + j,
                                                   progress=step_progress)
        if hook_out is None:
            directory = out / "dictionaries" / name
            dict_id = f"{ZOO_NAME}/{name}/sae-{d_sae}"
        else:
            layer = name.rsplit("_", 1)[1]
            directory = out / "transcoders" / f"mlp_{layer}"
            dict_id = f"{ZOO_NAME}/mlp_{layer}/transcoder-{d_sae}"
        cfg = sae_cfg(d_in=d_model, d_sae=d_sae, hook_name=hook_in, hook_name_out=hook_out,
                      dictionary_id=dict_id, model_name=ZOO_NAME,
                      extra={"l1_coefficient": stats[name]["l1_coefficient"], "training_steps": config.dictionary.steps,
                             "training_tokens": int(acts[hook_in].shape[0])})
        save_dictionary(directory, dictionary, cfg)
    return stats


def compute_card(root: Path, model, config_or_card, progress: Progress = _no_progress,
                 task_limit: int | None = None, eval_sentences: int | None = None) -> dict:
    """The card's figures for the zoo at ``root``: tasks on their test split, dictionaries on fresh text."""
    if isinstance(config_or_card, BuildConfig):
        seed, n_eval = config_or_card.seed, config_or_card.n_eval_sentences
    else:
        seed, n_eval = config_or_card["evaluation"]["seed"], config_or_card["evaluation"]["n_sentences"]
    n_eval = eval_sentences or n_eval
    task_files = {task: root / "tasks" / task / "test.jsonl" for task in TASKS}
    tasks = card_mod.evaluate_tasks(model, task_files, limit=task_limit)
    progress("card", 1, 2)
    sentences = card_mod.held_out_text(seed, n_eval)
    dictionaries = card_mod.evaluate_dictionaries(model, root, sentences)
    progress("card", 2, 2)
    cfg = model.cfg
    return {
        "name": ZOO_NAME,
        "architecture": {
            "kind": "HookedTransformer (transformer_lens 3.x), attention then MLP, LayerNorm",
            "n_layers": cfg.n_layers, "d_model": cfg.d_model, "n_heads": cfg.n_heads, "d_head": cfg.d_head,
            "d_mlp": cfg.d_mlp, "n_ctx": cfg.n_ctx, "d_vocab": cfg.d_vocab, "act_fn": cfg.act_fn,
            "n_params": int(sum(p.numel() for p in model.parameters())),
        },
        "evaluation": {"seed": seed, "n_sentences": n_eval,
                       "text": "fresh grammar sentences (held-out stream), real positions incl. <bos>"},
        "tasks": [asdict(t) for t in tasks],
        "dictionaries": dictionaries,
        "bars": card_mod.BARS,
    }
