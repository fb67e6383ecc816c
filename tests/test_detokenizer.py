"""Incremental detokenization: deltas form the full decode, no U+FFFD for split characters."""

from __future__ import annotations

import random

import pytest

from triton_repo.models.detokenizer import REPLACEMENT, IncrementalDetokenizer, stream_text

SAMPLES = [
    "東京の紅葉😀です",
    "🍣🍜と𠮷野家の牛丼",
    "齉龘、鬱蒼とした森。",
    "Hello, 世界! 👋🏽 こんにちは\n次の行",
]


@pytest.fixture(scope="module")
def decode(tokenizer):
    return lambda ids: tokenizer.decode(list(ids), skip_special_tokens=True)


@pytest.mark.parametrize("text", SAMPLES)
def test_token_by_token_deltas_concatenate_to_the_text_without_replacement_chars(tokenizer, decode, text):
    ids = tokenizer.encode(text, add_special_tokens=False)
    assert any(REPLACEMENT in tokenizer.decode([i]) for i in ids)  # the sample really splits characters
    deltas = stream_text(decode, [[i] for i in ids])
    assert "".join(deltas) == text
    assert not any(REPLACEMENT in delta for delta in deltas)


def test_a_split_emoji_is_held_back_until_complete(tokenizer, decode):
    first, second = tokenizer.encode("😀", add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(decode)
    assert detokenizer.push([first]) == ""
    assert detokenizer.push([second]) == "😀"
    assert detokenizer.flush() == ""


def test_an_unfinished_character_at_the_end_is_flushed_like_the_full_decode(tokenizer, decode):
    ids = tokenizer.encode("紅葉😀", add_special_tokens=False)[:-1]  # cut the emoji in half
    deltas = stream_text(decode, [[i] for i in ids])
    assert "".join(deltas) == decode(ids)
    assert deltas[-1].endswith(REPLACEMENT) and not any(REPLACEMENT in d for d in deltas[:-1])


def test_random_token_streams_match_the_full_decode_in_any_chunking(tokenizer, decode):
    rng = random.Random(0)
    fragments = [i for i in range(128000) if REPLACEMENT in tokenizer.decode([i])][:2000]
    for _ in range(50):
        ids = [rng.choice(fragments) if rng.random() < 0.5 else rng.randrange(128000) for _ in range(40)]
        ids += rng.sample([128001, 128009], 1)  # special tokens are skipped in both
        cuts = sorted(rng.sample(range(1, len(ids)), 5))
        chunks = [ids[a:b] for a, b in zip([0, *cuts], [*cuts, len(ids)], strict=True)]
        assert "".join(stream_text(decode, chunks)) == decode(ids)


def test_japanese_round_trip_of_a_long_text_by_chunks_of_three(tokenizer, decode):
    text = "".join(SAMPLES) * 20
    ids = tokenizer.encode(text, add_special_tokens=False)
    deltas = stream_text(decode, [ids[i : i + 3] for i in range(0, len(ids), 3)])
    assert "".join(deltas) == text and REPLACEMENT not in "".join(deltas)


def test_decode_window_stays_small_as_the_output_grows(tokenizer):
    seen: list[int] = []

    def measuring_decode(ids):
        seen.append(len(ids))
        return tokenizer.decode(list(ids))

    ids = tokenizer.encode("".join(SAMPLES) * 50, add_special_tokens=False)
    detokenizer = IncrementalDetokenizer(measuring_decode)
    for token in ids:
        detokenizer.push([token])
    assert len(ids) > 1000 and max(seen) <= 10
