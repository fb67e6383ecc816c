"""Triton paths: each front model (`ensemble`, `tensorrt_llm_bls`) over HTTP `generate` (the reference),
HTTP `generate_stream` and gRPC `ModelStreamInfer`, each with and without a client request id.

Clients that do not invent ids (curl, genai-perf, gateways) are as real as those that do, so both are
paths. The prompt is the chat template rendered by the client, BOS included, as Triton's OpenAI
frontend sends it: a repository that adds a second BOS shows in the prompt token count. Optional inputs
(token counts, greedy top_k) are sent only when the model declares them.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any

import aiohttp
import grpc
from tritonclient.grpc import service_pb2, service_pb2_grpc

from benchmarks.clients.base import EXCLUDE_INPUT, MAX_TOKENS, STREAM, TEXT_INPUT, TEXT_OUTPUT
from benchmarks.clients.sse import HttpError, sse_events
from benchmarks.conform.paths import Answer, ClientPath, failed
from benchmarks.conform.prompt import RenderedPrompt
from triton_repo.client.server_check import FRONT_MODELS, strip_scheme
from triton_repo.client.wire import decode, encode, open_channel

NUM_INPUT_TOKENS, NUM_OUTPUT_TOKENS = "num_input_tokens", "num_output_tokens"
# Sent when the model declares them: no prompt echo, token counts, greedy decoding.
OPTIONAL_INPUTS: dict[str, object] = {
    EXCLUDE_INPUT: True,
    "return_num_input_tokens": True,
    "return_num_output_tokens": True,
    "top_k": 1,
}


def grpc_address(http_url: str) -> str:
    """Triton's gRPC port is its HTTP port + 1 unless told otherwise (8000 / 8001)."""
    host_port = strip_scheme(http_url).rstrip("/")
    host, _, port = host_port.rpartition(":")
    return f"{host}:{int(port) + 1}" if port.isdigit() else f"{host_port}:8001"


def _count(value: Any) -> int | None:
    if isinstance(value, list):
        value = value[0] if value else None
    return None if value is None else int(value)


def _text(value: Any) -> str:
    return "".join(value) if isinstance(value, list) else str(value or "")


def add_counts(answer: Answer, response: dict[str, Any]) -> None:
    """Fold one response's token counts into the answer. Streamed output counts are per response (as
    Triton's OpenAI frontend reads them), so they add up; the prompt count is the first one given."""
    prompt_tokens, completion_tokens = (
        _count(response.get(NUM_INPUT_TOKENS)),
        _count(response.get(NUM_OUTPUT_TOKENS)),
    )
    if answer.prompt_tokens is None:
        answer.prompt_tokens = prompt_tokens
    if completion_tokens is not None:
        answer.completion_tokens = (answer.completion_tokens or 0) + completion_tokens


