"""Cumulative streamed text -> deltas that never split a character (the `llmapi` model's stream).

TensorRT-LLM's Triton `llmapi` model sends, in each streamed response, the whole text generated so far
(`CompletionOutput.text`, not `text_diff`; docs/triton.md §4.4), while clients of the
`inflight_batcher_llm` names (genai-perf, Triton's OpenAI frontend, `swallow-trt chat`) expect each
response to carry only the new text. `CumulativeText` turns one into the other:
  - a trailing U+FFFD (an unfinished UTF-8 sequence, e.g. half of a kanji or an emoji whose bytes are
    spread over byte-level tokens) is held back until the character is complete;
  - the deltas concatenate to exactly the final text: whatever is left goes out with `finish`, a
    U+FFFD included when generation really ended inside a character (as in the full decode).
If the server ever rewrote text it already sent (its detokenizer only appends), nothing sent can be
taken back: the deltas continue after the characters already sent, and `rewritten` counts it.

This module is copied next to the front model of a generated repository (it runs in containers where
swallow-trt is not installed), so it depends on nothing but the standard library.
"""

from __future__ import annotations

REPLACEMENT = "\ufffd"


class CumulativeText:
    """Per-request state: `push` each cumulative text, `finish` with the last one; returns deltas."""

    def __init__(self) -> None:
        self.sent = ""
        self.rewritten = 0

    def _delta(self, text: str) -> str:
        if not text.startswith(self.sent):
            self.rewritten += 1
        delta = text[len(self.sent) :]
        self.sent += delta
        return delta

    def push(self, cumulative: str) -> str:
        """The new complete characters of `cumulative` (empty while a character is still split)."""
        return self._delta(cumulative.rstrip(REPLACEMENT))

    def finish(self, final: str | None = None) -> str:
        """The rest of the final text (the last cumulative text when `final` is None)."""
        return self._delta(self.sent if final is None else final)


def deltas(cumulative_texts: list[str]) -> list[str]:
    """All deltas of a stream of cumulative texts, the last one being final (for tests and tools)."""
    state = CumulativeText()
    out = [state.push(text) for text in cumulative_texts[:-1]]
    out.append(state.finish(cumulative_texts[-1] if cumulative_texts else ""))
    return out
