"""A stream server with known timing, for validating the clients and measuring their own cost.

It speaks all three protocols the benchmark does: OpenAI `/v1/completions` and `/v1/chat/completions`
(SSE with a usage chunk and `[DONE]`), Triton `/v2/models/{m}/generate_stream` (SSE), and Triton gRPC
`ModelStreamInfer`. Each request answers with `max_tokens` pieces of text (one token each), the first
after `ttft_s` and the rest `gap_s` apart on an absolute schedule, so the expected TTFT, ITL, TPOT and
E2E are exact. Loopback only; `python -m benchmarks.perf.fake_server --help` runs it on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from dataclasses import dataclass

import click
import grpc
from aiohttp import web
from tritonclient.grpc import service_pb2, service_pb2_grpc

from triton_repo.client.wire import decode, encode

PIECE = "東京"  # one Llama 3.1 token, and N copies are N tokens
OPENAI_MODEL = "swallow"  # the one model the OpenAI endpoints list; Triton endpoints answer for any name


@dataclass(frozen=True)
class Timing:
    ttft_s: float = 0.08
    gap_s: float = 0.02
    piece: str = PIECE


async def schedule(timing: Timing, count: int):
    """Yield token numbers at start + ttft + k * gap (absolute, so sleeps do not drift)."""
    start = time.perf_counter()
    for k in range(count):
        delay = start + timing.ttft_s + k * timing.gap_s - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        yield k


def sse(payload: dict) -> bytes:
    return b"data: " + json.dumps(payload, ensure_ascii=False).encode("utf-8") + b"\n\n"


def make_app(timing: Timing, request_ids: list[str]) -> web.Application:
    """`request_ids` collects the id of every Triton request (HTTP "id", gRPC id; "" when none)."""

    async def openai(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        count = int(body.get("max_tokens") or 16)
        chat = request.path.endswith("/chat/completions")
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        async for _ in schedule(timing, count):
            choice = (
                {"index": 0, "delta": {"content": timing.piece}}
                if chat
                else {"index": 0, "text": timing.piece}
            )
            await response.write(sse({"id": "x", "object": "chunk", "choices": [choice]}))
        usage = {"prompt_tokens": 0, "completion_tokens": count, "total_tokens": count}
        await response.write(sse({"id": "x", "choices": [], "usage": usage}))
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    async def generate_stream(request: web.Request) -> web.StreamResponse:
        body = await request.json()
        request_ids.append(str(body.get("id", "")))
        count = int(body.get("max_tokens") or 16)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
        await response.prepare(request)
        model = request.match_info["model"]
        async for _ in schedule(timing, count):
            await response.write(
                sse(
                    {
                        "model_name": model,
                        "model_version": "1",
                        "text_output": timing.piece,
                        "num_output_tokens": 1,
                    }
                )
            )
        await response.write_eof()
        return response

    async def metadata(request: web.Request) -> web.Response:
        return web.json_response({"name": request.match_info["model"], "inputs": TRITON_INPUTS_JSON})

    async def ready(request: web.Request) -> web.Response:
        return web.Response(status=200)

    async def models(request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": OPENAI_MODEL, "object": "model"}]})

    app = web.Application()
    app.router.add_post("/v1/completions", openai)
    app.router.add_post("/v1/chat/completions", openai)
    app.router.add_post("/v2/models/{model}/generate_stream", generate_stream)
    app.router.add_get("/v2/models/{model}", metadata)
    app.router.add_get("/v2/models/{model}/ready", ready)
    app.router.add_get("/v2/health/ready", ready)
    app.router.add_get("/v2/health/live", ready)
    app.router.add_get("/v1/models", models)
    return app


TRITON_INPUTS = {
    "text_input": "BYTES",
    "max_tokens": "INT32",
    "stream": "BOOL",
    "exclude_input_in_output": "BOOL",
    "return_num_output_tokens": "BOOL",
}
TRITON_INPUTS_JSON = [{"name": n, "datatype": d, "shape": [-1, 1]} for n, d in TRITON_INPUTS.items()]


class FakeTritonService(service_pb2_grpc.GRPCInferenceServiceServicer):
    def __init__(self, timing: Timing, request_ids: list[str]):
        self.timing = timing
        self.streams_opened = 0
        self.request_ids = request_ids

    async def ModelMetadata(self, request, context):  # noqa: N802 (gRPC method name)
        answer = service_pb2.ModelMetadataResponse(name=request.name, platform="ensemble")
        for name, datatype in TRITON_INPUTS.items():
            answer.inputs.add(name=name, datatype=datatype, shape=[-1, 1])
        return answer

    async def ModelReady(self, request, context):  # noqa: N802
        return service_pb2.ModelReadyResponse(ready=True)

    async def ServerReady(self, request, context):  # noqa: N802
        return service_pb2.ServerReadyResponse(ready=True)

    async def ServerLive(self, request, context):  # noqa: N802
        return service_pb2.ServerLiveResponse(live=True)

    async def ModelStreamInfer(self, request_iterator, context):  # noqa: N802
        """Requests on one stream run concurrently, as in Triton; responses are interleaved."""
        self.streams_opened += 1
        responses: asyncio.Queue = asyncio.Queue()
        active = set()

        async def answer(request) -> None:
            self.request_ids.append(request.id)
            names = [t.name for t in request.inputs]
            count = decode("INT32", request.raw_input_contents[names.index("max_tokens")])[0]
            async for k in schedule(self.timing, count):
                response = service_pb2.ModelInferResponse(model_name=request.model_name, id=request.id)
                response.outputs.add(name="text_output", datatype="BYTES", shape=[1, 1])
                response.outputs.add(name="num_output_tokens", datatype="INT32", shape=[1, 1])
                response.raw_output_contents.extend(
                    [encode("BYTES", [self.timing.piece]), encode("INT32", [1])]
                )
                response.parameters["triton_final_response"].bool_param = k == count - 1
                responses.put_nowait(service_pb2.ModelStreamInferResponse(infer_response=response))

        async def accept() -> None:
            async for request in request_iterator:
                task = asyncio.ensure_future(answer(request))
                active.add(task)
                task.add_done_callback(active.discard)
            while active:
                await asyncio.gather(*list(active))
            responses.put_nowait(None)

        acceptor = asyncio.ensure_future(accept())
        try:
            while (item := await responses.get()) is not None:
                yield item
        finally:
            acceptor.cancel()
            for task in list(active):
                task.cancel()


class FakeServer:
    """Runs the HTTP app and the gRPC service on 127.0.0.1 in a background thread with its own loop."""

    def __init__(self, timing: Timing = Timing(), http_port: int = 0, grpc_port: int = 0):
        self.timing = timing
        self.http_port, self.grpc_port = http_port, grpc_port
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.ready = threading.Event()
        self.request_ids: list[str] = []  # of every Triton request, HTTP and gRPC

    async def _start(self) -> None:
        self.runner = web.AppRunner(make_app(self.timing, self.request_ids), access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", self.http_port)
        await site.start()
        self.http_port = site._server.sockets[0].getsockname()[1]
        self.grpc_server = grpc.aio.server()
        self.grpc_service = FakeTritonService(self.timing, self.request_ids)
        service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(self.grpc_service, self.grpc_server)
        self.grpc_port = self.grpc_server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        await self.grpc_server.start()

    async def _stop(self) -> None:
        await self.grpc_server.stop(grace=1)
        await self.runner.cleanup()

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def grpc_url(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    def __enter__(self) -> FakeServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self._stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@click.command()
@click.option("--http-port", type=int, default=0, help="0 picks a free port.")
@click.option("--grpc-port", type=int, default=0)
@click.option("--ttft-ms", type=float, default=80.0, show_default=True)
@click.option("--gap-ms", type=float, default=20.0, show_default=True)
def main(http_port: int, grpc_port: int, ttft_ms: float, gap_ms: float) -> None:
    """Serve fake streams until Ctrl-C; prints the ports on one line (http grpc)."""
    with FakeServer(Timing(ttft_ms / 1e3, gap_ms / 1e3), http_port, grpc_port) as server:
        click.echo(f"{server.http_port} {server.grpc_port}", nl=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
