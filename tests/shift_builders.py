"""Builders for the SHIFT / SCR / TPP tests: hand-made bios with the zoo v2 contract's fields, a tiny random
model whose word-level tokenizer knows them, and random SAEs at every site. Nothing here is a test."""

from __future__ import annotations

import json
import random
from pathlib import Path

import torch
from sfc_graph.ingest.dictionaries import DictionaryInfo, DictionarySet, LoadedDictionary
from sfc_graph.ingest.model import ModelHandle, wrap
from test_ingest_helpers import build_dictionary

from sfc_graph.sites import all_sites

PRONOUNS = {"male": ["he", "his", "him"], "female": ["she", "her", "hers"]}
PROFESSION_WORDS = {
    "professor": ["teaches", "lectures", "students", "research", "university"],
    "nurse": ["cares", "patients", "hospital", "ward", "shifts"],
    "surgeon": ["operates", "theatre", "scalpel"],
    "lawyer": ["court", "clients", "trial"],
    "painter": ["canvas", "gallery", "colours"],
}
FILLER = ["the", "a", "at", "and", "with", "for", "many", "years", "works", "well", "known", "local"]
WORDS = sorted({w for ws in PRONOUNS.values() for w in ws} | {w for ws in PROFESSION_WORDS.values() for w in ws}
               | set(FILLER))


def build_tokenizer():
    from test_ingest_helpers import build_tokenizer as word_level

    return word_level(WORDS, name="bios-words")


def build_model(*, seed: int = 0, dtype: torch.dtype = torch.float32) -> ModelHandle:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = build_tokenizer()
    cfg = HookedTransformerConfig(
        n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=len(tokenizer), n_ctx=32,
        act_fn="gelu", normalization_type="LN", seed=seed, default_prepend_bos=True, dtype=dtype,
    )
    torch.manual_seed(seed)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.ndim >= 2:
                parameter.mul_(3.0)
    return wrap(model, model_id=f"bios-tiny-{seed}")


def build_dictionaries(handle: ModelHandle, *, d_dict: int = 24) -> DictionarySet:
    dtype = handle.model.cfg.dtype
    loaded = {}
    for number, site in enumerate(all_sites(handle.n_layers)):
        info = DictionaryInfo(id=f"{handle.model_id}/{site.name}/sae-{d_dict}", kind="sae", architecture="standard",
                              d_dict=d_dict, sha256=f"{number:064x}", path="memory")
        loaded[site] = LoadedDictionary(site, build_dictionary(handle.d_model, d_dict, seed=200 + number, dtype=dtype),
                                        info)
    return DictionarySet(by_site=loaded)


def bio(rng: random.Random, profession: str, gender: str) -> str:
    words = [rng.choice(PRONOUNS[gender]), rng.choice(FILLER)]
    words += rng.sample(PROFESSION_WORDS[profession], 2)
    words += [rng.choice(FILLER) for _ in range(rng.randint(0, 3))]
    words.append(rng.choice(PRONOUNS[gender]))
    return " ".join(words)


def make_bios(*, seed: int = 0, n: int = 24) -> dict[str, list[dict]]:
    """``ambiguous`` (professor↔male, nurse↔female), ``balanced`` (all four groups), ``professions`` (five)."""
    rng = random.Random(seed)
    out: dict[str, list[dict]] = {"ambiguous": [], "balanced": [], "professions": []}
    for split in ("train", "test"):
        for _ in range(n):
            for profession, gender in (("professor", "male"), ("nurse", "female")):
                out["ambiguous"].append({"text": bio(rng, profession, gender), "profession": profession,
                                         "gender": gender, "split": split})
            for profession in ("professor", "nurse"):
                for gender in ("male", "female"):
                    if rng.random() < 0.5:
                        continue
                    out["balanced"].append({"text": bio(rng, profession, gender), "profession": profession,
                                            "gender": gender, "split": split})
            for profession in PROFESSION_WORDS:
                gender = rng.choice(["male", "female"])
                out["professions"].append({"text": bio(rng, profession, gender), "profession": profession,
                                           "gender": gender, "split": split})
        # every group at least once per split
        for profession in ("professor", "nurse"):
            for gender in ("male", "female"):
                out["balanced"].append({"text": bio(rng, profession, gender), "profession": profession,
                                        "gender": gender, "split": split})
    return out


def write_bios(root: Path, **kwargs) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    for name, rows in make_bios(**kwargs).items():
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return root


def write_workspace(root: Path, *, seed: int = 0) -> Path:
    """On disk, for the CLI: ``model/`` (checkpoint with tokenizer), ``dicts/<site>/`` (SAELens), ``bios/``."""
    from safetensors.torch import save_file
    from test_ingest_helpers import write_saelens_dir

    handle = build_model(seed=seed)
    model_dir = root / "model"
    model_dir.mkdir(parents=True)
    cfg = handle.model.cfg
    fields = {k: getattr(cfg, k) for k in ("n_layers", "d_model", "d_head", "n_heads", "d_mlp", "d_vocab", "n_ctx",
                                           "act_fn", "normalization_type", "default_prepend_bos")}
    fields["model_name"] = "bios-ckpt"
    (model_dir / "config.json").write_text(json.dumps(fields))
    save_file({k: v.contiguous() for k, v in handle.model.state_dict().items()}, str(model_dir / "model.safetensors"))
    handle.model.tokenizer.save_pretrained(str(model_dir))
    for number, site in enumerate(all_sites(handle.n_layers)):
        write_saelens_dir(root / "dicts" / site.name, build_dictionary(handle.d_model, 24, seed=200 + number),
                          hook_name=site.hook, dictionary_id=f"bios-ckpt/{site.name}/sae-24")
    write_bios(root / "bios", seed=seed)
    return root
