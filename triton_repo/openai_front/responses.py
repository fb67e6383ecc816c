"""What the server sends, as the `openai` package's own response types, and server-sent events of them.

A stream is: for chat, a first chunk with the assistant role; a chunk per text delta; a chunk with the
finish_reason; with `stream_options.include_usage`, a last chunk with the usage and no choices (every
chunk before it has `"usage": null`); then `data: [DONE]`.
"""

from __future__ import annotations

import json
import time
import uuid

from openai.types import Completion, CompletionChoice, CompletionUsage
from openai.types.chat import ChatCompletion, ChatCompletionChunk, ChatCompletionMessage
from openai.types.chat.chat_completion import Choice as ChatChoice
from openai.types.chat.chat_completion_chunk import Choice as ChunkChoice
from openai.types.chat.chat_completion_chunk import ChoiceDelta
from pydantic import BaseModel

from triton_repo.openai_front.generate import Finish

DONE = "data: [DONE]\n\n"


def sse(event: BaseModel | dict) -> str:
    """One server-sent event; fields set to None on purpose (`"finish_reason": null`) are kept."""
    data = event.model_dump_json(exclude_unset=True) if isinstance(event, BaseModel) else json.dumps(event)
    return f"data: {data}\n\n"


def usage(finish: Finish) -> CompletionUsage:
    return CompletionUsage(
        prompt_tokens=finish.prompt_tokens,
        completion_tokens=finish.completion_tokens,
        total_tokens=finish.prompt_tokens + finish.completion_tokens,
    )


class Answer:
    """The id, time and model name every object of one answer shares."""

    def __init__(self, model: str, chat: bool, include_usage: bool = False):
        self.id = f"{'chatcmpl' if chat else 'cmpl'}-{uuid.uuid4().hex}"
        self.created = int(time.time())
        self.model = model
        self.chat = chat
        self.include_usage = include_usage

    def _usage_field(self) -> dict[str, None]:
        return {"usage": None} if self.include_usage else {}

    def chunk(self, text: str | None = None, finish: Finish | None = None, role: bool = False) -> BaseModel:
        """A streamed chunk with a text delta, or the finish_reason, or (chat) the assistant role."""
        reason = finish.reason if finish else None
        if not self.chat:
            choice = CompletionChoice.model_construct(
                index=0, text=text or "", logprobs=None, finish_reason=reason
            )
            return Completion.model_construct(
                id=self.id, object="text_completion", created=self.created, model=self.model,
                choices=[choice], **self._usage_field(),
            )  # fmt: skip
        delta = ChoiceDelta(role="assistant", content="") if role else ChoiceDelta()
        if text is not None:
            delta = ChoiceDelta(content=text)
        choice = ChunkChoice(index=0, delta=delta, finish_reason=reason)
        return ChatCompletionChunk(
            id=self.id, object="chat.completion.chunk", created=self.created, model=self.model,
            choices=[choice], **self._usage_field(),
        )  # fmt: skip

    def usage_chunk(self, finish: Finish) -> BaseModel:
        """The last chunk of a stream that asked for usage: no choices."""
        kind = ChatCompletionChunk if self.chat else Completion
        obj = "chat.completion.chunk" if self.chat else "text_completion"
        return kind(
            id=self.id, object=obj, created=self.created, model=self.model, choices=[], usage=usage(finish)
        )

    def whole(self, text: str, finish: Finish) -> BaseModel:
        """The non-streamed answer."""
        if self.chat:
            message = ChatCompletionMessage(role="assistant", content=text)
            return ChatCompletion(
                id=self.id, object="chat.completion", created=self.created, model=self.model,
                choices=[ChatChoice(index=0, message=message, finish_reason=finish.reason, logprobs=None)],
                usage=usage(finish),
            )  # fmt: skip
        return Completion(
            id=self.id, object="text_completion", created=self.created, model=self.model,
            choices=[CompletionChoice(index=0, text=text, finish_reason=finish.reason, logprobs=None)],
            usage=usage(finish),
        )  # fmt: skip
