"""OpenAI-compatible streaming: `/v1/completions` or `/v1/chat/completions` with `stream: true`.

Token counts come from the final `usage` chunk (`stream_options.include_usage`), as vLLM's benchmark
does; servers that send none fall back to the tokenizer. A chunk is a response whose choice carries
non-empty text (`text` or `delta.content`); the usage-only chunk and `[DONE]` are not chunks.
"""

from __future__ import annotations

import json
import time

from benchmarks.clients.base import StreamClient
from benchmarks.clients.sse import STREAM_ERRORS, make_session, sse_events, stream_error
from benchmarks.clients.triton_http import base_url
from benchmarks.load.datasets import BenchRequest
from benchmarks.metrics.summary import RequestRecord

DONE = b"[DONE]"


class OpenAIClient(StreamClient):
    protocol = "openai"
    default_url = "http://127.0.0.1:9000"

    async def setup(self) -> None:
        self.base = base_url(self.options.url)
        if self.base.endswith("/v1"):
            self.base = self.base[: -len("/v1")]
        self.session = make_session(self.options)
        if self.options.ignore_eos:
            self.notes = ["--ignore-eos sends ignore_eos and min_tokens (honoured by vLLM-style servers)"]

    async def close(self) -> None:
        await self.session.close()

    def route(self, request: BenchRequest) -> tuple[str, dict[str, object]]:
        chat = self.options.endpoint == "chat" or (self.options.endpoint == "auto" and request.messages)
        body: dict[str, object] = {
            "model": self.options.model,
            "max_tokens": request.output_tokens,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if self.options.ignore_eos:
            body.update(ignore_eos=True, min_tokens=request.output_tokens)
        if chat:
            messages = list(request.messages or ({"role": "user", "content": request.prompt},))
            return f"{self.base}/v1/chat/completions", {**body, "messages": messages}
        return f"{self.base}/v1/completions", {**body, "prompt": request.prompt}

    async def send(self, request: BenchRequest, record: RequestRecord) -> None:
        url, body = self.route(request)
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        pieces: list[str] = []
        loads = json.loads
        record.send_time = time.perf_counter()
        try:
            async with self.session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as response:
                async for now, data in sse_events(response):
                    if data == DONE:
                        break
                    event = loads(data)
                    if "error" in event:
                        record.fail(str(event["error"]))
                        break
                    choices = event.get("choices")
                    if choices:
                        choice = choices[0]
                        text = choice.get("text")
                        if text is None:
                            text = (choice.get("delta") or {}).get("content")
                        if text:
                            record.chunk_times.append(now)
                            pieces.append(text)
                    usage = event.get("usage")
                    if usage and usage.get("completion_tokens") is not None:
                        record.output_tokens = int(usage["completion_tokens"])
                        record.output_tokens_source = "server"
                record.end_time = time.perf_counter()
        except STREAM_ERRORS as error:
            record.fail(stream_error(error))
        record.text = "".join(pieces)
