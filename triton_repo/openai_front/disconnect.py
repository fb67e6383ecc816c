"""A client that goes away cancels its Triton request, whether it was streaming or waiting for one object.

Closing the answer's generator cancels the gRPC call (triton_client.py), Triton cancels the request and the
front stops the engine. Starlette cancels a streaming body when the client disconnects, and the response
below closes that body at once; a handler that waits for a whole answer is raced against the disconnect.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

T = TypeVar("T")
CLIENT_CLOSED_REQUEST = 499  # nginx's status for it, shown in the access log; the client reads nothing


class ClosingStreamingResponse(StreamingResponse):
    """Closes its body when the response ends for any reason (a client hang-up included), so the Triton
    request behind it is cancelled at once rather than whenever the generator is collected."""

    async def __call__(self, scope, receive, send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.body_iterator.aclose()


async def _disconnected(request: Request) -> None:
    """Returns when the client has gone (the body was read already, so only a disconnect can come)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


class ClientGone(Exception):
    """The client closed the connection before its answer was ready."""


async def unless_disconnected(request: Request, work: Awaitable[T]) -> T:
    """`work`'s result; or, when the client goes away first, `work` cancelled (which cancels the Triton
    request) and ClientGone raised. FastAPI itself would let a handler whose client left run on."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_disconnected(request))
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)  # let the Triton request be cancelled
    if task.cancelled():
        raise ClientGone()
    return task.result()
