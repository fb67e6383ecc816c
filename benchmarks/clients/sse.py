"""Server-sent events over one shared aiohttp session (Triton generate_stream and OpenAI streams)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import aiohttp

from benchmarks.clients.base import ClientOptions


def make_session(options: ClientOptions) -> aiohttp.ClientSession:
    """No connection limit (the load generator decides concurrency) and no total-time cap per read."""
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=options.request_timeout_s),
        read_bufsize=1 << 16,
    )


class HttpError(Exception):
    """A non-200 answer before the stream started."""


# What a streamed request can fail with: a refused answer, the connection, the timeout, a bad JSON event.
STREAM_ERRORS = (HttpError, aiohttp.ClientError, asyncio.TimeoutError, ValueError)


def stream_error(error: Exception) -> str:
    """The record's error for one of STREAM_ERRORS: a refused answer as it is, else the exception's type
    and text."""
    return str(error) if isinstance(error, HttpError) else f"{type(error).__name__}: {error}"


async def sse_events(response: aiohttp.ClientResponse) -> AsyncIterator[tuple[float, bytes]]:
    """(arrival time, data payload) for each `data:` line; the body may end without a sentinel."""
    if response.status != 200:
        body = (await response.read())[:300].decode("utf-8", errors="replace")
        raise HttpError(f"HTTP {response.status}: {body}")
    perf_counter = time.perf_counter
    async for line in response.content:
        if line.startswith(b"data:"):
            yield perf_counter(), line[5:].strip()
