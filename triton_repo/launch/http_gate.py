"""The HTTP port clients see: tritonserver's HTTP API, with every `generate` / `generate_stream` body checked
first (generate_check.py: a body tritonserver would mis-parse is answered 400 with a message naming the
field) and then answered through tritonserver's gRPC stream (grpc_generate.py), since its HTTP generate path
drops events under load (docs/triton.md §6.4). Every other request is passed to tritonserver's own HTTP
endpoint unchanged, except a form-encoded body, which crashes tritonserver 2.51 when it is megabytes long and
is relabelled JSON.

tritonserver then listens on a loopback HTTP port of its own; the gate binds the public one. The socket is
bound when the gate is made (a taken port is refused at once, naming it) and listens only once tritonserver
is ready, so until then a client sees a refused connection, as it would without the gate. Streamed answers
are passed on event by event; a client that hangs up cancels its request upstream (the gRPC call or the
connection to tritonserver is closed, so Triton cancels it as it would for the client). Nothing is logged:
bodies carry prompts. `serve` puts it in front unless told `--no-check-http`.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import grpc
from aiohttp import web
from multidict import CIMultiDict
from tritonclient.grpc import service_pb2_grpc

from triton_repo.client.wire import open_channel
from triton_repo.launch import grpc_generate
from triton_repo.launch.generate_check import (
    GENERATE,
    GENERATE_STREAM,
    ModelInput,
    generate_refusal,
    model_inputs,
)
from triton_repo.launch.ports import bind_problem, bind_socket
from trt_build.common.errors import SwallowTrtError

# tritonserver's own default --http-max-input-size: the gate buffers no more than Triton would accept
MAX_BODY_BYTES = 64 * 2**20
# tritonserver reads only JSON and binary tensors, but its HTTP library parses a form-encoded body as a
# query string on its stack, and one of megabytes crashes the server (docs/triton.md §6.3): such a body is
# passed on labelled as the JSON it is meant to be.
FORM = "application/x-www-form-urlencoded"
EVENT_STREAM = "text/event-stream; charset=utf-8"  # tritonserver's generate_stream answer
# tritonserver's answer to a generate request that got no response (a `stop` request gets none)
NOT_ONE_ANSWER = (
    "generate expects model to produce exactly 1 response, use generate stream for model that generates "
    "various number of responses"
)
# headers that describe one hop, not the message (RFC 9110 §7.6.1), and those aiohttp sets itself
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)


def _passed_headers(headers: Any, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    skipped = HOP_HEADERS.union(drop)
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in skipped)


def _error(status: int, message: str) -> web.Response:
    """An error in tritonserver's own shape, which tritonclient and our clients read."""
    return web.json_response({"error": message}, status=status)


@dataclass(frozen=True)
class GenerateRoute:
    """/v2/models/<model>[/versions/<version>]/<endpoint>"""

    model: str
    version: str
    endpoint: str  # generate or generate_stream

    @classmethod
    def of(cls, path: str) -> GenerateRoute | None:
        parts = path.strip("/").split("/")
        if len(parts) not in (4, 6) or parts[:2] != ["v2", "models"]:
            return None
        if parts[-1] not in (GENERATE, GENERATE_STREAM) or (len(parts) == 6 and parts[3] != "versions"):
            return None
        return cls(parts[2], parts[4] if len(parts) == 6 else "", parts[-1])


class AskHttp(Exception):
    """The request failed before its first answer. A gRPC stream carries an error's message but not its code,
    so tritonserver's own HTTP endpoint answers the request instead, with the status it gives that error."""


class StreamFailure(Exception):
    """The model's error after answers were sent, or the gRPC call failed (tritonserver unreachable: 503)."""


