"""The HTTP gate: what a generate body may hold (against a model's declared inputs); the pass-through of
other requests, against a small aiohttp server standing in for tritonserver's HTTP endpoint; and generate
answered over gRPC by a real tritonserver serving the timing model (benchmarks/perf/timing_model.py), compared
with tritonserver's own HTTP answers byte for byte. The gate in front of the Swallow repository is tested in
test_triton_repo_serving.py and test_server.py."""

from __future__ import annotations

import asyncio
import json

import aiohttp
import pytest
from aiohttp import web

from benchmarks.perf.timing_model import write_timing_repo
from tests.conform_fakes import AppServer
from tests.front_clients import http_call
from triton_repo.client import wire
from triton_repo.launch import grpc_generate
from triton_repo.launch.generate_check import ModelInput, generate_refusal, model_inputs
from triton_repo.launch.http_gate import HttpGate
from triton_repo.launch.tritonserver import TritonServer, free_port
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
    assert model_inputs({**CONFIG, "max_batch_size": 8})["max_tokens"].batched


@pytest.mark.parametrize(
    ("dims", "batched", "count", "shape"),
    [((1,), False, 1, [1]), ((1,), True, 1, [1, 1]), ((-1,), True, 3, [1, 3]), ((2, -1), False, 6, [2, 3])],
)
def test_a_value_gets_triton_s_own_shape(dims, batched, count, shape):
    field = ModelInput("x", "TYPE_INT32", dims, False, batched)
    assert grpc_generate.tensor_shape(field, count) == shape


@pytest.mark.parametrize(
    ("datatype", "values"),
    [
        ("BYTES", [b"", "紅葉".encode()]),
        ("INT32", [-5, 7]),
        ("UINT64", [2**64 - 1]),
        ("BOOL", [True, False]),
        ("FP16", [0.5]),
        ("BF16", [1.5, -2.0]),
    ],
)
def test_raw_tensor_contents_round_trip(datatype, values):
    assert wire.decode(datatype, wire.encode(datatype, values)) == values


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
        ({"parameters": {"stream": True}}, "stream true asks for events, but generate answers once"),
        ({"parameters": {"seed": "8"}}, 'seed must be an integer, not "8".'),
        ({"parameters": {"top_p": 2}}, "top_p 2 is out of range"),
        ({"parameters": {"max_tokens": 8}}, "max_tokens is sent twice, at the top level and in parameters"),
        ({"parameters": {"priority": 1}}, "parameters.priority is reserved by Triton: leave it out."),
        ({"parameters": {"triton_x": 1}}, "parameters.triton_x is reserved by Triton"),
        (
            {"parameters": {"tag": [1]}},
            "parameters.tag must be a string, an integer, a finite number or true",
        ),
        ({"parameters": {"tag": 2**63}}, "parameters.tag must be a string, an integer"),
        ({"parameters": ["x"]}, 'parameters must be a JSON object of fields, not ["x"].'),
        ({"id": 7}, "id must be a string, not 7."),
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
    nested = {"text_input": "x", "parameters": {"max_tokens": 8, "tag": "a", "temperature": 0.5}}
    assert generate_refusal(nested, INPUTS, "ensemble", "generate") is None
    assert generate_refusal(["x"], INPUTS, "ensemble", "generate").startswith(
        "The body of a generate request must be a JSON object"
    )


class FakeTriton:
    """What the gate passes other requests to (an app for AppServer): records them; answers the model config
    and, for anything else, a binary body."""

    def __init__(self):
        self.seen: list[tuple[str, str, dict, bytes]] = []
        self.app = web.Application(client_max_size=2**30)
        self.app.router.add_route("*", "/{path:.*}", self.handle)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        body = await request.read()
        self.seen.append((request.method, request.path_qs, dict(request.headers), body))
        if request.path.endswith("/config"):
            return web.json_response(CONFIG)
        return web.Response(body=b"\x00binary", headers={"Inference-Header-Content-Length": "3"}, status=200)


@pytest.fixture(scope="module")
def gated():
    """The gate in front of FakeTriton's HTTP, with nothing on its gRPC port."""
    upstream = FakeTriton()
    with AppServer(upstream.app) as server:
        gate = HttpGate("127.0.0.1", free_port(), server.url, f"127.0.0.1:{free_port()}").start()
        yield gate, upstream
        gate.stop()


def call(port: int, path: str, body: bytes | None = None, headers: dict | None = None):
    """(status, headers, body) of one request to 127.0.0.1:port."""
    return http_call(f"http://127.0.0.1:{port}{path}", body, headers)


def test_other_requests_pass_unchanged_both_ways(gated):
    gate, upstream = gated
    status, headers, body = call(
        gate.port, "/v2/models/x/infer?a=1", b"{}\x01\x02", {"Inference-Header-Content-Length": "2"}
    )
    assert (status, body, headers["Inference-Header-Content-Length"]) == (200, b"\x00binary", "3")
    method, path, sent, received = upstream.seen[-1]
    assert (method, path, received, sent["Inference-Header-Content-Length"]) == (
        "POST",
        "/v2/models/x/infer?a=1",
        b"{}\x01\x02",
        "2",
    )


