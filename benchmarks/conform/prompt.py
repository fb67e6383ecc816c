"""What conform asks and what it looks for in the answer.

The prompt asks the model to repeat a Japanese sentence full of what breaks streaming detokenization
(the chain test model's sentence, so that model answers it whatever it is asked, and a real
instruction-tuned model exercises the same characters). The character classes are searched in the
non-streamed answer; each class found there must come back, in the same order, on every path.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from trt_build.source.chain_model import CHAIN_SENTENCE

INSTRUCTION = "次の文を一字一句そのまま繰り返してください。説明や前置きは不要です。"


def conform_messages(sentence: str = CHAIN_SENTENCE) -> list[dict[str, str]]:
    """The chat conversation every path sends (chat endpoints as messages, the rest rendered)."""
    return [{"role": "user", "content": f"{INSTRUCTION}\n\n{sentence}"}]


@dataclass(frozen=True)
class RenderedPrompt:
    """The conversation rendered by the model's chat template, and what one BOS means for it."""

    messages: list[dict[str, str]]
    text: str  # with the template's BOS, as Triton clients that render the template send it
    text_without_bos: str  # for /v1/completions, where the server adds the BOS
    tokens: int  # the tokenizer's count of `text`: exactly one BOS


def render_prompt(tokenizer: Any, sentence: str = CHAIN_SENTENCE) -> RenderedPrompt:
    messages = conform_messages(sentence)
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    bos = tokenizer.bos_token or ""
    without_bos = text[len(bos) :] if bos and text.startswith(bos) else text
    tokens = len(tokenizer.encode(text, add_special_tokens=False))
    return RenderedPrompt(messages, text, without_bos, tokens)


# Special-token text that must never reach the client: the end of a turn and the next header.
LEAKED_TEXT = ("<|eot_id|>", "<|start_header_id|>", "<|end_header_id|>", "<|eom_id|>", "<|end_of_text|>")

# Pictographs, without the regional indicators (U+1F1E6-1F1FF) that pair into flags.
_EMOJI = "\U0001f000-\U0001f1e5\U0001f200-\U0001faff\u2600-\u27bf\u2b00-\u2bff\u2300-\u23ff"
# name -> the pattern of one occurrence. Searched in the non-streamed answer; what it holds must survive.
CHARACTER_CLASSES: dict[str, re.Pattern[str]] = {
    "emoji": re.compile(f"[{_EMOJI}]"),
    "ZWJ sequence": re.compile(f"[{_EMOJI}][\ufe0f\U0001f3fb-\U0001f3ff]?\u200d[{_EMOJI}]"),
    "flag": re.compile("[\U0001f1e6-\U0001f1ff]{2}"),
    "variation selector": re.compile("[\ufe00-\ufe0f\U000e0100-\U000e01ef]"),
    "half-width kana": re.compile("[\uff61-\uff9f]"),
    "combining mark": re.compile("[\u0300-\u036f\u3099\u309a]"),
    "kanji outside the BMP": re.compile("[\U00020000-\U0003ffff]"),
}
SPLIT_KANJI = "kanji split across tokens"
_KANJI = re.compile("[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff\U00020000-\U0003ffff]")


def shown(piece: str) -> str:
    """A piece of text as a reader can see it: marks, joiners and selectors as \\u escapes."""
    return "".join(
        f"\\u{ord(ch):04x}" if unicodedata.category(ch) in ("Mn", "Me", "Cf") else ch for ch in piece
    )


def character_occurrences(text: str, tokenizer: Any) -> dict[str, list[str]]:
    """Every class -> its occurrences in `text`, in order. Split kanji are those the tokenizer spreads
    over more than one token when they stand alone."""
    found = {name: pattern.findall(text) for name, pattern in CHARACTER_CLASSES.items()}
    found[SPLIT_KANJI] = [
        kanji for kanji in _KANJI.findall(text) if len(tokenizer.encode(kanji, add_special_tokens=False)) > 1
    ]
    return found
