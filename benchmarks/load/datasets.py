"""Benchmark prompts: synthetic Japanese text of exact token lengths, a built-in Japanese chat set, JSONL.

Every count uses the model's own tokenizer (Llama 3.1 for Swallow), never a stand-in: LLMPerf's
Llama-2 tokenizer miscounts Japanese badly (docs/metrics.md §2.3). Input lengths count the
prompt's own tokens, without special tokens; a server whose preprocessing adds BOS sees one more.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import json_lines
from trt_build.source.tokenizer import load_local_tokenizer

DATA_DIR = Path(__file__).parent / "data"
JA_CORPUS = DATA_DIR / "ja_corpus.txt"
JA_CHAT = DATA_DIR / "ja_chat.jsonl"
BUILTIN = ("synthetic", "ja-chat")


@dataclass(frozen=True)
class BenchRequest:
    """One prompt to send. `prompt` is the text for raw endpoints (chat template already applied);
    `messages` is kept for OpenAI chat endpoints."""

    prompt: str
    input_tokens: int
    output_tokens: int  # max_tokens requested (and min_tokens with --ignore-eos)
    messages: tuple[dict[str, str], ...] | None = None


def load_tokenizer(directory: Path):
    """The model's tokenizer from a local directory (no hub access, no code from the directory)."""
    directory = Path(directory)
    if not (directory / "tokenizer.json").exists() and not (directory / "tokenizer_config.json").exists():
        raise SwallowTrtError(
            f"{directory} holds no tokenizer (tokenizer.json / tokenizer_config.json).",
            "Pass the model directory or `--tokenizer` pointing at one; `swallow-trt tokenizer` builds the "
            "Llama 3.1 one.",
        )
    return load_local_tokenizer(directory)


def count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer.encode(text, add_special_tokens=False))


def sample_lengths(rng: random.Random, mean: int, stddev: float, count: int) -> list[int]:
    """Normal lengths (the trtllm-bench / genai-perf convention), rounded, at least 1."""
    if stddev <= 0:
        return [mean] * count
    return [max(1, round(rng.gauss(mean, stddev))) for _ in range(count)]


def exact_length_text(tokenizer: Any, corpus_ids: list[int], length: int, start: int) -> str:
    """Text of exactly `length` tokens cut from the corpus at `start`.

    Decoding a window of ids and encoding the text again can merge or split tokens at the edges, so the
    window is grown or shrunk until the round trip gives the exact length.
    """
    window = length
    for _ in range(64):
        ids = [corpus_ids[(start + i) % len(corpus_ids)] for i in range(window)]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        got = count_tokens(tokenizer, text)
        if got == length:
            return text
        window += 1 if got < length else -1
        window = max(window, 1)
    raise SwallowTrtError(f"Could not make a prompt of exactly {length} tokens from the corpus.")


def synthetic(
    tokenizer: Any, count: int, isl: int, isl_stddev: float, osl: int, osl_stddev: float, seed: int = 0
) -> list[BenchRequest]:
    """Prompts of exact token lengths cut from Japanese prose at random offsets."""
    rng = random.Random(seed)
    corpus_ids = tokenizer.encode(JA_CORPUS.read_text(encoding="utf-8"), add_special_tokens=False)
    inputs = sample_lengths(rng, isl, isl_stddev, count)
    outputs = sample_lengths(rng, osl, osl_stddev, count)
    requests = []
    for length, out in zip(inputs, outputs, strict=True):
        text = exact_length_text(tokenizer, corpus_ids, length, rng.randrange(len(corpus_ids)))
        requests.append(BenchRequest(text, length, out))
    return requests


def _chat_request(tokenizer: Any, messages: list[dict[str, str]], output_tokens: int) -> BenchRequest:
    prompt = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return BenchRequest(prompt, count_tokens(tokenizer, prompt), output_tokens, tuple(messages))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    rows = []
    for where, row in json_lines(path):
        if not isinstance(row, dict) or not ({"prompt", "text", "messages"} & row.keys()):
            raise SwallowTrtError(
                f'{where}: each line needs "prompt" (or "text") or "messages", '
                'optionally "output_tokens" / "max_tokens".'
            )
        rows.append(row)
    if not rows:
        raise SwallowTrtError(f"{path} has no prompts.")
    return rows


def from_rows(
    tokenizer: Any, rows: list[dict[str, Any]], osl: int, osl_stddev: float, seed: int = 0
) -> list[BenchRequest]:
    """Rows with "messages" get the chat template; rows with "prompt"/"text" are sent as they are."""
    rng = random.Random(seed)
    lengths = sample_lengths(rng, osl, osl_stddev, len(rows))
    requests = []
    for row, length in zip(rows, lengths, strict=True):
        length = int(row.get("output_tokens") or row.get("max_tokens") or length)
        if "messages" in row:
            requests.append(_chat_request(tokenizer, row["messages"], length))
        else:
            text = row.get("prompt", row.get("text"))
            requests.append(BenchRequest(text, count_tokens(tokenizer, text), length))
    return requests


def load_dataset(
    name: str,
    tokenizer: Any,
    count: int,
    isl: int = 128,
    isl_stddev: float = 0.0,
    osl: int = 128,
    osl_stddev: float = 0.0,
    seed: int = 0,
) -> list[BenchRequest]:
    """`count` requests from `synthetic`, `ja-chat` or a JSONL file (files and ja-chat repeat as needed)."""
    if name == "synthetic":
        return synthetic(tokenizer, count, isl, isl_stddev, osl, osl_stddev, seed)
    if name == "ja-chat":
        rows = read_jsonl(JA_CHAT)
    elif Path(name).is_file():
        rows = read_jsonl(Path(name))
    else:
        raise SwallowTrtError(
            f"--dataset {name!r}: use synthetic, ja-chat or the path of a JSONL file (one prompt per line)."
        )
    rng = random.Random(seed)
    order = list(range(len(rows)))
    rng.shuffle(order)
    chosen = [rows[order[i % len(order)]] for i in range(count)]
    return from_rows(tokenizer, chosen, osl, osl_stddev, seed)
