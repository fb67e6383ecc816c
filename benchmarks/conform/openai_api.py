"""OpenAI-compatible paths (trtllm-serve, Dynamo, vLLM, NIM, our front): chat and completions, each
non-streamed (the reference) and streamed, through the official `openai` client.

Chat sends the conversation as messages, so the server applies its chat template; completions send
the same conversation rendered without its BOS, which the server adds: either way the prompt must
count exactly one BOS. Some servers feed a completions prompt to the model as it is, adding no BOS
(Dynamo's frontend, docs/upstream-2026.md §5.6): a one-token probe finds out (`probe_completions_bos`),
and then the client sends the rendered prompt with its BOS, as it must to such a server. Streams ask for usage (`stream_options.include_usage`); decoding is greedy
(temperature 0).
"""

from __future__ import annotations

from typing import Any

import openai

from benchmarks.conform.paths import Answer, ClientPath, failed
from benchmarks.conform.prompt import RenderedPrompt

CHAT, COMPLETIONS = "chat", "completions"


class OpenAIEndpoint:
    """One OpenAI-compatible server's model, as conform paths."""

    def __init__(
        self,
        base: str,
        api_key: str | None,
        prompt: RenderedPrompt,
        max_tokens: int,
        timeout_s: float,
    ):
        self.client = openai.AsyncOpenAI(
            base_url=f"{base.removesuffix('/v1')}/v1",
            api_key=api_key or "not-needed",
            timeout=timeout_s,
            max_retries=0,  # a retried request would hide a failure
        )
        self.prompt, self.max_tokens = prompt, max_tokens
        self.model = ""
        self.completions_prompt = prompt.text_without_bos

    async def probe_completions_bos(self) -> str | None:
        """Send the completions prompt with its BOS when the server adds none; returns a note saying so."""
        try:
            probe = await self.client.completions.create(
                model=self.model, prompt=self.prompt.text_without_bos, max_tokens=1, temperature=0
            )
        except (openai.OpenAIError, ValueError):
            return None  # the completions paths report the failure themselves
        counted = probe.usage.prompt_tokens if probe.usage else None
        if counted != self.prompt.tokens - 1:
            return None
        self.completions_prompt = self.prompt.text
        return "completions: the server adds no BOS to the prompt, so the prompt is sent with its BOS"

    async def choose_model(self, requested: tuple[str, ...]) -> str:
        """The requested model, else the first the server lists."""
        if requested:
            self.model = requested[0]
        else:
            listed = await self.client.models.list()
            if not listed.data:
                raise ValueError("GET /v1/models lists no model")
            self.model = listed.data[0].id
        return self.model

    def paths(self) -> list[ClientPath]:
        return [
            ClientPath(CHAT, False, CHAT, lambda: self.send(CHAT, False)),
            ClientPath(f"{CHAT}/stream", True, CHAT, lambda: self.send(CHAT, True)),
            ClientPath(COMPLETIONS, False, COMPLETIONS, lambda: self.send(COMPLETIONS, False)),
            ClientPath(f"{COMPLETIONS}/stream", True, COMPLETIONS, lambda: self.send(COMPLETIONS, True)),
        ]

    def request(self, endpoint: str, streamed: bool) -> dict[str, Any]:
        request: dict[str, Any] = {"model": self.model, "max_tokens": self.max_tokens, "temperature": 0}
        if endpoint == CHAT:
            request["messages"] = self.prompt.messages
        else:
            request["prompt"] = self.completions_prompt
        if streamed:
            request.update(stream=True, stream_options={"include_usage": True})
        return request

    async def send(self, endpoint: str, streamed: bool) -> Answer:
        create = self.client.chat.completions.create if endpoint == CHAT else self.client.completions.create
        answer = Answer()
        try:
            response = await create(**self.request(endpoint, streamed))
            if not streamed:
                take_chunk(answer, response, streamed=False)
                return answer
            async for chunk in response:
                take_chunk(answer, chunk, streamed=True)
        except (openai.OpenAIError, ValueError) as error:
            return failed(error)
        answer.text = "".join(answer.deltas)
        return answer

    async def close(self) -> None:
        await self.client.close()


def take_chunk(answer: Answer, chunk: Any, streamed: bool) -> None:
    """Fold a response (or a stream chunk) of either endpoint into the answer."""
    for choice in chunk.choices or ():
        message = getattr(choice, "delta", None) if streamed else getattr(choice, "message", None)
        text = getattr(message, "content", None) if message is not None else getattr(choice, "text", None)
        if streamed:
            if text:
                answer.deltas.append(text)
        else:
            answer.text = text or ""
        if choice.finish_reason:
            answer.finish_reason = choice.finish_reason
    usage = getattr(chunk, "usage", None)
    if usage is not None:
        answer.prompt_tokens = usage.prompt_tokens
        answer.completion_tokens = usage.completion_tokens
        answer.total_tokens = usage.total_tokens
