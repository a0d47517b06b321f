"""The locally trained byte-level BPE: round trips, special tokens, save/load."""

from __future__ import annotations

from transformers import AutoTokenizer

from data_recipes import synthetic_text as st
from lalm.models.tokenizer import SPECIAL_TOKENS, train_bpe_tokenizer

SAMPLES = [
    st.render(key, language).text
    for key in st.statement_keys()[:3] + st.question_keys()[:3]
    for language in st.LANGUAGES
]


def test_round_trips_all_eight_languages(processor):
    tokenizer = processor.tokenizer
    for text in [*SAMPLES, "Ünïcödé never seen: 🎵 ½ — Ω", "  leading and trailing spaces  ", "a\n\nb\tc"]:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text


def test_bpe_learned_merges_for_every_language(processor):
    tokenizer = processor.tokenizer
    for language in st.LANGUAGES:
        text = st.render("trip:anna:market:mon", language).text
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert len(ids) < len(text.encode("utf-8")) / 2, (language, len(ids))


def test_special_tokens_are_single_ids_and_never_split(processor):
    tokenizer = processor.tokenizer
    for token in SPECIAL_TOKENS:
        ids = tokenizer(f"a{token}b", add_special_tokens=False)["input_ids"]
        assert tokenizer.convert_tokens_to_ids(token) in ids
        assert len(tokenizer(token, add_special_tokens=False)["input_ids"]) == 1
    assert tokenizer.pad_token == "<|endoftext|>"
    assert (
        tokenizer.decode(tokenizer("<|im_start|>x<|im_end|>")["input_ids"], skip_special_tokens=True) == "x"
    )


def test_save_load_gives_identical_ids(tmp_path):
    tokenizer = train_bpe_tokenizer(SAMPLES * 5, vocab_size=600)
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == [0, 1, 2, 3, 4, 5]
    tokenizer.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    assert type(loaded).__name__ == "Qwen2Tokenizer"
    for text in SAMPLES:
        assert loaded(text)["input_ids"] == tokenizer(text)["input_ids"]
    assert len(tokenizer) <= 600
