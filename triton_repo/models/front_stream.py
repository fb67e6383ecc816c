"""One client request's view of the engine's token stream: what each client response carries.

The front always has the engine stream (one response per token or few), whether or not the client
streams. `FrontStream` turns those engine responses into client responses:
  - text: incremental detokenization (detokenizer.py), so streamed deltas never split a character and
    concatenate byte for byte to the non-streamed text; the prompt is decoded first when echoed;
  - `num_output_tokens`: the tokens a client response covers (streamed counts add up to the total, as
    Triton's OpenAI frontend expects when it sums them);
  - the engine's statistics, combined over the engine responses a client response covers (per-token
    log probs and logits joined, the rest first or last; tensor_routes.ENGINE_STAT_OUTPUTS says which).
A streaming client gets a response whenever new complete characters exist; a non-streaming one gets
exactly one at the end (so HTTP `generate` works on the decoupled front).

This module is copied next to the front's `model.py` (it runs where swallow-trt is not installed), so it
depends on numpy only; the front hands it its detokenizer and the combining rules.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

LAST, FIRST = "last", "first"  # the rules of tensor_routes.ENGINE_STAT_OUTPUTS; an int is an axis to join


class Detokenizer(Protocol):
    def push(self, ids: Sequence[int]) -> str: ...
    def flush(self) -> str: ...


@dataclass
class ClientResponse:
    text: str
    output_tokens: int
    stats: dict[str, np.ndarray] = field(default_factory=dict)


def combine(held: dict[str, np.ndarray], new: dict[str, np.ndarray], rules: dict[str, str | int]) -> None:
    """Fold one engine response's statistics into those held for the next client response."""
    for name, value in new.items():
        how = rules.get(name, LAST)
        if name not in held or how == LAST:
            held[name] = value
        elif how != FIRST:
            held[name] = np.concatenate([held[name], value], axis=int(how))


class FrontStream:
    """Per request: `add` each engine response's tokens and statistics, then `finish`."""

    def __init__(
        self,
        detokenizer: Detokenizer,
        streaming: bool,
        rules: dict[str, str | int],
        echo_ids: Sequence[int] = (),
    ):
        self.streaming = streaming
        self.rules = rules
        self.detokenizer = detokenizer
        self.text = self.detokenizer.push(echo_ids) if echo_ids else ""
        self.tokens = 0
        self.stats: dict[str, np.ndarray] = {}

    def take(self) -> ClientResponse:
        response = ClientResponse(self.text, self.tokens, self.stats)
        self.text, self.tokens, self.stats = "", 0, {}
        return response

    def add(self, tokens: Sequence[int], stats: dict[str, np.ndarray]) -> ClientResponse | None:
        """A client response to send now (streaming, and new complete characters), else None."""
        combine(self.stats, stats, self.rules)
        self.tokens += len(tokens)
        self.text += self.detokenizer.push(tokens)
        return self.take() if self.streaming and self.text else None

    def finish(self) -> ClientResponse | None:
        """The last client response: the text held back (an unfinished character at the very end included,
        as the full decode shows it), or tokens not yet counted; None when a stream has nothing left."""
        self.text += self.detokenizer.flush()
        if self.streaming and not self.text and not self.tokens:
            return None
        return self.take()
