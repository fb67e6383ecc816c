"""Small servers that answer like the chain model, right or wrong, for testing `swallow-trt conform`.

Both answer every prompt with the chain sentence's tokens, then stop. `per_token=False` streams what a
correct server streams (an incremental detokenizer's deltas); `per_token=True` decodes each token alone,
as the stock TensorRT-LLM postprocessing does, so split characters arrive as U+FFFD and emoji are lost.
The Triton one speaks HTTP generate / generate_stream; the OpenAI one chat and completions with SSE.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from aiohttp import web

from triton_repo.models.detokenizer import IncrementalDetokenizer
from trt_build.source.chain_model import CHAIN_SENTENCE, chain_token_ids

OPENAI_MODEL = "chain"


@dataclass
class Chain:
    tokenizer: Any
    per_token: bool = False

    @cached_property
    def ids(self) -> list[int]:
        return chain_token_ids(CHAIN_SENTENCE, self.tokenizer)

    def deltas(self) -> list[str]:
        if self.per_token:
            return [self.tokenizer.decode([token]) for token in self.ids]
        detokenizer = IncrementalDetokenizer(lambda ids: self.tokenizer.decode(list(ids)))
        return [detokenizer.push([token]) for token in self.ids]


def sse(payload: dict | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
    return f"data: {data}\n\n".encode()


async def stream(request: web.Request, events: list[dict | str]) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await response.prepare(request)
    for event in events:
        await response.write(sse(event))
    await response.write_eof()
    return response


def triton_app(chain: Chain, ready: bool = True) -> web.Application:
    """A Triton front named `ensemble`; `ready=False`: live but still loading."""
    inputs = {
        "text_input": "BYTES",
        "max_tokens": "INT32",
        "stream": "BOOL",
        "return_num_input_tokens": "BOOL",
        "return_num_output_tokens": "BOOL",
    }

    async def health(request: web.Request) -> web.Response:
        live = request.path.endswith("/live")
        return web.Response(status=200 if ready or live else 400)

    async def model_ready(request: web.Request) -> web.Response:
        return web.Response(status=200 if request.match_info["model"] == "ensemble" else 400)

    async def metadata(request: web.Request) -> web.Response:
        declared = [{"name": name, "datatype": kind, "shape": [-1, 1]} for name, kind in inputs.items()]
        return web.json_response({"name": request.match_info["model"], "inputs": declared})

    async def generate(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        prompt_tokens = len(chain.tokenizer.encode(body["text_input"], add_special_tokens=False))
        if not request.path.endswith("_stream"):
            text = chain.tokenizer.decode(chain.ids)
            return web.json_response(
                {"text_output": text, "num_input_tokens": prompt_tokens, "num_output_tokens": len(chain.ids)}
            )
        events = [{"text_output": delta, "num_output_tokens": 1} for delta in chain.deltas()]
        events[0]["num_input_tokens"] = prompt_tokens
        return await stream(request, events)

    app = web.Application()
    app.router.add_get("/v2/health/ready", health)
    app.router.add_get("/v2/health/live", health)
    app.router.add_get("/v2/models/{model}/ready", model_ready)
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_post("/v2/models/{model}/generate", generate)
    app.router.add_post("/v2/models/{model}/generate_stream", generate)
    return app


def openai_app(chain: Chain) -> web.Application:
    """An OpenAI-compatible server; usage counts the stop token, as vLLM does."""

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": OPENAI_MODEL, "object": "model"}]})

    async def complete(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        chat = request.path.endswith("/chat/completions")
        if chat:
            text = chain.tokenizer.apply_chat_template(
                body["messages"], tokenize=False, add_generation_prompt=True
            )
            prompt = chain.tokenizer.encode(text, add_special_tokens=False)
        else:
            prompt = chain.tokenizer.encode(body["prompt"])  # the server adds the BOS
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": len(chain.ids) + 1,
            "total_tokens": len(prompt) + len(chain.ids) + 1,
        }
        kind = "chat.completion" if chat else "text_completion"
        base = {"id": "cmpl-1", "created": 0, "model": OPENAI_MODEL}

        def choice(text: str, finish: str | None, streamed: bool) -> dict[str, Any]:
            if not chat:
                return {"index": 0, "text": text, "finish_reason": finish, "logprobs": None}
            content = {"role": "assistant", "content": text}
            return {"index": 0, "finish_reason": finish, ("delta" if streamed else "message"): content}

        if not body.get("stream"):
            text = chain.tokenizer.decode(chain.ids)
            return web.json_response(
                {**base, "object": kind, "choices": [choice(text, "stop", False)], "usage": usage}
            )
        chunk = {**base, "object": f"{kind}.chunk" if chat else kind}
        events: list[dict | str] = [
            {**chunk, "choices": [choice(delta, None, True)]} for delta in chain.deltas()
        ]
        events.append({**chunk, "choices": [choice("", "stop", True)]})
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append({**chunk, "choices": [], "usage": usage})
        return await stream(request, [*events, "[DONE]"])

    app = web.Application()
    app.router.add_get("/v1/models", models)
    app.router.add_post("/v1/chat/completions", complete)
    app.router.add_post("/v1/completions", complete)
    return app


class AppServer:
    """Runs an aiohttp app on 127.0.0.1 in a background thread with its own event loop."""

    def __init__(self, app: web.Application):
        self.app = app
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def _start(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AppServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
