"""The built-in calibration / evaluation sets and the calibration token loaders."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.quant.calib_data import (
    BUILTIN_CALIBRATION,
    BUILTIN_EVALUATION,
    calibration_tokens,
    load_eval_samples,
    load_samples,
    read_jsonl,
)
from trt_build.source.tokenizer import BOS_ID

JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
CATEGORIES = {
    "news_ja",
    "dialogue_casual_ja",
    "dialogue_keigo_ja",
    "technical_ja",
    "legal_ja",
    "code_math_ja",
    "english",
}


def _content(sample) -> str:
    return sample.text if sample.text is not None else "\n".join(content for _, content in sample.messages)


def test_builtin_set_size_categories_and_language_share() -> None:
    samples = load_samples("builtin")
    assert len(samples) >= 256
    assert {s.category for s in samples} == CATEGORIES
    english = [s for s in samples if s.category == "english"]
    assert 0.15 <= len(english) / len(samples) <= 0.20
    assert all(not JAPANESE.search(_content(s)) for s in english)
    japanese = [s for s in samples if s.category != "english"]
    assert all(JAPANESE.search(_content(s)) for s in japanese)
    dialogues = [s for s in samples if s.category.startswith("dialogue")]
    assert dialogues and all(s.messages and s.messages[-1][0] == "assistant" for s in dialogues)


def test_builtin_set_has_long_samples(tokenizer) -> None:
    lengths = [len(s.render(tokenizer)) for s in load_samples("builtin")]
    assert max(lengths) >= 400 and min(lengths) < 100  # varied; packing fills 512-token rows


def test_eval_set_is_held_out() -> None:
    evaluation = load_eval_samples()
    assert len(evaluation) >= 32
    assert {s.category for s in evaluation} >= {"english", "news_ja", "dialogue_keigo_ja"}
    calibration_text = "\n".join(_content(s) for s in load_samples("builtin"))
    for sample in evaluation:
        for line in _content(sample).splitlines():
            if len(line) > 20:
                assert line not in calibration_text, line
    assert BUILTIN_EVALUATION != BUILTIN_CALIBRATION


def test_tokens_shape_determinism_and_chat_template(tokenizer) -> None:
    first = calibration_tokens("builtin", 4, 512, tokenizer=tokenizer)
    second = calibration_tokens("builtin", 4, 512, tokenizer=tokenizer)
    assert first.tokens.shape == (4, 512) and first.tokens.dtype == torch.long
    assert torch.equal(first.tokens, second.tokens)
    assert first.describe()["tokens_sha256"] == second.describe()["tokens_sha256"]
    assert first.tokens[0, 0].item() == BOS_ID
    chat = next(s for s in load_samples("builtin") if s.messages)
    ids = chat.render(tokenizer)
    assert ids.count(BOS_ID) == 1 and "<|start_header_id|>assistant" in tokenizer.decode(ids)


def test_user_jsonl_and_txt(tmp_path: Path, tokenizer) -> None:
    jsonl = tmp_path / "mine.jsonl"
    rows = [{"text": "吾輩は猫である。"}, {"messages": [{"role": "user", "content": "こんにちは"}]}]
    jsonl.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n\n")
    assert len(read_jsonl(jsonl)) == 2
    batch = calibration_tokens(jsonl, 3, 16, tokenizer=tokenizer)
    assert batch.tokens.shape == (3, 16) and batch.passes > 1  # short file: reused, and it says so
    txt = tmp_path / "mine.txt"
    txt.write_text("一段落目です。\n\n二段落目です。\n\n\n")
    assert [s.text for s in load_samples(txt)] == ["一段落目です。", "二段落目です。"]


def test_bad_calibration_files(tmp_path: Path, tokenizer) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(click.ClickException, match="is empty"):
        load_samples(empty)
    broken = tmp_path / "broken.jsonl"
    broken.write_text('{"text": "ok"}\n{"text": oops}\n')
    with pytest.raises(SwallowTrtError, match="line 2: not valid JSON"):  # common/jsonl.py
        load_samples(broken)
    wrong = tmp_path / "wrong.jsonl"
    wrong.write_text('{"text": "ok"}\n{"prompt": "x"}\n')
    with pytest.raises(click.ClickException, match="line 2: needs a non-empty 'text'"):
        load_samples(wrong)
    with pytest.raises(click.ClickException, match="not found"):
        load_samples(tmp_path / "missing.jsonl")
    with pytest.raises(click.ClickException, match="exceeds the model's context"):
        calibration_tokens("builtin", 1, 4096, tokenizer=tokenizer, max_position_embeddings=2048)
