"""`swallow-trt chat`: stream one answer from a running server as text deltas (HTTP SSE, gRPC, or an
OpenAI-compatible API through the official `openai` client). The streaming functions are also the clients
other tools use (benchmarks, tests)."""

from __future__ import annotations

import json
import queue
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from triton_repo.client.server_check import front_model, wait_for_server
from trt_build.common.errors import SwallowTrtError


def request_body(prompt: str, max_tokens: int, chat: bool, stream: bool, **sampling: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "id": uuid.uuid4().hex,
        "text_input": prompt,
        "max_tokens": max_tokens,
        "stream": stream,
    }
    if chat:
        body["apply_chat_template"] = True
    body.update({key: value for key, value in sampling.items() if value is not None})
    return body


def stream_http(url: str, model: str, body: dict[str, Any], timeout: float = 600) -> Iterator[str]:
    """Text deltas from POST /v2/models/{model}/generate_stream (server-sent events)."""
    for event in stream_http_events(url, model, body, timeout):
        yield event.get("text_output", "")


def stream_http_events(
    url: str, model: str, body: dict[str, Any], timeout: float = 600
) -> Iterator[dict[str, Any]]:
    """Every response of POST /v2/models/{model}/generate_stream, as the server-sent JSON objects."""
    request = urllib.request.Request(
        f"{url.rstrip('/')}/v2/models/{model}/generate_stream",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        raise SwallowTrtError(f"{error.code}: {error.read().decode(errors='replace')}") from None
    except urllib.error.URLError as error:
        raise SwallowTrtError(
            f"Cannot reach {url}: {error.reason}.", "Is `swallow-trt serve` running?"
        ) from None
    with response:
        for raw in response:
            line = raw.decode("utf-8").strip()
            if not line.startswith("data:"):
                continue
            event = json.loads(line[len("data:") :])
            if "error" in event:
                raise SwallowTrtError(event["error"])
            yield event


def stream_grpc(url: str, model: str, body: dict[str, Any], timeout: float = 600) -> Iterator[str]:
    """Text deltas over gRPC bidirectional streaming (tritonclient)."""
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    dtypes = {
        str: ("BYTES", np.object_),
        bool: ("BOOL", np.bool_),
        int: ("INT32", np.int32),
        float: ("FP32", np.float32),
    }
    names = {"seed": ("UINT64", np.uint64)}
    inputs = []
    for key, value in body.items():
        if key == "id":
            continue
        triton_type, numpy_type = names.get(key, dtypes[type(value)])
        data = np.array([[value.encode() if isinstance(value, str) else value]], dtype=numpy_type)
        tensor = grpcclient.InferInput(key, list(data.shape), triton_type)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url.removeprefix("grpc://"))
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    try:
        try:
            client.async_stream_infer(model, inputs, request_id=body["id"], enable_empty_final_response=True)
        except InferenceServerException as refused:
            # the stream broke before the request went out (no server there): the callback got the reason
            reported = None if results.empty() else results.get_nowait()[1]
            raise SwallowTrtError(str(reported or refused)) from None
        while True:
            result, error = results.get(timeout=timeout)
            if error is not None:
                raise SwallowTrtError(str(error))
            response = result.get_response()
            text = result.as_numpy("text_output")
            if text is not None:
                yield b"".join(text.reshape(-1)).decode("utf-8")
            if response.parameters["triton_final_response"].bool_param:
                return
    finally:
        client.stop_stream()
        client.close()


def openai_base_url(url: str) -> str:
    """What the `openai` client takes: http://host:port/v1 (given with or without the /v1)."""
    base = url.rstrip("/") if "://" in url else f"http://{url.rstrip('/')}"
    return base if base.endswith("/v1") else f"{base}/v1"


def stream_openai(
    url: str,
    model: str | None,
    prompt: str,
    max_tokens: int,
    chat: bool,
    timeout: float = 600,
    **sampling: Any,
) -> Iterator[str]:
    """Text deltas from /v1/chat/completions (chat) or /v1/completions (raw); top_k as vLLM's extension.
    `model` None: the first model the server lists."""
    import openai

    client = openai.OpenAI(base_url=openai_base_url(url), api_key="unused", max_retries=0, timeout=timeout)
    chosen = {key: value for key, value in sampling.items() if value is not None}
    extra = {"top_k": chosen.pop("top_k")} if "top_k" in chosen else None
    try:
        model = model or next(iter(client.models.list())).id
        if chat:
            messages = [{"role": "user", "content": prompt}]
            stream = client.chat.completions.create(
                model=model, messages=messages, max_tokens=max_tokens, stream=True, extra_body=extra, **chosen
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    yield chunk.choices[0].delta.content
        else:
            stream = client.completions.create(
                model=model, prompt=prompt, max_tokens=max_tokens, stream=True, extra_body=extra, **chosen
            )
            for chunk in stream:
                if chunk.choices and chunk.choices[0].text:
                    yield chunk.choices[0].text
    except openai.APIConnectionError:
        raise SwallowTrtError(f"Cannot reach {url}.", "Is the OpenAI API running?") from None
    except openai.APIStatusError as error:
        body = error.body if isinstance(error.body, dict) else {}
        raise SwallowTrtError(f"{error.status_code}: {body.get('message', error.message)}") from None
    except openai.APIError as error:  # an error event in the middle of the stream
        raise SwallowTrtError(error.message) from None
    except StopIteration:
        raise SwallowTrtError(f"{url} lists no models;", "name one with --model.") from None


@dataclass(frozen=True)
class ChatOptions:
    """What `swallow-trt chat` asks a running server for; sampling options left None are not sent."""

    prompt: str
    url: str = "http://localhost:8000"
    protocol: str = "http"
    model: str | None = None  # the first of server_check.FRONT_MODELS the server has
    max_tokens: int = 256
    chat: bool = True  # apply the chat template to the prompt
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    seed: int | None = None
    wait_s: float = 0


def answer_deltas(options: ChatOptions) -> Iterator[str]:
    """The answer's text deltas as the server streams them, once it is ready (waiting for it, if asked)."""
    wait_for_server(options.url, options.protocol, options.wait_s)
    sampling = dict(
        temperature=options.temperature, top_p=options.top_p, top_k=options.top_k, seed=options.seed
    )
    if options.protocol == "openai":
        yield from stream_openai(
            options.url, options.model, options.prompt, options.max_tokens, options.chat, **sampling
        )
        return
    model = options.model or front_model(options.url, options.protocol)
    body = request_body(options.prompt, options.max_tokens, options.chat, True, **sampling)
    stream = stream_http if options.protocol == "http" else stream_grpc
    yield from stream(options.url, model, body)
