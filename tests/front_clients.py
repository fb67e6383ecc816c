"""Test clients of the fronts: every response's text over HTTP generate / generate_stream and gRPC."""

from __future__ import annotations

import contextlib
import json
import queue
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import numpy as np


def http_call(url: str, body: bytes | None = None, headers: dict | None = None) -> tuple[int, dict, bytes]:
    """(status, headers, body) of a GET, or a POST when there is a body; error answers included."""
    request = urllib.request.Request(url, data=body, headers=headers or {}, method="POST" if body else "GET")
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


@contextlib.contextmanager
def posted(base_url: str, path: str, body: bytes, timeout_s: float = 60) -> Iterator[socket.socket]:
    """A JSON POST sent raw on a connection of its own; leaving the block closes it (a client hanging up)."""
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout_s) as sock:
        sock.sendall(
            f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        yield sock


def http_answer(url: str, model: str, fields: dict, request_id: str | None, stream: bool) -> list[str]:
    """The text of every response (one for `generate`, one per event for `generate_stream`)."""
    body = {**fields, "stream": stream, **({"id": request_id} if request_id else {})}
    endpoint = "generate_stream" if stream else "generate"
    request = urllib.request.Request(
        f"{url}/v2/models/{model}/{endpoint}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            if not stream:
                return [json.loads(response.read())["text_output"]]
            events = [json.loads(line[5:]) for line in response if line.startswith(b"data:")]
    except urllib.error.HTTPError as error:
        raise AssertionError(f"{error.code}: {error.read().decode()}") from None
    assert not any("error" in event for event in events), events
    return [event["text_output"] for event in events]


def grpc_inputs(fields: dict) -> list:
    """tritonclient inputs of batch 1: strings, bools, ints (lists of ints as one row)."""
    import tritonclient.grpc as grpcclient

    types = {
        str: ("BYTES", np.object_),
        bool: ("BOOL", np.bool_),
        int: ("INT32", np.int32),
        list: ("INT32", np.int32),
    }
    inputs = []
    for name, value in fields.items():
        triton_type, numpy_type = types[type(value)]
        row = value if isinstance(value, list) else [value.encode() if isinstance(value, str) else value]
        data = np.array([row], dtype=numpy_type)
        tensor = grpcclient.InferInput(name, list(data.shape), triton_type)
        tensor.set_data_from_numpy(data)
        inputs.append(tensor)
    return inputs


def grpc_answer(url: str, model: str, fields: dict, request_id: str | None, stream: bool) -> list[str]:
    """The text of every response on a gRPC stream (tritonclient), until the final one."""
    import tritonclient.grpc as grpcclient

    results: queue.Queue = queue.Queue()
    client = grpcclient.InferenceServerClient(url)
    client.start_stream(callback=lambda result, error: results.put((result, error)))
    texts = []
    try:
        client.async_stream_infer(
            model,
            grpc_inputs({**fields, "stream": stream}),
            request_id=request_id or "",
            enable_empty_final_response=True,
        )
        while True:
            result, error = results.get(timeout=300)
            assert error is None, error
            text = result.as_numpy("text_output")
            if text is not None:
                texts.append(text.reshape(-1)[0].decode("utf-8"))
            if result.get_response().parameters["triton_final_response"].bool_param:
                return texts
    finally:
        client.stop_stream()
        client.close()


def ask(server, protocol: str, model: str, fields: dict, request_id: str | None, stream: bool) -> list[str]:
    if protocol == "http":
        return http_answer(server.http_url, model, fields, request_id, stream)
    return grpc_answer(server.grpc_url, model, fields, request_id, stream)
