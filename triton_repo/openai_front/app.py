"""The ASGI app: `GET /v1/models`, `POST /v1/chat/completions`, `POST /v1/completions`, `GET /health`.

A request is validated (schema.py), checked against the served model name (404 otherwise), turned into
the Triton front's inputs and answered from `generate.answer`: one object, or server-sent events. A stream
waits for the first delta before it answers, so a request the model refuses still gets its 4xx status;
later errors arrive as an `error` event. A client that goes away, streamed or not, cancels its Triton
request (disconnect.py). Request texts are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from openai.types import Model

from triton_repo.openai_front.body_limit import BodyLimit
from triton_repo.openai_front.disconnect import (
    CLIENT_CLOSED_REQUEST,
    ClientGone,
    ClosingStreamingResponse,
    unless_disconnected,
)
from triton_repo.openai_front.errors import OpenAIError, install_handlers
from triton_repo.openai_front.generate import Finish, answer
from triton_repo.openai_front.responses import DONE, Answer, sse
from triton_repo.openai_front.schema import ChatCompletionRequest, CompletionRequest, generation
from triton_repo.openai_front.settings import OpenAIFrontSettings
from triton_repo.openai_front.triton_client import TritonFront, TritonUnavailable

log = logging.getLogger("triton_repo.openai_front")
OWNER = "swallow-trt"


async def _events(
    first: str | Finish, rest: AsyncIterator[str | Finish], reply: Answer
) -> AsyncIterator[str]:
    """The SSE body of one streamed answer."""
    try:
        if reply.chat:
            yield sse(reply.chunk(role=True))
        item = first
        while not isinstance(item, Finish):
            yield sse(reply.chunk(text=item))
            item = await anext(rest)
        yield sse(reply.chunk(finish=item))
        if reply.include_usage:
            yield sse(reply.usage_chunk(item))
    except OpenAIError as error:
        yield sse(error.body())
    except Exception as error:  # the status line is sent already: say it in the stream
        log.error("internal error (%s) while streaming", type(error).__name__)
        yield sse(OpenAIError(500, "Internal server error while streaming.").body())
    finally:
        await rest.aclose()
    yield DONE


async def _collect(events: AsyncIterator[str | Finish]) -> list[str | Finish]:
    return [item async for item in events]


def create_app(settings: OpenAIFrontSettings, front: TritonFront | None = None) -> FastAPI:
    """The app for one Triton server; `front` replaces the gRPC connection made from `settings`."""

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        app.state.front = front or TritonFront(settings.grpc_url, settings.front_model)
        yield
        await app.state.front.close()

    app = FastAPI(title="swallow-trt OpenAI-compatible API", lifespan=lifespan, docs_url=None, redoc_url=None)
    install_handlers(app)
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    started = int(time.time())

    async def served_name(request: Request) -> str:
        if settings.served_model_name:
            return settings.served_model_name
        try:
            return await request.app.state.front.model()
        except TritonUnavailable as error:
            raise OpenAIError(503, str(error), code="unavailable") from None

    async def check_model(request: Request, name: str) -> None:
        served = await served_name(request)
        if name != served:
            raise OpenAIError(
                404, f"The model '{name}' does not exist here; this server serves '{served}'.", "model",
                "model_not_found",
            )  # fmt: skip

    async def complete(request: Request, body: ChatCompletionRequest | CompletionRequest, chat: bool):
        try:
            return await answer_request(request, body, chat)
        except ClientGone:
            return Response(status_code=CLIENT_CLOSED_REQUEST)

    async def answer_request(request: Request, body: ChatCompletionRequest | CompletionRequest, chat: bool):
        await check_model(request, body.model)
        reply = Answer(body.model, chat, body.include_usage())
        events = answer(request.app.state.front, generation(body, settings.default_max_tokens))
        if not body.stream:
            texts = await unless_disconnected(request, _collect(events))
            finish = texts.pop()
            assert isinstance(finish, Finish)
            whole = reply.whole("".join(texts), finish)
            return JSONResponse(whole.model_dump(mode="json", exclude_unset=True))
        # a refused request raises here, before any status is sent
        first = await unless_disconnected(request, anext(events))
        return ClosingStreamingResponse(
            _events(first, events, reply),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache"},
        )

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request, body: ChatCompletionRequest):
        return await complete(request, body, chat=True)

    @app.post("/v1/completions")
    async def completions(request: Request, body: CompletionRequest):
        return await complete(request, body, chat=False)

    @app.get("/v1/models")
    async def models(request: Request):
        model = Model(id=await served_name(request), object="model", created=started, owned_by=OWNER)
        return {"object": "list", "data": [model.model_dump(mode="json", exclude_unset=True)]}

    @app.get("/v1/models/{name}")
    async def one_model(request: Request, name: str):
        await check_model(request, name)
        return Model(id=name, object="model", created=started, owned_by=OWNER).model_dump(
            mode="json", exclude_unset=True
        )

    @app.get("/health")
    @app.get("/health/ready")
    async def health(request: Request):
        if not await request.app.state.front.ready():
            raise OpenAIError(503, "Triton's front model is not ready yet.", code="unavailable")
        return {"status": "ready"}

    return app
