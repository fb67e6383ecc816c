"""Triton gRPC streaming (`ModelStreamInfer`, needed by decoupled models such as the TRT-LLM ensemble).

Requests are built as `ModelInferRequest` messages from tritonclient's protobufs and responses are read
raw: a BYTES tensor is a 4-byte little-endian length and the bytes, so no numpy object arrays are built
per chunk. The request opts into the empty final response, so the end of a request is exact.

A stream that ended its request cleanly carries the next one (one request at a time per stream, so no
demultiplexing): opening a call per request cost about a fifth of the client's CPU per chunk
(benchmarks/perf/client_overhead.py). A stream that saw an error, a timeout or a cancellation is dropped.
"""

from __future__ import annotations

import asyncio
import time

import grpc
from tritonclient.grpc import service_pb2

from benchmarks.clients.base import (
    MAX_TOKENS,
    NUM_OUTPUT_TOKENS,
    STREAM,
    TEXT_INPUT,
    TEXT_OUTPUT,
    StreamClient,
    optional_triton_inputs,
    triton_notes,
)
from benchmarks.load.datasets import BenchRequest
from benchmarks.metrics.summary import RequestRecord
from triton_repo.client.server_check import strip_scheme
from triton_repo.client.wire import INTEGER_TYPES, decode, encode, open_channel
from trt_build.common.errors import SwallowTrtError


def encode_value(value: object) -> tuple[str, bytes]:
    """Triton datatype and raw contents of one scalar input."""
    datatype = "BOOL" if isinstance(value, bool) else "INT32" if isinstance(value, int) else "BYTES"
    return datatype, encode(datatype, [value])


class TritonGrpcClient(StreamClient):
    protocol = "grpc"
    default_url = "127.0.0.1:8001"

    async def setup(self) -> None:
        target = strip_scheme(self.options.url)
        self.channel, self.stub = open_channel(target)
        try:
            metadata = await self.stub.ModelMetadata(
                service_pb2.ModelMetadataRequest(name=self.options.model), timeout=30
            )
        except grpc.aio.AioRpcError as error:
            raise SwallowTrtError(
                f"Cannot read model {self.options.model!r} from the gRPC server at {target}: "
                f"{error.code().name}: {error.details()}.",
                "Is the server up (swallow-trt serve) and the model name right (--model)?",
            ) from None
        self.shapes = {t.name: [1 if d < 0 else d for d in t.shape] for t in metadata.inputs}
        self.declared = set(self.shapes)
        self.notes = triton_notes(self.declared, self.options.ignore_eos)
        self.idle_streams: list[grpc.aio.StreamStreamCall] = []

    async def close(self) -> None:
        for stream in self.idle_streams:
            stream.cancel()
        self.idle_streams.clear()
        await self.channel.close()

    def build_request(self, request: BenchRequest, request_id: str) -> service_pb2.ModelInferRequest:
        message = service_pb2.ModelInferRequest(model_name=self.options.model, id=request_id)
        values = {TEXT_INPUT: request.prompt, MAX_TOKENS: request.output_tokens, STREAM: True}
        values.update(optional_triton_inputs(self.declared, request, self.options.ignore_eos))
        for name, value in values.items():
            datatype, raw = encode_value(value)
            tensor = message.inputs.add(name=name, datatype=datatype)
            tensor.shape.extend(self.shapes.get(name, [1, 1]))
            message.raw_input_contents.append(raw)
        message.parameters["triton_enable_empty_final_response"].bool_param = True
        return message

    def open_stream(self) -> grpc.aio.StreamStreamCall:
        """An idle stream the server has not ended, else a new one."""
        while self.idle_streams:
            stream = self.idle_streams.pop()
            if not stream.done():
                return stream
        return self.stub.ModelStreamInfer()

    @staticmethod
    async def read_responses(
        stream: grpc.aio.StreamStreamCall,
        record: RequestRecord,
        texts: list[bytes],
        counts: list[tuple[str, bytes]],
    ) -> bool:
        """Read one request's responses; True when it ended with its final response (stream reusable)."""
        chunk_times = record.chunk_times
        perf_counter = time.perf_counter
        eof = grpc.aio.EOF
        while (response := await stream.read()) is not eof:
            now = perf_counter()
            if response.error_message:
                record.fail(response.error_message)
                return False
            result = response.infer_response
            outputs, raws = result.outputs, result.raw_output_contents
            for index in range(min(len(outputs), len(raws))):
                output = outputs[index]
                name = output.name
                if name == TEXT_OUTPUT:
                    raw = raws[index]
                    if len(raw) > 4 and (raw[:4] != b"\0\0\0\0" or any(decode("BYTES", raw))):
                        chunk_times.append(now)
                        texts.append(raw)
                elif name == NUM_OUTPUT_TOKENS:
                    counts.append((output.datatype, raws[index]))
            final = result.parameters.get("triton_final_response")
            if final is not None and final.bool_param:
                record.end_time = now
                return True
        record.end_time = perf_counter()
        return False

    async def send(self, request: BenchRequest, record: RequestRecord) -> None:
        """The per-chunk path only stamps the time and keeps raw bytes; decoding waits for the end."""
        message = self.build_request(request, self.request_id())
        texts: list[bytes] = []
        counts: list[tuple[str, bytes]] = []
        stream = self.open_stream()
        reusable = False
        record.send_time = time.perf_counter()
        try:
            await stream.write(message)
            reusable = await asyncio.wait_for(
                self.read_responses(stream, record, texts, counts), self.options.request_timeout_s
            )
        except grpc.aio.AioRpcError as error:
            record.fail(f"gRPC {error.code().name}: {error.details()}")
        except asyncio.TimeoutError:
            record.fail(f"no final response within {self.options.request_timeout_s:g} s")
        except asyncio.InvalidStateError as error:  # the server ended the stream as the request was written
            record.fail(f"gRPC stream ended: {error}")
        finally:
            if reusable:
                self.idle_streams.append(stream)
            else:
                stream.cancel()
        pieces = [piece for raw in texts for piece in decode("BYTES", raw)]
        record.text = b"".join(pieces).decode("utf-8", errors="replace")
        record.server_counts = [decode(dtype, raw)[0] for dtype, raw in counts if dtype in INTEGER_TYPES]
