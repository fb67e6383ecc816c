"""Incremental detokenization that never splits a character (TGI / vLLM prefix and read offsets).

Llama 3's byte-level BPE spreads many kanji and every 4-byte emoji over 2-4 tokens. Decoding each
streamed token alone yields U+FFFD for the fragments (tensorrtllm_backend #192, #493, #606). Here each
request keeps `prefix_offset` and `read_offset` into its token list: the window `ids[prefix:]` is
decoded and compared with the already-emitted `ids[prefix:read]`; new text is emitted only when it
grows and does not end in U+FFFD (an unfinished UTF-8 sequence), and then both offsets move forward.
So the deltas concatenate to exactly the full decode, and each token costs one decode of a few
tokens, however long the output grows.

This module is copied next to the Python-backend models of a generated repository (they run in
containers where swallow-trt is not installed), so it depends on nothing but the standard library.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

REPLACEMENT = "\ufffd"
# A tail that stays unfinished over this many tokens is garbage the model keeps producing, not a split
# character (one needs at most 4 bytes): commit it so the decode window stays bounded.
MAX_WINDOW_TOKENS = 64

Decode = Callable[[Sequence[int]], str]


class IncrementalDetokenizer:
    """Per-request state: feed token ids with `push`, end with `flush`; the deltas form the full text.

    `ids[prefix_offset:read_offset]` is context already emitted whose decode ends on a whole character;
    `emitted` counts characters of the window beyond that context already sent, i.e. complete
    characters that were followed by an unfinished one in the same token.
    """

    def __init__(self, decode: Decode):
        self.decode = decode
        self.ids: list[int] = []
        self.prefix_offset = 0
        self.read_offset = 0
        self.emitted = 0

    def push(self, new_ids: Iterable[int]) -> str:
        """Append tokens; return the text they complete (possibly empty while a character is split)."""
        self.ids.extend(int(token) for token in new_ids)
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        window_text = self.decode(self.ids[self.prefix_offset :])
        start = len(prefix_text) + self.emitted
        unfinished = window_text.endswith(REPLACEMENT)
        if unfinished and len(self.ids) - self.prefix_offset < MAX_WINDOW_TOKENS:
            stable = window_text.rstrip(REPLACEMENT)  # everything before the unfinished character
            delta = stable[start:]
            self.emitted += len(delta)
            return delta
        if len(window_text) <= len(prefix_text):
            return ""  # e.g. a skipped special token: nothing to show yet
        self.prefix_offset, self.read_offset, self.emitted = self.read_offset, len(self.ids), 0
        return window_text[start:]

    def flush(self) -> str:
        """The text still held back (an unfinished character at the very end decodes as U+FFFD)."""
        prefix_text = self.decode(self.ids[self.prefix_offset : self.read_offset])
        window_text = self.decode(self.ids[self.prefix_offset :])
        delta = window_text[len(prefix_text) + self.emitted :]
        self.prefix_offset = self.read_offset = len(self.ids)
        self.emitted = 0
        return delta


def stream_text(decode: Decode, chunks: Iterable[Sequence[int]]) -> list[str]:
    """All deltas for a sequence of token chunks, the flush included (handy for tests and benchmarks)."""
    detokenizer = IncrementalDetokenizer(decode)
    deltas = [detokenizer.push(chunk) for chunk in chunks]
    deltas.append(detokenizer.flush())
    return deltas
