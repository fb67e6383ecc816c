"""The HTTP gate on its own: what a generate body may hold (against a model's declared inputs), and the
pass-through, against a small aiohttp server standing in for tritonserver's HTTP endpoint. The gate in
front of a real tritonserver is tested in test_triton_repo_serving.py and test_server.py."""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.request

import aiohttp
import pytest
from aiohttp import web

from tests.conform_fakes import AppServer
from triton_repo.launch.generate_check import ModelInput, generate_refusal, model_inputs
from triton_repo.launch.http_gate import SAFE_SEND_BUFFER_BYTES, HttpGate, send_buffer_warning
from triton_repo.launch.tritonserver import free_port
from trt_build.common.errors import SwallowTrtError

CONFIG = {  # as GET /v2/models/ensemble/config answers, trimmed
    "name": "ensemble",
    "input": [
        {"name": "text_input", "data_type": "TYPE_STRING", "dims": [1]},
        {"name": "max_tokens", "data_type": "TYPE_INT32", "dims": ["1"]},
        {"name": "stop_words", "data_type": "TYPE_STRING", "dims": [-1], "optional": True},
        {"name": "seed", "data_type": "TYPE_UINT64", "dims": [1], "optional": True},
        {"name": "top_p", "data_type": "TYPE_FP32", "dims": [1], "optional": True},
        {"name": "stream", "data_type": "TYPE_BOOL", "dims": [1], "optional": True},
        {"name": "end_id", "data_type": "TYPE_INT32", "dims": [1], "optional": True},
        {"name": "pad_id", "data_type": "TYPE_INT16", "dims": [1], "optional": True},
    ],
}
INPUTS = model_inputs(CONFIG)
GOOD = {"text_input": "紅葉は?", "max_tokens": 8}


def test_config_inputs_are_read_with_their_types_dims_and_optionality():
    assert INPUTS["max_tokens"] == ModelInput("max_tokens", "TYPE_INT32", (1,), False)
    assert INPUTS["stop_words"].elements is None and INPUTS["stop_words"].optional


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"max_tokens": "8"}, 'max_tokens must be an integer, not "8".'),
        ({"max_tokens": 8.0}, "max_tokens must be an integer, not 8.0."),
        ({"max_tokens": True}, "max_tokens must be an integer, not true."),
        ({"max_tokens": None}, "max_tokens is null: send a value or leave the field out."),
        ({"max_tokens": 2**32 + 3}, "max_tokens 4294967299 is out of range: send an integer at least 1"),
        ({"max_tokens": 0}, "max_tokens 0 is out of range"),
        ({"max_tokens": [8, 9]}, "max_tokens takes 1 value(s), not 2."),
        ({"seed": -1}, "seed -1 is out of range"),
        ({"top_p": "0.9"}, 'top_p must be a number, not "0.9".'),
        ({"top_p": float("nan")}, "top_p nan is out of range"),
        ({"stream": 1}, "stream must be true or false, not 1."),
        ({"stop_words": ["。", 3]}, "stop_words must be a string, not 3."),
        ({"text_input": {"text": "x"}}, 'text_input must be a string, not {"text": "x"}.'),
        ({"pad_id": 40000}, "pad_id 40000 is out of range"),
        ({"max_new_tokens": 8}, "max_new_tokens is not a field of ensemble: did you mean max_tokens?"),
        (
            {"stream": True},
            "stream true asks for events, but generate answers once: use /v2/models/ensemble/generate_stream",
        ),
    ],
)
def test_a_bad_field_is_refused_by_name_with_what_to_send(fields, message):
    refused = generate_refusal({**GOOD, **fields}, INPUTS, "ensemble", "generate")
    assert refused is not None and refused.startswith(message), refused


def test_good_bodies_pass_and_the_whole_body_is_checked():
    assert (
        generate_refusal({**GOOD, "id": "r1", "parameters": {"x": 1}}, INPUTS, "ensemble", "generate") is None
    )
    fields = {**GOOD, "stop_words": ["。", "\n"], "seed": 2**64 - 1, "top_p": 1, "stream": True}
    assert generate_refusal(fields, INPUTS, "ensemble", "generate_stream") is None
    assert generate_refusal({"text_input": "x"}, INPUTS, "ensemble", "generate") == (
        "ensemble needs max_tokens: send it."
    )
    assert generate_refusal(["x"], INPUTS, "ensemble", "generate").startswith(
        "The body of a generate request must be a JSON object"
    )


