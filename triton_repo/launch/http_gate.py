"""The HTTP port clients see: every request passed to tritonserver's own HTTP endpoint unchanged, except a
`generate` / `generate_stream` body that tritonserver would mis-parse, which is answered 400 here with a
message naming the field (generate_check.py), and a form-encoded body, which crashes tritonserver 2.51 when
it is megabytes long, is relabelled JSON.

tritonserver then listens on a loopback port of its own; the gate binds the public one. The socket is bound
when the gate is made (a taken port is refused at once, naming it) and listens only once tritonserver is
ready, so until then a client sees a refused connection, as it would without the gate. Streamed answers are
passed on chunk by chunk; a client that hangs up cancels its request upstream (the connection to
tritonserver is closed, so Triton cancels it as it would for the client). Nothing is logged: bodies carry
prompts. `serve --check-http` puts it in front; without it tritonserver serves its HTTP port itself.

Why it is opt-in: behind it, under 64 concurrent `generate_stream` requests, tritonserver 2.51 drops stream
events. It hands each event (and each stream's start and end) to its HTTP thread through a socket pair and
ignores a full one; the pair's buffer is the kernel's default send buffer (`net.core.wmem_default`), read when
tritonserver starts. With 4 MiB no event was lost (docs/triton.md §6.4); `send_buffer_warning` says so when
it is smaller.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web
from multidict import CIMultiDict

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


# the kernel's default socket send buffer, which sizes tritonserver's event hand-off (see above)
SEND_BUFFER_SETTING = Path("/proc/sys/net/core/wmem_default")
SAFE_SEND_BUFFER_BYTES = 4 * 2**20


def send_buffer_warning(setting: Path = SEND_BUFFER_SETTING) -> str | None:
    """What to do when the default send buffer is too small for tritonserver's streams behind the gate."""
    try:
        size = int(setting.read_text())
    except (OSError, ValueError):
        return None  # not Linux, or not readable: nothing known to say
    if size >= SAFE_SEND_BUFFER_BYTES:
        return None
    return (
        f"net.core.wmem_default is {size} bytes: behind the HTTP gate tritonserver 2.51 can drop stream events "
        f"when its HTTP threads fall behind (docs/triton.md §6.4). Before serve, as root: "
        f"sysctl -w net.core.wmem_default={SAFE_SEND_BUFFER_BYTES}"
    )


def _passed_headers(headers: Any, drop: tuple[str, ...] = ()) -> CIMultiDict[str]:
    skipped = HOP_HEADERS.union(drop)
    return CIMultiDict((name, value) for name, value in headers.items() if name.lower() not in skipped)


def _error(status: int, message: str) -> web.Response:
    """An error in tritonserver's own shape, which tritonclient and our clients read."""
    return web.json_response({"error": message}, status=status)


def _generate_route(path: str) -> tuple[str, str] | None:
    """(model, endpoint) for /v2/models/<model>[/versions/<v>]/generate[_stream], else None."""
    parts = path.strip("/").split("/")
    if len(parts) in (4, 6) and parts[:2] == ["v2", "models"] and parts[-1] in (GENERATE, GENERATE_STREAM):
        if len(parts) == 6 and parts[3] != "versions":
            return None
        return parts[2], parts[-1]
    return None


class HttpGate:
    """The gate on `host:port` in front of tritonserver at `upstream` (http://127.0.0.1:P), served from a
    thread of its own; `bind()` at once, `start()` when tritonserver is ready, `stop()` at the end."""

    def __init__(self, host: str, port: int, upstream: str):
        self.host, self.port, self.upstream = host, port, upstream.rstrip("/")
        self.socket: socket.socket | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.thread: threading.Thread | None = None
        self.session: aiohttp.ClientSession | None = None
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

    async def _refusal(self, request: web.Request, body: bytes) -> str | None:
        route = _generate_route(request.path)
        if request.method != "POST" or route is None:
            return None
        model, endpoint = route
        try:
            fields = json.loads(body)
        except ValueError as error:  # also undecodable bytes
            return f"The body of a {endpoint} request is not JSON: {error}."
        inputs = await self._model_inputs(model)
        return None if inputs is None else generate_refusal(fields, inputs, model, endpoint)

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        assert self.session is not None
        try:
            body = await request.read()  # decompressed by aiohttp, so Content-Encoding is not passed on
        except web.HTTPRequestEntityTooLarge:
            return _error(413, f"The request body is over {MAX_BODY_BYTES} bytes, tritonserver's limit.")
        try:
            problem = await self._refusal(request, body)
            if problem:
                return _error(400, problem)
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
