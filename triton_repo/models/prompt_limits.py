"""Refuse a prompt that cannot fit the model by its size, before any tokenizing or template work.

One token stands for at most `longest_token_bytes` bytes of text (Llama 3: 128, a run of spaces; the
special tokens by their text), so a text of more than `max_input_len` times that many UTF-8 bytes has
more than `max_input_len` tokens whatever it says: it is refused at once, where tokenizing it would take
seconds and hold up every request queued behind it (tokenizing runs at about half a megabyte a second).
Below that bound, the token count decides. The bound assumes the tokenizer's normalizer never deletes
text (Llama 3's byte-level BPE has none).

Chat `messages` are bounded the same way before they are parsed (JSON spends at most six bytes on a byte
of text) and before rendering (their text must fit the bound), and the chat template renders in Jinja's
sandbox with its output capped at the bound: a template that outgrows it stops there. Rendering uses the
environment `apply_chat_template` uses, so the prompt is the same as the tokenizer's own rendering.

Copied next to the models that render or tokenize prompts (they run where swallow-trt is not
installed), so it imports only the standard library and what the tokenizer brings (jinja2).
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

JSON_BYTES_PER_TEXT_BYTE = 6  # the longest JSON escape, \u00XX, for one byte
MAX_WORDS = 1024  # stop_words / bad_words entries, each tokenized on its own


class PromptRefused(ValueError):
    """A prompt the model cannot take; the message names the field and says what to do."""


def longest_token_bytes(tokenizer) -> int:
    """The most UTF-8 bytes one token of `tokenizer` stands for."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or backend.decoder is None:  # a slow tokenizer: the token strings bound it
        return max(len(token.encode("utf-8")) for token in tokenizer.get_vocab())
    decoder = backend.decoder
    return max(len(decoder.decode([token]).encode("utf-8")) for token in backend.get_vocab(True))


def text_bytes(value: Any) -> int:
    """The UTF-8 bytes of every string inside a JSON value (a message's content may be a list of parts)."""
    if isinstance(value, str):
        return len(value.encode("utf-8"))
    if isinstance(value, dict):
        return sum(text_bytes(item) for item in value.values())
    if isinstance(value, list):
        return sum(text_bytes(item) for item in value)
    return 0


def compile_chat_template(source: str):
    """The template in the sandboxed environment `apply_chat_template` builds (transformers' own when it
    has one to share, else the same settings)."""
    try:
        from transformers.utils.chat_template_utils import _compile_jinja_template

        return _compile_jinja_template(source)
    except ImportError:
        import jinja2
        from jinja2.ext import loopcontrols
        from jinja2.sandbox import ImmutableSandboxedEnvironment

        def raise_exception(message):
            raise jinja2.exceptions.TemplateError(message)

        environment = ImmutableSandboxedEnvironment(
            trim_blocks=True, lstrip_blocks=True, extensions=[loopcontrols]
        )
        environment.filters["tojson"] = lambda value, indent=None: json.dumps(
            value, ensure_ascii=False, indent=indent
        )
        environment.globals["raise_exception"] = raise_exception
        return environment.from_string(source)


class PromptLimits:
    """The size checks of one model: `max_input_len` tokens, `max_bytes` bytes of text."""

    def __init__(self, tokenizer, max_input_len: int):
        self.tokenizer = tokenizer
        self.max_input_len = max_input_len
        self.max_bytes = longest_token_bytes(tokenizer) * max_input_len
        self.template = compile_chat_template(tokenizer.chat_template) if tokenizer.chat_template else None

    def too_large(self, field: str, size: int, what: str = "bytes") -> PromptRefused:
        return PromptRefused(
            f"{field} is {size} {what}; this model reads at most {self.max_input_len} tokens (max_input_len), "
            f"and no text over {self.max_bytes} bytes fits in them: shorten {field}."
        )

    def check_bytes(self, field: str, sizes: Iterable[int], per_text_byte: int = 1) -> None:
        """Refuse raw inputs (bytes, before decoding or parsing) that cannot hold a prompt that fits;
        `per_text_byte` is what the encoding may spend on one byte of text (JSON: six)."""
        for size in sizes:
            if size > self.max_bytes * per_text_byte:
                if per_text_byte == 1:
                    raise self.too_large(field, size)
                raise PromptRefused(
                    f"{field} is {size} bytes; this model reads at most {self.max_input_len} tokens "
                    f"(max_input_len), which no {field} over {self.max_bytes * per_text_byte} bytes can fit in: "
                    f"shorten {field}."
                )

    def check_tokens(self, field: str, count: int) -> None:
        if count > self.max_input_len:
            raise PromptRefused(
                f"{field} is {count} tokens; this model accepts at most {self.max_input_len} (max_input_len): "
                f"shorten {field}."
            )

    def check_words(self, field: str, words: list[str]) -> None:
        if len(words) > MAX_WORDS:
            raise PromptRefused(f"{field} has {len(words)} entries; send at most {MAX_WORDS}.")
        total = sum(len(word.encode("utf-8")) for word in words)
        if total > self.max_bytes:
            raise self.too_large(field, total)

    def messages(self, raw: str) -> list[dict[str, Any]]:
        """The conversation of a `messages` JSON text, checked for shape and size before rendering."""
        try:
            conversation = json.loads(raw)
        except (json.JSONDecodeError, RecursionError) as error:
            detail = error.msg if isinstance(error, json.JSONDecodeError) else "nested too deeply"
            raise PromptRefused(
                f'messages is not valid JSON ({detail}): send a list of {{"role": ..., "content": ...}} objects.'
            ) from None
        if not isinstance(conversation, list) or not all(
            isinstance(m, dict) and "role" in m and "content" in m for m in conversation
        ):
            raise PromptRefused('messages must be a JSON list of {"role": ..., "content": ...} objects.')
        size = text_bytes(conversation)
        if size > self.max_bytes:
            raise self.too_large("messages", size, "bytes of text")
        return conversation

    def render(self, conversation: list[dict[str, Any]], field: str = "messages") -> str:
        """The chat template applied with a generation prompt, its output capped at `max_bytes`."""
        if self.template is None:
            raise PromptRefused(
                f"this model's tokenizer has no chat template: send text_input alone, without {field}."
            )
        import jinja2

        variables = {
            **self.tokenizer.special_tokens_map,
            "messages": conversation,
            "tools": None,
            "documents": None,
            "add_generation_prompt": True,
        }
        pieces, size = [], 0
        try:
            for piece in self.template.generate(**variables):
                size += len(piece.encode("utf-8"))
                if size > self.max_bytes:
                    raise PromptRefused(
                        f"{field} renders to over {self.max_bytes} bytes with the chat template, more than "
                        f"{self.max_input_len} tokens (max_input_len) can hold: shorten {field}."
                    )
                pieces.append(piece)
        except jinja2.exceptions.TemplateError as error:
            raise PromptRefused(f"The chat template refused {field}: {error}") from None
        return "".join(pieces)
