"""A path is one way a client reaches the model (front, protocol, endpoint, streamed or not, with or
without a request id); an answer is what one request on it got back.

Every streamed path names the non-streamed path of the same front and endpoint as its reference: with
greedy decoding the two must be equal byte for byte. A path's `send` never raises: whatever went wrong
is the answer's `error`, so one broken path cannot hide the others.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field


@dataclass
class Answer:
    text: str = ""
    deltas: list[str] = field(default_factory=list)  # the text of each streamed response, in order
    prompt_tokens: int | None = None  # as the server reports them (None: not reported)
    completion_tokens: int | None = None
    total_tokens: int | None = None
    finish_reason: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class ClientPath:
    name: str  # e.g. ensemble/http-stream/no-id, chat/stream
    streamed: bool
    reference: str  # the non-streamed path this one must equal (itself for a reference)
    send: Callable[[], Awaitable[Answer]]


def failed(error: BaseException | str) -> Answer:
    """An answer that is only an error, named by its type when it is an exception."""
    if isinstance(error, BaseException):
        error = f"{type(error).__name__}: {error}".strip().rstrip(":")
    return Answer(error=str(error)[:500])
