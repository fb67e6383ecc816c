"""Calibration and held-out evaluation text, turned into token batches with the Llama 3.1 tokenizer.

Sources: `builtin` (our Japanese-first set, `data/calib_ja.jsonl`), a user JSONL (one object per line
with `text`, or chat `messages` rendered with the tokenizer's chat template), or a plain .txt file
(paragraphs separated by blank lines). Samples are tokenized in file order, each starting with BOS,
concatenated, and cut into `calib_size` rows of `seq_len` tokens; when the text runs out it is reused
from the start (calibration statistics are maxima and means, so reuse only costs diversity, which the
summary reports). The built-in evaluation set (`data/eval_ja_en.jsonl`) is never used for calibration.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.common.jsonl import json_lines

DATA_DIR = Path(__file__).parent / "data"
BUILTIN_CALIBRATION = DATA_DIR / "calib_ja.jsonl"
BUILTIN_EVALUATION = DATA_DIR / "eval_ja_en.jsonl"
ROLES = ("system", "user", "assistant")


@dataclass(frozen=True)
class TextSample:
    """One calibration/evaluation sample: plain `text`, or chat `messages` ({role, content} dicts)."""

    text: str | None = None
    messages: tuple[tuple[str, str], ...] | None = None
    category: str = "user"

    def render(self, tokenizer: Any) -> list[int]:
        """Token ids with exactly one BOS: chat through the template (which adds BOS), text with BOS."""
        if self.messages is not None:
            chat = [{"role": role, "content": content} for role, content in self.messages]
            rendered = tokenizer.apply_chat_template(chat, tokenize=False)
            return tokenizer(rendered, add_special_tokens=False)["input_ids"]
        return tokenizer(self.text, add_special_tokens=True)["input_ids"]


@dataclass
class CalibrationTokens:
    """A [calib_size, seq_len] batch plus what it was made of (for the manifest)."""

    tokens: torch.Tensor
    source: str
    samples_available: int
    tokens_available: int
    passes: float  # tokens used / tokens available: > 1 means the text was reused
    categories: dict[str, int] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "calib_size": self.tokens.shape[0],
            "calib_seq_len": self.tokens.shape[1],
            "samples_available": self.samples_available,
            "tokens_available": self.tokens_available,
            "passes_over_text": round(self.passes, 3),
            "categories": self.categories,
            "tokens_sha256": hashlib.sha256(self.tokens.numpy().tobytes()).hexdigest(),
        }


def _sample_from_json(row: Any, where: str) -> TextSample:
    if not isinstance(row, dict):
        raise SwallowTrtError(f"{where}: expected a JSON object with 'text' or 'messages'")
    category = str(row.get("category", "user"))
    if isinstance(row.get("text"), str) and row["text"].strip():
        return TextSample(text=row["text"], category=category)
    messages = row.get("messages")
    if isinstance(messages, list) and messages:
        turns = []
        for message in messages:
            if (
                not isinstance(message, dict)
                or message.get("role") not in ROLES
                or not isinstance(message.get("content"), str)
            ):
                raise SwallowTrtError(
                    f"{where}: every message needs a role ({'/'.join(ROLES)}) and a string content."
                )
            turns.append((message["role"], message["content"]))
        return TextSample(messages=tuple(turns), category=category)
    raise SwallowTrtError(f"{where}: needs a non-empty 'text' string or a non-empty 'messages' list")


def read_jsonl(path: Path) -> list[TextSample]:
    return [_sample_from_json(row, where) for where, row in json_lines(path)]


def read_text_file(path: Path) -> list[TextSample]:
    paragraphs = Path(path).read_text(encoding="utf-8").replace("\r\n", "\n").split("\n\n")
    return [TextSample(text=p.strip(), category="text") for p in paragraphs if p.strip()]


def load_samples(source: str | Path) -> list[TextSample]:
    """`builtin`, a .jsonl file or a .txt file -> samples, in order; clear errors for bad input."""
    if str(source) == "builtin":
        return read_jsonl(BUILTIN_CALIBRATION)
    path = Path(source)
    if not path.is_file():
        raise SwallowTrtError(f"calibration data {path} not found", "(use builtin, a .jsonl or a .txt file).")
    readers = {".jsonl": read_jsonl, ".json": read_jsonl, ".txt": read_text_file}
    if path.suffix not in readers:
        raise SwallowTrtError(f"{path}: calibration data must be .jsonl (text or messages) or .txt")
    samples = readers[path.suffix](path)
    if not samples:
        raise SwallowTrtError(f"{path} is empty: it holds no calibration text")
    return samples


def load_eval_samples() -> list[TextSample]:
    """The held-out Japanese + English evaluation set (never used for calibration)."""
    return read_jsonl(BUILTIN_EVALUATION)


def calibration_tokens(
    source: str | Path = "builtin",
    calib_size: int = 128,
    seq_len: int = 512,
    tokenizer: Any = None,
    max_position_embeddings: int | None = None,
) -> CalibrationTokens:
    """`calib_size` x `seq_len` token ids (int64) from `source`, deterministic for a given source."""
    if calib_size < 1 or seq_len < 2:
        raise SwallowTrtError("--calib-size must be >= 1 and --calib-seq-len >= 2")
    if max_position_embeddings is not None and seq_len > max_position_embeddings:
        raise SwallowTrtError(
            f"--calib-seq-len {seq_len} exceeds the model's context (max_position_embeddings "
            f"{max_position_embeddings});",
            f"use a length of at most {max_position_embeddings}.",
        )
    if tokenizer is None:
        from transformers import AutoTokenizer

        from trt_build.source.tokenizer import ensure_tokenizer

        tokenizer = AutoTokenizer.from_pretrained(ensure_tokenizer())
    samples = load_samples(source)
    stream: list[int] = []
    categories: dict[str, int] = {}
    for sample in samples:
        stream += sample.render(tokenizer)
        categories[sample.category] = categories.get(sample.category, 0) + 1
    needed = calib_size * seq_len
    repeats = -(-needed // len(stream))
    flat = torch.tensor((stream * repeats)[:needed], dtype=torch.long)
    return CalibrationTokens(
        tokens=flat.reshape(calib_size, seq_len),
        source=str(source),
        samples_available=len(samples),
        tokens_available=len(stream),
        passes=needed / len(stream),
        categories=dict(sorted(categories.items())),
    )