class FakeTriton:
    """What the gate forwards to (an app for AppServer): records requests; generate_stream answers in chunks:
    "紅" then "葉", or, for a body with an `id`, `max_tokens` events naming that id, 5 ms apart."""

    def __init__(self):
        self.seen: list[tuple[str, str, dict, bytes]] = []
        self.app = web.Application(client_max_size=2**30)
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), body))
        if request.path.endswith("/config"):
            return web.json_response(CONFIG)
        if request.path.endswith("generate_stream"):
            fields = json.loads(body)
            events = (
                [{"id": fields["id"], "text_output": "紅"}] * fields["max_tokens"]
                if "id" in fields
                else [{"text_output": piece} for piece in ("紅", "葉")]
            )
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            for event in events:
                await response.write(f"data: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
                await asyncio.sleep(0.005 if "id" in fields else 0.05)
            return response
        return web.Response(body=b"\x00binary", headers={"Inference-Header-Content-Length": "3"}, status=200)


@pytest.fixture(scope="module")
def gated():
    upstream = FakeTriton()
    with AppServer(upstream.app) as server:
        gate = HttpGate("127.0.0.1", free_port(), server.url).start()
        yield gate, upstream
        gate.stop()


def call(gate: HttpGate, path: str, body: bytes | None = None, headers: dict | None = None):
    request = urllib.request.Request(
        f"http://127.0.0.1:{gate.port}{path}",
        data=body,
        headers=headers or {},
        method="POST" if body else "GET",
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_other_requests_pass_unchanged_both_ways(gated):
    gate, upstream = gated
    status, headers, body = call(
        gate, "/v2/models/x/infer?a=1", b"{}\x01\x02", {"Inference-Header-Content-Length": "2"}
    )
    assert (status, body, headers["Inference-Header-Content-Length"]) == (200, b"\x00binary", "3")
    method, path, sent, received = upstream.seen[-1]
    assert (method, path, received, sent["Inference-Header-Content-Length"]) == (
        "POST",
        "/v2/models/x/infer?a=1",
        b"{}\x01\x02",
        "2",
    )


def test_a_refused_generate_never_reaches_the_server_and_a_good_one_streams(gated):
    gate, upstream = gated
    before = len(upstream.seen)
    status, _, body = call(
        gate, "/v2/models/ensemble/generate", json.dumps({**GOOD, "max_tokens": "8"}).encode()
    )
    assert status == 400 and json.loads(body) == {"error": 'max_tokens must be an integer, not "8".'}
    assert [seen[1] for seen in upstream.seen[before:]] in (["/v2/models/ensemble/config"], [])  # config only
    status, headers, body = call(
        gate, "/v2/models/ensemble/versions/1/generate_stream", json.dumps(GOOD).encode()
    )
    assert status == 200 and headers["Content-Type"] == "text/event-stream"
    assert body.decode() == 'data: {"text_output": "紅"}\n\ndata: {"text_output": "葉"}\n\n'


def test_a_form_encoded_body_reaches_tritonserver_labelled_json(gated):
    gate, upstream = gated
    call(gate, "/v2/models/x/infer", b'{"inputs": []}', {"Content-Type": "application/x-www-form-urlencoded"})
    assert upstream.seen[-1][2]["Content-Type"] == "application/json"


def test_a_taken_port_is_refused_by_name_and_a_dead_upstream_is_a_503(gated):
    gate, _ = gated
    with pytest.raises(SwallowTrtError, match=f"HTTP port {gate.port} on 127.0.0.1 cannot be bound"):
        HttpGate("127.0.0.1", gate.port, "http://127.0.0.1:1").bind()
    orphan = HttpGate("127.0.0.1", free_port(), f"http://127.0.0.1:{free_port()}").start()
    try:
        status, _, body = call(orphan, "/v2/health/ready")
        assert (
            status == 503 and "tritonserver does not answer behind the HTTP gate" in json.loads(body)["error"]
        )
    finally:
        orphan.stop()


def test_64_concurrent_streams_each_get_all_their_own_events_and_nothing_else(gated):
    """The load at which tritonserver 2.51 behind the gate drops events (docs/triton.md §6.4): the gate itself
    must pass every event to the stream it belongs to."""
    gate, _ = gated

    async def stream(session: aiohttp.ClientSession, request_id: str) -> list[str]:
        body = {**GOOD, "id": request_id, "max_tokens": 24}
        url = f"http://127.0.0.1:{gate.port}/v2/models/ensemble/generate_stream"
        async with session.post(url, json=body) as response:
            data = b"".join([chunk async for chunk in response.content.iter_any()])
        return [json.loads(line[5:])["id"] for line in data.decode().splitlines() if line.startswith("data:")]

    async def load() -> list[tuple[str, list[str]]]:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:

            async def client(index: int) -> list[tuple[str, list[str]]]:
                ids = [f"c{index}-r{k}" for k in range(4)]
                return [(request_id, await stream(session, request_id)) for request_id in ids]

            return [pair for pairs in await asyncio.gather(*map(client, range(64))) for pair in pairs]

    answers = asyncio.run(load())
    assert len(answers) == 256
    wrong = [(request_id, ids) for request_id, ids in answers if ids != [request_id] * 24]
    assert not wrong, wrong[:3]


def test_a_small_default_send_buffer_is_named_with_the_setting_that_fixes_it(tmp_path) -> None:
    setting = tmp_path / "wmem_default"
    setting.write_text("212992\n")
    warning = send_buffer_warning(setting)
    assert warning and "212992 bytes" in warning and f"wmem_default={SAFE_SEND_BUFFER_BYTES}" in warning
    setting.write_text(f"{SAFE_SEND_BUFFER_BYTES}\n")
    assert send_buffer_warning(setting) is None
    assert send_buffer_warning(tmp_path / "absent") is None  # not Linux: nothing to say
