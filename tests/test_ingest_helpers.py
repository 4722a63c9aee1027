"""Builders for the ingest tests: a tiny random transformer with a word-level tokenizer, random SAEs, tasks.

``build_model(**overrides)`` / ``build_dictionaries(handle)`` follow SAELens's test builders: small,
seeded, fast. Nothing here is a test; the module only shares builders between the ingest test files.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from sfc_graph.ingest.dictionaries import (
    Dictionary,
    DictionaryInfo,
    DictionarySet,
    LoadedDictionary,
)
from sfc_graph.ingest.model import ModelHandle, wrap

from sfc_graph.sites import all_sites

WORDS = [
    "the", "a", "dog", "dogs", "cat", "cats", "parent", "parents", "near", "by", "is", "are", "runs", "run",
    "mary", "john", "gave", "to", "and", "then", "ball", "big", "small", "who", "saw",
]


def build_tokenizer(words=None, *, name: str = "tiny-words"):
    """A word-level tokenizer over ``words`` (default: this module's WORDS) with [UNK], [BOS] and [PAD]."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"[UNK]": 0, "[BOS]": 1, "[PAD]": 2}
    for word in WORDS if words is None else words:
        vocab[word] = len(vocab)
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer, unk_token="[UNK]", bos_token="[BOS]", pad_token="[PAD]", eos_token="[BOS]",
        name_or_path=name, add_bos_token=True,
    )


def build_model(*, seed: int = 0, dtype: torch.dtype = torch.float32, **overrides) -> ModelHandle:
    from transformer_lens import HookedTransformer, HookedTransformerConfig

    tokenizer = build_tokenizer()
    fields = dict(
        n_layers=2, d_model=16, d_head=4, n_heads=4, d_mlp=32, d_vocab=len(tokenizer), n_ctx=32,
        act_fn="gelu", normalization_type="LN", seed=seed, default_prepend_bos=True, dtype=dtype,
    )
    fields.update(overrides)
    cfg = HookedTransformerConfig(**fields)
    torch.manual_seed(seed)
    model = HookedTransformer(cfg, tokenizer=tokenizer)
    # larger weights than the init so that effects are not all tiny
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if parameter.ndim >= 2:
                parameter.mul_(3.0)
    return wrap(model, model_id=f"tiny-{seed}")


def build_dictionary(d_model: int, d_dict: int, *, seed: int, dtype: torch.dtype = torch.float32) -> Dictionary:
    generator = torch.Generator().manual_seed(seed)
    W_dec = torch.randn(d_dict, d_model, generator=generator, dtype=dtype)
    W_dec = W_dec / W_dec.norm(dim=-1, keepdim=True)
    W_enc = W_dec.T.clone() + 0.1 * torch.randn(d_model, d_dict, generator=generator, dtype=dtype)
    b_enc = -0.3 * torch.rand(d_dict, generator=generator, dtype=dtype)
    b_dec = 0.1 * torch.randn(d_model, generator=generator, dtype=dtype)
    return Dictionary(W_enc, b_enc, W_dec, b_dec, apply_b_dec_to_input=True)


def build_dictionaries(handle: ModelHandle, *, d_dict: int = 24, sites=None) -> DictionarySet:
    dtype = handle.model.cfg.dtype
    loaded = {}
    for number, site in enumerate(sites or all_sites(handle.n_layers)):
        dictionary = build_dictionary(handle.d_model, d_dict, seed=100 + number, dtype=dtype)
        info = DictionaryInfo(
            id=f"{handle.model_id}/{site.name}/sae-{d_dict}", kind="sae", architecture="standard",
            d_dict=d_dict, sha256=f"{number:064x}", path="memory",
        )
        loaded[site] = LoadedDictionary(site=site, dictionary=dictionary, info=info)
    return DictionarySet(by_site=loaded)


def write_saelens_dir(path: Path, dictionary: Dictionary, *, hook_name: str, dictionary_id: str | None = None,
                      **cfg_extra) -> Path:
    from safetensors.torch import save_file

    path.mkdir(parents=True, exist_ok=True)
    cfg = {
        "architecture": dictionary.architecture, "d_in": dictionary.d_in, "d_sae": dictionary.d_dict,
        "hook_name": hook_name, "apply_b_dec_to_input": dictionary.apply_b_dec_to_input,
    }
    if dictionary_id:
        cfg["dictionary_id"] = dictionary_id
    cfg.update(cfg_extra)
    (path / "cfg.json").write_text(json.dumps(cfg))
    save_file({k: v.contiguous() for k, v in dictionary.tensors().items()}, str(path / "sae_weights.safetensors"))
    return path


AGREEMENT = [
    ("the parents near the dog", "the parent near the dog", "are", "is"),
    ("the parent near the cats", "the parents near the cats", "is", "are"),
    ("the dogs by the cat", "the dog by the cat", "run", "runs"),
    ("the dog by the cats", "the dogs by the cats", "runs", "run"),
    ("a big cat near the dogs", "a big cats near the dogs", "is", "are"),
    ("the small dogs", "the small dog", "are", "is"),
    ("the cats who saw mary", "the cat who saw mary", "are", "is"),
    ("the parents", "the parent", "are", "is"),
]


def write_task(path: Path, rows=AGREEMENT, *, counterfactual: bool = True) -> Path:
    lines = []
    for clean, patch, clean_answer, patch_answer in rows:
        row = {"clean": clean, "clean_answer": clean_answer}
        if counterfactual:
            row.update(patch=patch, patch_answer=patch_answer)
        lines.append(json.dumps(row))
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models run fastest on one thread (and far faster on a busy machine); restored afterwards."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