class TritonEndpoint:
    """One Triton server's front models, as conform paths."""

    def __init__(
        self,
        session: aiohttp.ClientSession,
        base: str,
        grpc_url: str | None,
        prompt: RenderedPrompt,
        max_tokens: int,
        timeout_s: float,
    ):
        self.session, self.base, self.grpc_url = session, base, grpc_url
        self.prompt, self.max_tokens, self.timeout_s = prompt, max_tokens, timeout_s
        self.inputs: dict[str, dict[str, tuple[str, list[int]]]] = {}  # model -> input -> (type, shape)
        self.channel: grpc.aio.Channel | None = None
        self.stub: service_pb2_grpc.GRPCInferenceServiceStub | None = None

    async def front_models(self, requested: tuple[str, ...]) -> list[str]:
        """The requested models, else those of FRONT_MODELS the server has ready."""
        candidates = requested or FRONT_MODELS
        ready = []
        for model in candidates:
            async with self.session.get(f"{self.base}/v2/models/{model}/ready") as response:
                if response.status == 200 or requested:
                    ready.append(model)
        for model in ready:
            async with self.session.get(f"{self.base}/v2/models/{model}") as response:
                metadata = json.loads(await response.text()) if response.status == 200 else {}
            self.inputs[model] = {
                entry["name"]: (entry["datatype"], [1 if d < 0 else d for d in entry.get("shape", [1])])
                for entry in metadata.get("inputs", [])
            }
        return ready

    def paths(self, model: str) -> list[ClientPath]:
        reference = f"{model}/http-generate/id"
        paths = [
            ClientPath(reference, False, reference, lambda: self.http(model, False, True)),
            ClientPath(
                f"{model}/http-generate/no-id", False, reference, lambda: self.http(model, False, False)
            ),
            ClientPath(f"{model}/http-stream/id", True, reference, lambda: self.http(model, True, True)),
            ClientPath(f"{model}/http-stream/no-id", True, reference, lambda: self.http(model, True, False)),
        ]
        if self.grpc_url:
            paths += [
                ClientPath(f"{model}/grpc-stream/id", True, reference, lambda: self.grpc(model, True)),
                ClientPath(f"{model}/grpc-stream/no-id", True, reference, lambda: self.grpc(model, False)),
            ]
        return paths

    def values(self, model: str, streamed: bool) -> dict[str, object]:
        values: dict[str, object] = {
            TEXT_INPUT: self.prompt.text,
            MAX_TOKENS: self.max_tokens,
            STREAM: streamed,
        }
        declared = self.inputs.get(model, {})
        values.update({name: value for name, value in OPTIONAL_INPUTS.items() if name in declared})
        return values

    async def http(self, model: str, streamed: bool, with_id: bool) -> Answer:
        body = self.values(model, streamed)
        if with_id:
            body["id"] = uuid.uuid4().hex
        endpoint = "generate_stream" if streamed else "generate"
        url = f"{self.base}/v2/models/{model}/{endpoint}"
        payload = json.dumps(body, ensure_ascii=False).encode("utf-8")
        answer = Answer()
        try:
            async with self.session.post(
                url, data=payload, headers={"Content-Type": "application/json"}
            ) as response:
                if not streamed:
                    text = await response.text()
                    if response.status != 200:
                        return failed(f"HTTP {response.status}: {text[:300]}")
                    whole = json.loads(text)
                    answer.text = _text(whole.get(TEXT_OUTPUT))
                    add_counts(answer, whole)
                    return answer
                async for _, data in sse_events(response):
                    event = json.loads(data)
                    if "error" in event:
                        return failed(f"error event after {len(answer.deltas)} responses: {event['error']}")
                    answer.deltas.append(_text(event.get(TEXT_OUTPUT)))
                    add_counts(answer, event)
        except (HttpError, aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
            return failed(error)
        answer.text = "".join(answer.deltas)
        return answer

    def grpc_request(self, model: str, with_id: bool) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name=model, id=uuid.uuid4().hex if with_id else "")
        declared = self.inputs.get(model, {})
        for name, value in self.values(model, True).items():
            default = "BYTES" if isinstance(value, str) else "BOOL" if isinstance(value, bool) else "INT32"
            datatype, shape = declared.get(name, (default, [1, 1]))
            tensor = message.inputs.add(name=name, datatype=datatype)
            tensor.shape.extend(shape)
            message.raw_input_contents.append(encode(datatype, [value]))
        message.parameters["triton_enable_empty_final_response"].bool_param = True
        return message

    async def grpc(self, model: str, with_id: bool) -> Answer:
        """One request on its own `ModelStreamInfer` call, read until its final response."""
        if self.channel is None:
            self.channel, self.stub = open_channel(strip_scheme(self.grpc_url or ""))
        call = self.stub.ModelStreamInfer(timeout=self.timeout_s)
        answer = Answer()
        try:
            await call.write(self.grpc_request(model, with_id))
            await call.done_writing()
            async for response in call:
                if response.error_message:
                    return failed(f"error after {len(answer.deltas)} responses: {response.error_message}")
                result = response.infer_response
                for output, raw in zip(result.outputs, result.raw_output_contents, strict=False):
                    if output.name == TEXT_OUTPUT:
                        answer.deltas.append(b"".join(decode("BYTES", raw)).decode("utf-8", errors="replace"))
                    elif output.name in (NUM_INPUT_TOKENS, NUM_OUTPUT_TOKENS):
                        count = decode(output.datatype, raw)[0]
                        add_counts(answer, {output.name: count})
                final = result.parameters.get("triton_final_response")
                if final is not None and final.bool_param:
                    break
            else:
                return failed(f"the stream ended after {len(answer.deltas)} responses, none final")
        except grpc.aio.AioRpcError as error:
            return failed(f"gRPC {error.code().name}: {error.details()}")
        finally:
            call.cancel()
        answer.text = "".join(answer.deltas)
        return answer

    async def close(self) -> None:
        if self.channel is not None:
            await self.channel.close()
