"""Benchmark prompts: exact synthetic token lengths, the built-in Japanese chat set, JSONL files."""

from __future__ import annotations

import json
from collections import Counter

import click
import pytest

from benchmarks.load.datasets import JA_CHAT, count_tokens, load_dataset, read_jsonl
from trt_build.common.errors import SwallowTrtError


def test_synthetic_prompts_have_exact_token_lengths(tokenizer):
    requests = load_dataset("synthetic", tokenizer, 12, isl=100, isl_stddev=0, osl=64, osl_stddev=0, seed=3)
    assert len(requests) == 12
    for request in requests:
        assert count_tokens(tokenizer, request.prompt) == 100 == request.input_tokens
        assert request.output_tokens == 64
    assert len({r.prompt for r in requests}) > 6  # cut at different offsets
    assert all(any("\u3040" <= ch <= "\u30ff" for ch in r.prompt) for r in requests)  # Japanese kana


def test_synthetic_lengths_follow_the_stddev(tokenizer):
    requests = load_dataset("synthetic", tokenizer, 40, isl=60, isl_stddev=15, osl=50, osl_stddev=10, seed=1)
    lengths = [r.input_tokens for r in requests]
    assert len(set(lengths)) > 10 and 45 < sum(lengths) / len(lengths) < 75
    assert all(count_tokens(tokenizer, r.prompt) == r.input_tokens for r in requests)
    assert len({r.output_tokens for r in requests}) > 5


def test_builtin_japanese_chat_set_is_large_and_varied():
    rows = read_jsonl(JA_CHAT)
    assert len(rows) >= 100
    categories = Counter(row["category"] for row in rows)
    assert {"daily", "business_email", "summarization", "translation", "coding", "keigo"} <= set(categories)
    assert min(categories.values()) >= 10
    assert len({row["messages"][0]["content"] for row in rows}) == len(rows)  # no duplicates


def test_ja_chat_requests_use_the_chat_template(tokenizer):
    requests = load_dataset("ja-chat", tokenizer, 5, osl=32)
    for request in requests:
        assert request.prompt.startswith("<|begin_of_text|><|start_header_id|>user")
        assert request.prompt.endswith("<|start_header_id|>assistant<|end_header_id|>\n\n")
        assert request.messages and request.messages[0]["role"] == "user"
        assert request.input_tokens == count_tokens(tokenizer, request.prompt)


def test_jsonl_file_prompts_messages_and_per_line_lengths(tokenizer, tmp_path):
    path = tmp_path / "prompts.jsonl"
    lines = [
        {"prompt": "富士山の高さは？", "output_tokens": 7},
        {"messages": [{"role": "user", "content": "こんにちは"}]},
        {"text": "桜の季節"},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines) + "\n\n")
    requests = load_dataset(str(path), tokenizer, 6, osl=20)
    assert len(requests) == 6  # the file repeats to the count
    by_prompt = {r.prompt: r for r in requests}
    assert by_prompt["富士山の高さは？"].output_tokens == 7
    assert by_prompt["桜の季節"].output_tokens == 20


# A line that is not JSON is reported by the shared reader (trt_build.common.jsonl, its own error type);
# the other two by the dataset's checks.
@pytest.mark.parametrize(
    "content, errors",
    [
        ('{"prompt": "ok"}\nnot json\n', (click.ClickException, SwallowTrtError)),
        ('{"question": "x"}\n', SwallowTrtError),
        ("\n", SwallowTrtError),
    ],
)
def test_bad_jsonl_files_say_what_is_wrong(tokenizer, tmp_path, content, errors):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(errors, match="bad.jsonl"):
        load_dataset(str(path), tokenizer, 2)


def test_unknown_dataset_name(tokenizer):
    with pytest.raises(SwallowTrtError, match="synthetic, ja-chat"):
        load_dataset("sharegpt", tokenizer, 2)
