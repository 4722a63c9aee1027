"""The zoo's word-level tokenizer.

Words are split on whitespace; punctuation and each pair of digits are tokens of their own, so the year
``1732`` is the two tokens ``17`` and ``32`` and a two-digit answer (``33``) is one token. Text is
lower-cased first. Saved as a plain ``tokenizer.json`` (no post-processor); :func:`hf_tokenizer` wraps it
as a ``transformers.PreTrainedTokenizerFast`` that prepends ``<bos>`` like Llama's, which is what
``HookedTransformer.to_tokens`` expects.
"""

from __future__ import annotations

from pathlib import Path

from .grammar import SPECIAL_TOKENS, vocabulary

BOS, EOS, PAD, UNK = SPECIAL_TOKENS


def build_tokenizer(words: list[str] | None = None):
    """A ``tokenizers.Tokenizer`` over the special tokens then ``words`` (default: the grammar's)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    vocab = {token: i for i, token in enumerate(list(SPECIAL_TOKENS) + (words or vocabulary()))}
    tokenizer = Tokenizer(models.WordLevel(vocab, unk_token=UNK))
    tokenizer.normalizer = normalizers.Lowercase()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.WhitespaceSplit(),
        pre_tokenizers.Split(Regex(r"\d\d|[^\w\s]"), behavior="isolated"),
    ])
    tokenizer.add_special_tokens(list(SPECIAL_TOKENS))
    return tokenizer


def hf_tokenizer(path: str | Path):
    """``tokenizer.json`` at ``path`` as a ``PreTrainedTokenizerFast`` with bos/eos/pad/unk set."""
    from transformers import PreTrainedTokenizerFast

    return PreTrainedTokenizerFast(
        tokenizer_file=str(path),
        bos_token=BOS,
        eos_token=EOS,
        pad_token=PAD,
        unk_token=UNK,
        add_bos_token=True,
        # transformer_lens reads name_or_path to decide whether to rebuild the tokenizer; with
        # add_bos_token already set it keeps this one.
        name_or_path="toy-zoo",
        padding_side="right",
        model_max_length=10**6,
    )