class HttpGate:
    """The gate on `host:port` in front of tritonserver: its HTTP endpoint at `upstream` (http://127.0.0.1:P)
    and its gRPC one at `grpc_upstream` (host:port); served from a thread of its own. `bind()` at once,
    `start()` when tritonserver is ready, `stop()` at the end."""

    def __init__(self, host: str, port: int, upstream: str, grpc_upstream: str):
        self.host, self.port, self.upstream = host, port, upstream.rstrip("/")
        self.grpc_upstream = grpc_upstream
        self.socket: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.session: aiohttp.ClientSession | None = None
        self.channel: grpc.aio.Channel | None = None
        self.grpc: service_pb2_grpc.GRPCInferenceServiceStub | None = None
        self.inputs: dict[str, dict[str, ModelInput]] = {}  # model -> its inputs, read once

    def bind(self) -> HttpGate:
        """Take the port now (listening starts with `start`): a taken port is an error naming it."""
        try:
            self.socket = bind_socket(self.host, self.port)
        except OSError as error:
            raise SwallowTrtError(
                f"HTTP port {self.port} on {self.host} cannot be bound: {bind_problem(error)}.",
                "Choose another --http-port, or stop what listens there.",
            ) from None
        return self

    def start(self, timeout_s: float = 30.0) -> HttpGate:
        if self.socket is None:
            self.bind()
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            self.loop = asyncio.new_event_loop()
            try:
                runner = self.loop.run_until_complete(self._serve())
            except BaseException as error:  # reported to start()
                failure.append(error)
                started.set()
                return
            started.set()
            self.loop.run_forever()
            self.loop.run_until_complete(self._close(runner))
            self.loop.close()

        self.thread = threading.Thread(target=run, name="triton-http-gate", daemon=True)
        self.thread.start()
        if not started.wait(timeout_s) or failure:
            raise SwallowTrtError(
                f"The HTTP gate could not listen on {self.host}:{self.port}"
                + (f": {failure[0]}" if failure else "")
                + "."
            )
        return self

    async def _serve(self) -> web.AppRunner:
        self.session = aiohttp.ClientSession(
            # as many requests at once as clients send; no idle connection kept, which tritonserver's
            # shutdown would wait for until its exit timeout
            connector=aiohttp.TCPConnector(limit=0, force_close=True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),  # generations take their time
            auto_decompress=False,  # answers pass as tritonserver wrote them
        )
        self.channel, self.grpc = open_channel(self.grpc_upstream)
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{path:.*}", self._forward)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True, shutdown_timeout=2.0)
        await runner.setup()
        await web.SockSite(runner, self.socket).start()
        return runner

    async def _close(self, runner: web.AppRunner) -> None:
        await runner.cleanup()
        if self.session is not None:
            await self.session.close()
        if self.channel is not None:
            await self.channel.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.loop is not None and self.thread is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(timeout_s)
        if self.socket is not None:
            self.socket.close()
            self.socket = None

    async def _model_inputs(self, model: str) -> dict[str, ModelInput] | None:
        """The model's inputs from tritonserver (cached); None when it has no such model (Triton says so)."""
        if model not in self.inputs:
            assert self.session is not None
            async with self.session.get(f"{self.upstream}/v2/models/{model}/config") as reply:
                if reply.status != 200:
                    return None
                self.inputs[model] = model_inputs(json.loads(await reply.read()))
        return self.inputs[model]

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        try:
            body = await request.read()  # decompressed by aiohttp, so Content-Encoding is not passed on
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"The request body is over {MAX_BODY_BYTES} bytes, tritonserver's limit.")
        route = GenerateRoute.of(request.path) if request.method == "POST" else None
        try:
            inputs = None if route is None else await self._model_inputs(route.model)
        except aiohttp.ClientError as error:
            return _error(503, f"tritonserver does not answer behind the HTTP gate ({error}).")
        if route is None or inputs is None:  # not a generate request, or no such model: Triton says so
            return await self._pass(request, body)
        try:
            fields = json.loads(body)
        except ValueError as error:  # also undecodable bytes
            return _error(400, f"The body of a {route.endpoint} request is not JSON: {error}.")
        problem = generate_refusal(fields, inputs, route.model, route.endpoint)
        if problem:
            return _error(400, problem)
        try:
            return await self._generate(request, route, fields, inputs)
        except AskHttp:
            return await self._pass(request, body)

    async def _answers(
        self, route: GenerateRoute, fields: dict, inputs: dict[str, ModelInput]
    ) -> AsyncIterator[dict[str, object]]:
        """The model's answers to a checked generate body, over one gRPC stream, as generate writes them."""
        assert self.grpc is not None

        async def one_request():
            yield grpc_generate.stream_request(fields, route.model, route.version, inputs)

        call = self.grpc.ModelStreamInfer(one_request())
        started = False
        try:
            async for answer in call:
                if answer.error_message:
                    raise StreamFailure(answer.error_message) if started else AskHttp()
                started = True
                yield grpc_generate.response_fields(answer.infer_response)
                if grpc_generate.is_final(answer.infer_response):
                    return
        except grpc.aio.AioRpcError as error:  # the call itself failed: tritonserver gone, or cancelled
            raise StreamFailure(
                f"tritonserver does not answer behind the HTTP gate ({error.details()})."
            ) from None
        finally:
            call.cancel()  # a client that left, or an answer complete: Triton cancels what still runs

    async def _generate(
        self, request: web.Request, route: GenerateRoute, fields: dict, inputs: dict[str, ModelInput]
    ) -> web.StreamResponse:
        """tritonserver's answer to generate / generate_stream: the status is that of the first answer."""
        async with contextlib.aclosing(self._answers(route, fields, inputs)) as answers:
            if route.endpoint == GENERATE:
                try:
                    collected = [answer async for answer in answers]
                except StreamFailure as failure:
                    return _error(503, str(failure))
                if not collected:  # a stop request's answer: as tritonserver's, 200 with its message
                    return web.json_response({"error": NOT_ONE_ANSWER})
                if len(collected) > 1:
                    return _error(
                        400,
                        f"{route.model} answered with {len(collected)} responses, and generate returns exactly "
                        f"one: use /v2/models/{route.model}/{GENERATE_STREAM}.",
                    )
                return web.Response(
                    body=grpc_generate.json_bytes(collected[0]), content_type="application/json"
                )
            try:
                first = await anext(answers, None)
            except StreamFailure as failure:
                return _error(503, str(failure))
            response = web.StreamResponse(headers={"Content-Type": EVENT_STREAM})
            await response.prepare(request)
            try:
                if first is not None:
                    await response.write(grpc_generate.event_bytes(first))
                async for answer in answers:
                    await response.write(grpc_generate.event_bytes(answer))
            except StreamFailure as failure:  # after answers: an error event, as tritonserver sends
                await response.write(grpc_generate.event_bytes({"error": str(failure)}))
            await response.write_eof()
            return response

    async def _pass(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """The request passed to tritonserver's own HTTP endpoint, its answer passed back as it comes."""
        assert self.session is not None
        try:
            headers = _passed_headers(request.headers, drop=("content-encoding",))
            if request.content_type == FORM:  # what curl -d and urllib send unless told
                headers["Content-Type"] = "application/json"
            upstream = await self.session.request(
                request.method,
                f"{self.upstream}{request.raw_path}",
                headers=headers,
                data=body,
                allow_redirects=False,
            )
        except aiohttp.ClientError as error:
            return _error(503, f"tritonserver does not answer behind the HTTP gate ({error}).")
        async with upstream:  # released, the connection is closed: a client that left cancels upstream
            headers = _passed_headers(upstream.headers)
            if upstream.headers.get("Content-Length") is not None:
                return web.Response(status=upstream.status, headers=headers, body=await upstream.read())
            response = web.StreamResponse(status=upstream.status, headers=headers)  # an event stream
            await response.prepare(request)
            try:
                async for chunk in upstream.content.iter_any():
                    await response.write(chunk)
            except aiohttp.ClientError:  # tritonserver went away mid-stream: so does the client's connection
                if request.transport is not None:
                    request.transport.close()
                return response
            await response.write_eof()
            return response
