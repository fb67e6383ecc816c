"""An OpenAI-compatible API in front of a Triton server that serves a swallow-trt repository.

`/v1/models`, `/v1/chat/completions`, `/v1/completions` (streamed or not) and `/health`, answered through
the repository's front model (`tensorrt_llm_bls` or `ensemble`) over gRPC streaming. The repository renders
the chat template (one BOS), detokenizes and counts tokens; this package maps the OpenAI API onto it.

    settings.py       what it needs: Triton's gRPC URL, front model, served name, host, port
    schema.py         the OpenAI requests (pydantic) -> the front's inputs
    triton_client.py  tritonclient.grpc.aio streaming; leaving early cancels the request
    stops.py          `stop` strings cut the text
    generate.py       one answer: deltas, finish_reason, usage
    responses.py      the openai package's response types, server-sent events
    errors.py         the OpenAI error shape and status codes
    app.py            the FastAPI routes
    server.py         uvicorn, in the foreground or in a thread
"""

from triton_repo.openai_front.settings import OpenAIFrontSettings

__all__ = ["OpenAIFrontServer", "OpenAIFrontSettings", "create_app", "run_openai_front"]


def __getattr__(name: str):
    """The app and the servers import FastAPI and uvicorn: only when asked for."""
    if name == "create_app":
        from triton_repo.openai_front.app import create_app

        return create_app
    if name in ("OpenAIFrontServer", "run_openai_front"):
        from triton_repo.openai_front import server

        return getattr(server, name)
    raise AttributeError(name)
