"""Triton HTTP generate extension: `POST /v2/models/{model}/generate_stream`, one SSE event per response.

Top-level JSON keys that name model inputs become tensors (docs/triton.md §2.1). Errors after the
first response arrive as `data: {"error": ...}` events with HTTP 200, so every event is checked.
"""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

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
from benchmarks.clients.sse import STREAM_ERRORS, make_session, sse_events, stream_error
from benchmarks.load.datasets import BenchRequest
from benchmarks.metrics.summary import RequestRecord
from triton_repo.client.server_check import base_url
from trt_build.common.errors import SwallowTrtError


class TritonHttpClient(StreamClient):
    protocol = "http"
    default_url = "http://127.0.0.1:8000"

    async def setup(self) -> None:
        self.base = base_url(self.options.url)
        self.session = make_session(self.options)
        metadata_url = f"{self.base}/v2/models/{self.options.model}"
        try:
            async with self.session.get(metadata_url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                status, body = response.status, await response.text()
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            await self.session.close()
            raise SwallowTrtError(
                f"Cannot reach the Triton HTTP server at {self.base} ({error}).",
                "Is it up (swallow-trt serve)?",
            ) from None
        if status != 200:
            await self.session.close()
            raise SwallowTrtError(
                f"{metadata_url} answered HTTP {status}: {body[:200]}.",
                "Check --model and that the model is loaded.",
            )
        metadata = json.loads(body)
        self.declared = {entry["name"] for entry in metadata.get("inputs", [])}
        self.notes = triton_notes(self.declared, self.options.ignore_eos)
        self.stream_url = f"{self.base}/v2/models/{self.options.model}/generate_stream"

    async def close(self) -> None:
        await self.session.close()

    def body(self, request: BenchRequest, request_id: str) -> dict[str, object]:
        body: dict[str, object] = {
            "id": request_id,  # per-request detokenizer state in an ensemble (triton_repo postprocessing)
            TEXT_INPUT: request.prompt,
            MAX_TOKENS: request.output_tokens,
            STREAM: True,
        }
        body.update(optional_triton_inputs(self.declared, request, self.options.ignore_eos))
        return body

    async def send(self, request: BenchRequest, record: RequestRecord) -> None:
        payload = json.dumps(self.body(request, self.request_id()), ensure_ascii=False).encode("utf-8")
        pieces: list[str] = []
        loads = json.loads
        record.send_time = time.perf_counter()
        try:
            async with self.session.post(
                self.stream_url, data=payload, headers={"Content-Type": "application/json"}
            ) as response:
                async for now, data in sse_events(response):
                    event = loads(data)
                    if "error" in event:
                        record.fail(str(event["error"]))
                        break
                    text = event.get(TEXT_OUTPUT)
                    if isinstance(text, list):
                        text = "".join(text)
                    if text:
                        record.chunk_times.append(now)
                        pieces.append(text)
                    count = event.get(NUM_OUTPUT_TOKENS)
                    if count is not None:
                        record.server_counts.append(int(count[0] if isinstance(count, list) else count))
                record.end_time = time.perf_counter()
        except STREAM_ERRORS as error:
            record.fail(stream_error(error))
        record.text = "".join(pieces)
