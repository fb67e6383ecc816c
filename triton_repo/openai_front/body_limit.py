"""A cap on request bodies, checked while they arrive: one client cannot make the server buffer gigabytes.

The cap is far above any prompt the engine accepts (the repository refuses prompts over max_input_len
tokens), so it only stops abuse; the answer is a 413 in the OpenAI error shape. The body is read here
(the routes read it whole anyway, to parse the JSON) and handed on; later messages (a disconnect) pass.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from triton_repo.openai_front.errors import OpenAIError


class BodyLimit:
    """ASGI middleware: refuse a body over `max_bytes`, by its Content-Length or as it is read."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        too_large = OpenAIError(
            413, f"The request body is over {self.max_bytes} bytes; send a shorter prompt."
        )
        declared = dict(scope.get("headers", [])).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large.response()(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client left while sending
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await too_large.response()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": b"".join(chunks), "more_body": False}

        await self.app(scope, replay, send)
