"""A byte-level BPE tokenizer trained locally, in the format of Qwen2's tokenizer.

No model hub is reachable, so the tiny model's tokenizer is trained on the corpus text. It shares
Qwen2's normaliser (NFC), pre-tokeniser (the Qwen2 split regex, then byte-level) and decoder, and it
is returned as transformers' `Qwen2Tokenizer`, so it saves and loads exactly like a real Qwen2 one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import Qwen2Tokenizer
from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX

ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
AUDIO_BOS = "<|audio_bos|>"
AUDIO = "<|AUDIO|>"
AUDIO_EOS = "<|audio_eos|>"
# Order matters only for the ids of a freshly trained tokenizer (0..5).
SPECIAL_TOKENS = (ENDOFTEXT, IM_START, IM_END, AUDIO_BOS, AUDIO, AUDIO_EOS)
AUDIO_SPECIAL_TOKENS = (AUDIO_BOS, AUDIO, AUDIO_EOS)


def _qwen2_pipeline(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.normalizer = normalizers.NFC()
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    return tokenizer


def train_bpe_tokenizer(texts: Iterable[str], vocab_size: int, min_frequency: int = 2) -> Qwen2Tokenizer:
    """Train a byte-level BPE on `texts` and wrap it as a Qwen2Tokenizer with the audio special tokens.

    Byte-level BPE starts from all 256 bytes, so any text in any language round-trips, even characters
    never seen in training.
    """
    raw = _qwen2_pipeline(Tokenizer(models.BPE()))
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    raw.train_from_iterator(texts, trainer=trainer)
    model = json.loads(raw.to_str())["model"]
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m) for m in model["merges"]]
    # tokenizers' BPE wants (left, right) pairs; transformers' hint (list[str]) is narrower than that.
    tokenizer = Qwen2Tokenizer(vocab=model["vocab"], merges=merges)  # type: ignore[arg-type]
    add_audio_special_tokens(tokenizer)
    return tokenizer


def token_id(tokenizer, token: str) -> int:  # noqa: ANN001 - any transformers tokenizer
    """The id of one token (transformers types the lookup as int | list[int])."""
    found = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(found, int):
        raise TypeError(f"expected one id for {token!r}, got {found!r}")
    return found


def add_audio_special_tokens(tokenizer) -> int:  # noqa: ANN001 - any transformers tokenizer
    """Register ChatML and Qwen2-Audio special tokens (never split, skipped on decode).

    Returns how many were new to the vocabulary (an LLM's embeddings must grow by that many).
    """
    before = len(tokenizer)
    tokenizer.add_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.pad_token = ENDOFTEXT
    return len(tokenizer) - before
