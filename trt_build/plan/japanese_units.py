"""Japanese traffic in Japanese units: characters -> tokens at the Swallow (Llama 3.1) tokenizer's measured
characters per token on the built-in Japanese prompt set (the one `bench --dataset ja-chat` sends).

The ratio is measured, never assumed: the message texts of the set are encoded with the offline tokenizer
(without special tokens or the chat template), and total characters / total tokens is cached per
(tokenizer.json, set) hash, so a changed tokenizer or set is measured again. Torch-free: only `tokenizers`.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from dataclasses import asdict, dataclass
from pathlib import Path

from benchmarks.load.datasets import JA_CHAT, read_jsonl
from trt_build.common.errors import SwallowTrtError
from trt_build.source.tokenizer import cache_dir, ensure_tokenizer


@dataclass(frozen=True)
class CharsPerToken:
    """A measured ratio and what it was measured on."""

    characters: int
    tokens: int
    texts: int
    prompt_set: str  # the set's file, relative to the repository when it is the built-in one
    tokenizer: str  # the tokenizer directory and its tokenizer.json hash

    @property
    def ratio(self) -> float:
        return self.characters / self.tokens

    @property
    def measured_on(self) -> str:
        return f"{self.texts} texts of {self.prompt_set}, {self.characters} characters / {self.tokens} tokens"

    def tokens_for(self, characters: int) -> int:
        """Tokens for `characters` characters, rounded up (a length sized in tokens must hold them)."""
        return max(1, math.ceil(characters / self.ratio))


def set_texts(path: Path) -> list[str]:
    """The texts a prompt set sends: every message's content, or the prompt / text of a row."""
    texts = []
    for row in read_jsonl(path):
        if "messages" in row:
            texts += [str(message.get("content", "")) for message in row["messages"]]
        else:
            texts.append(str(row.get("prompt", row.get("text", ""))))
    return [text for text in texts if text]


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _display(path: Path) -> str:
    root = Path(__file__).resolve().parents[2]
    resolved = path.resolve()
    return str(resolved.relative_to(root)) if resolved.is_relative_to(root) else str(resolved)


def measure(tokenizer_dir: Path | None = None, prompt_set: Path = JA_CHAT) -> CharsPerToken:
    """Characters per token of the tokenizer (default: the offline Llama 3.1 one) on `prompt_set`, from the
    cache when the same tokenizer and set were measured before."""
    from tokenizers import Tokenizer

    tokenizer_dir = tokenizer_dir or ensure_tokenizer()
    tokenizer_json = tokenizer_dir / "tokenizer.json"
    if not tokenizer_json.is_file():
        raise SwallowTrtError(
            f"{tokenizer_dir} has no tokenizer.json to measure characters per token with.",
            "Pass a Hugging Face tokenizer directory; `swallow-trt tokenizer` builds the Llama 3.1 one.",
        )
    key = hashlib.sha256(f"{_digest(tokenizer_json)} {_digest(prompt_set)}".encode()).hexdigest()[:16]
    cached = cache_dir() / "japanese-units" / f"{key}.json"
    if cached.is_file():
        try:
            return CharsPerToken(**json.loads(cached.read_text(encoding="utf-8")))
        except (TypeError, ValueError):
            pass  # an unreadable cache entry is measured again
    texts = set_texts(prompt_set)
    encodings = Tokenizer.from_file(str(tokenizer_json)).encode_batch(texts, add_special_tokens=False)
    result = CharsPerToken(
        characters=sum(len(text) for text in texts),
        tokens=sum(len(encoding.ids) for encoding in encodings),
        texts=len(texts),
        prompt_set=_display(prompt_set),
        tokenizer=f"{tokenizer_dir} (tokenizer.json sha256 {_digest(tokenizer_json)[:12]})",
    )
    cached.parent.mkdir(parents=True, exist_ok=True)
    partial = cached.with_suffix(f".{os.getpid()}.tmp")
    partial.write_text(json.dumps(asdict(result), ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(partial, cached)
    return result


@dataclass(frozen=True)
class Conversion:
    """One length given in characters, in tokens."""

    name: str  # ISL | OSL
    characters: int
    tokens: int
    ratio: CharsPerToken

    def describe(self) -> str:
        return (
            f"{self.name} {self.characters} characters = {self.tokens} tokens at {self.ratio.ratio:.3f} "
            f"chars/token (measured on {self.ratio.measured_on})"
        )

    def as_dict(self) -> dict[str, object]:
        return {
            "characters": self.characters,
            "tokens": self.tokens,
            "chars_per_token": self.ratio.ratio,
            "measured_on": asdict(self.ratio),
        }
