"""Running the app with uvicorn: in the foreground until Ctrl-C, or in a thread beside tritonserver."""

from __future__ import annotations

import contextlib
import threading
import time
from types import TracebackType

import uvicorn

from triton_repo.launch.ports import url_host
from triton_repo.openai_front.app import create_app
from triton_repo.openai_front.settings import OpenAIFrontSettings
from trt_build.common.errors import SwallowTrtError


def uvicorn_config(settings: OpenAIFrontSettings) -> uvicorn.Config:
    # The access log has method, path and status only: request bodies are never logged.
    return uvicorn.Config(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=5,
    )


def run_openai_front(settings: OpenAIFrontSettings) -> None:
    """Serve in the foreground until SIGINT/SIGTERM (uvicorn's own signal handling); returns after a clean
    shutdown on Ctrl-C, where uvicorn would raise KeyboardInterrupt again."""
    server = uvicorn.Server(uvicorn_config(settings))
    with contextlib.suppress(KeyboardInterrupt):
        server.run()
    if not server.started:
        raise SwallowTrtError(
            f"The OpenAI API could not listen on {settings.host}:{settings.port}.",
            "Choose another port (--openai-port), or stop what uses it.",
        )


class OpenAIFrontServer:
    """The app served from a background thread; `with OpenAIFrontServer(settings) as front: ...`."""

    def __init__(self, settings: OpenAIFrontSettings):
        self.settings = settings
        self.server = uvicorn.Server(uvicorn_config(settings))
        self.thread = threading.Thread(target=self.server.run, name="openai-front", daemon=True)

    @property
    def url(self) -> str:
        """The base URL OpenAI clients take (`.../v1`)."""
        return f"http://{url_host(self.settings.host)}:{self.settings.port}/v1"

    def start(self, timeout_s: float = 30.0) -> OpenAIFrontServer:
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise SwallowTrtError(
                    f"The OpenAI API did not start on {self.settings.host}:{self.settings.port}.",
                    "Choose another port (--openai-port), or stop what uses it.",
                )
            time.sleep(0.05)
        return self

    def stop(self, timeout_s: float = 10.0) -> None:
        self.server.should_exit = True
        if self.thread.is_alive():
            self.thread.join(timeout_s)

    def __enter__(self) -> OpenAIFrontServer:
        return self.start()

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
