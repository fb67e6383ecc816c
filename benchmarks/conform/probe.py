"""Before any check: is something listening at the URL, is it ready, and which protocol does it speak.

Triton answers `GET /v2/health/ready` (200 once every model is loaded; `/v2/health/live` says it is
up but still loading); an OpenAI-compatible server (trtllm-serve, Dynamo, vLLM, NIM, ours) lists its
models at `GET /v1/models`. A refused connection and a server that is not ready are said first and
apart, since no check means anything before that.
"""

from __future__ import annotations

import asyncio
import time

import aiohttp

from trt_build.common.errors import SwallowTrtError

TRITON, OPENAI = "triton", "openai"
PROTOCOLS = ("auto", TRITON, OPENAI)
UNREACHABLE_EXIT = 2  # the endpoint could not be tested at all (1: it was, and a check failed)


class NotReady(Exception):
    """The server answers, but not (yet) as a ready endpoint of the protocol asked for."""


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as response:
        await response.read()
        return response.status


async def detect(session: aiohttp.ClientSession, base: str, protocol: str) -> str:
    """The protocol the server at `base` speaks and is ready on; NotReady or a connection error if none."""
    statuses: list[str] = []
    if protocol in ("auto", TRITON):
        ready = await _status(session, f"{base}/v2/health/ready")
        if ready == 200:
            return TRITON
        if await _status(session, f"{base}/v2/health/live") == 200:
            raise NotReady(f"Triton is live but not ready (/v2/health/ready answered HTTP {ready})")
        statuses.append(f"/v2/health/ready: HTTP {ready}")
    if protocol in ("auto", OPENAI):
        models = await _status(session, f"{base}/v1/models")
        if models == 200:
            return OPENAI
        statuses.append(f"/v1/models: HTTP {models}")
    raise NotReady(f"it answers neither as Triton nor as an OpenAI server ({'; '.join(statuses)})")


async def wait_for_endpoint(session: aiohttp.ClientSession, base: str, protocol: str, wait_s: float) -> str:
    """`detect`, retried for up to `wait_s` seconds; says why the endpoint cannot be tested if it fails."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return await detect(session, base, protocol)
        except (NotReady, aiohttp.ClientError, asyncio.TimeoutError) as error:
            if time.monotonic() >= deadline:
                raise _unreachable(base, error, wait_s) from None
        await asyncio.sleep(0.5)


def _unreachable(base: str, error: BaseException, wait_s: float) -> SwallowTrtError:
    waited = f" after waiting {wait_s:g} s" if wait_s > 0 else ""
    wait_hint = "" if wait_s > 0 else "; --wait SECONDS waits for a server that is still starting"
    if isinstance(error, aiohttp.ClientConnectorError) and isinstance(error.os_error, ConnectionRefusedError):
        return SwallowTrtError(
            f"{base} refuses connections{waited}: nothing listens there.",
            f"Start the server (e.g. `swallow-trt serve`) or check the host and port{wait_hint}.",
            exit_code=UNREACHABLE_EXIT,
        )
    if isinstance(error, NotReady):
        return SwallowTrtError(
            f"{base} is not ready{waited}: {error}.",
            f"Wait until its models are loaded, or pass --protocol if detection guessed wrong{wait_hint}.",
            exit_code=UNREACHABLE_EXIT,
        )
    return SwallowTrtError(
        f"Cannot reach {base}{waited}: {type(error).__name__}: {error}.",
        f"Check the URL (http://host:port){wait_hint}.",
        exit_code=UNREACHABLE_EXIT,
    )