def test_a_refused_generate_never_reaches_the_server_and_a_dead_grpc_port_is_a_503(gated):
    gate, upstream = gated
    before = len(upstream.seen)
    status, _, body = call(
        gate.port, "/v2/models/ensemble/generate", json.dumps({**GOOD, "max_tokens": "8"}).encode()
    )
    assert status == 400 and json.loads(body) == {"error": 'max_tokens must be an integer, not "8".'}
    assert [seen[1] for seen in upstream.seen[before:]] in (["/v2/models/ensemble/config"], [])  # config only
    status, _, body = call(gate.port, "/v2/models/ensemble/versions/1/generate", json.dumps(GOOD).encode())
    assert status == 503 and json.loads(body)["error"], body
    assert all(not seen[1].endswith("generate") for seen in upstream.seen)  # never HTTP


def test_a_form_encoded_body_reaches_tritonserver_labelled_json(gated):
    gate, upstream = gated
    call(
        gate.port,
        "/v2/models/x/infer",
        b'{"inputs": []}',
        {"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert upstream.seen[-1][2]["Content-Type"] == "application/json"


def test_a_taken_port_is_refused_by_name_and_a_dead_upstream_is_a_503(gated):
    gate, _ = gated
    with pytest.raises(SwallowTrtError, match=f"HTTP port {gate.port} on 127.0.0.1 cannot be bound"):
        HttpGate("127.0.0.1", gate.port, "http://127.0.0.1:1", "127.0.0.1:1").bind()
    orphan = HttpGate("127.0.0.1", free_port(), f"http://127.0.0.1:{free_port()}", "127.0.0.1:1").start()
    try:
        status, _, body = call(orphan.port, "/v2/health/ready")
        assert (
            status == 503 and "tritonserver does not answer behind the HTTP gate" in json.loads(body)["error"]
        )
    finally:
        orphan.stop()


@pytest.fixture(scope="module")
def timing_triton(tmp_path_factory):
    """A real tritonserver behind the gate, serving the timing model: each request streams max_tokens
    events 5 ms apart, and more than 1000 is the model's error (INTERNAL: 500 over HTTP)."""
    root = tmp_path_factory.mktemp("timing")
    repo = write_timing_repo(root / "repo", ttft_ms=5, gap_ms=5)
    with TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as server:
        yield server


@pytest.mark.slow
@pytest.mark.parametrize(
    ("endpoint", "body"),
    [
        ("generate_stream", {"text_input": "紅葉", "max_tokens": 3, "id": "r1"}),
        ("generate_stream", {"text_input": "紅葉", "parameters": {"max_tokens": 2, "tag": "t"}}),
        ("generate_stream", {"text_input": "紅葉", "max_tokens": 2, "return_num_output_tokens": True}),
        ("generate", {"text_input": "紅葉", "max_tokens": 1}),
        ("generate", {"text_input": "紅葉", "max_tokens": 3}),  # several answers: refused
        ("generate_stream", {"text_input": "紅葉", "max_tokens": 1001}),  # the model's error
        ("generate", {"text_input": "紅葉", "max_tokens": 1001}),
    ],
)
def test_generate_over_grpc_answers_as_tritonserver_s_own_http(timing_triton, endpoint, body):
    path = f"/v2/models/ensemble/{endpoint}"
    own = call(int(timing_triton.triton_http_url.rsplit(":", 1)[1]), path, json.dumps(body).encode())
    gate = call(timing_triton.ports.http, path, json.dumps(body).encode())
    if body.get("max_tokens") == 3 and endpoint == "generate":  # tritonserver: a 200 whose body is an error
        assert own[0] == 200 and "exactly 1" in json.loads(own[2])["error"]
        assert gate[0] == 400 and "use /v2/models/ensemble/generate_stream" in json.loads(gate[2])["error"]
        return
    assert (gate[0], gate[1]["Content-Type"]) == (own[0], own[1]["Content-Type"])
    if endpoint == "generate_stream":  # the same events, byte for byte
        assert gate[2] == own[2] and gate[2].startswith(b"data: {")
    else:
        assert json.loads(gate[2]) == json.loads(own[2])


def test_generate_over_grpc_answers_as_tritonserver_s_own_http_for_a_missing_model(timing_triton):
    path, body = "/v2/models/nothing/generate", json.dumps(GOOD).encode()
    own = call(int(timing_triton.triton_http_url.rsplit(":", 1)[1]), path, body)
    gate = call(timing_triton.ports.http, path, body)
    assert (gate[0], gate[2]) == (own[0], own[2]) and own[0] == 404


@pytest.mark.slow
def test_64_concurrent_streams_each_get_all_their_own_events_and_nothing_else(timing_triton):
    """The load at which tritonserver 2.51's own HTTP streams lose events (docs/triton.md §6.4): through the
    gate every stream gets exactly its own events."""

    async def stream(session: aiohttp.ClientSession, request_id: str) -> list[str]:
        body = {"text_input": "紅葉", "id": request_id, "max_tokens": 24}
        url = f"{timing_triton.http_url}/v2/models/ensemble/generate_stream"
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
