"""The generated repository served by a real tritonserver: streaming Japanese, protocols, bad requests.

The served checkpoint is tests/served_models.py's tiny Swallow, whose greedy decoding walks a fixed cycle of
tokens ("紅葉😀𠮷野家齉") with an emoji and rare kanji split over 2-4 byte-level tokens each. So the answer
is known and every stream really has to reassemble characters split across tokens.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from click.testing import CliRunner

from tests.engine_metrics import engine_counters, when_idle
from tests.front_clients import http_call, posted
from tests.served_models import ANSWER_9, MAX_INPUT_LEN, MAX_SEQ_LEN, PROMPT, error_text
from triton_repo.client.chat import request_body, stream_grpc, stream_http, stream_http_events
from triton_repo.models.detokenizer import REPLACEMENT
from trt_build.cli.serve import chat as chat_command

MODELS = ("ensemble", "tensorrt_llm_bls")


@pytest.fixture(scope="module")
def cycle_ids(tokenizer):
    from tests.served_models import CYCLE

    return tokenizer.encode(CYCLE, add_special_tokens=False)


@pytest.fixture(scope="module")
def server(cycle_triton):
    return cycle_triton


def post(url: str, body: dict | bytes) -> tuple[int, str]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(
        url, data=data, method="POST", headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error_text(error.read())


def generate(server, model: str, **fields) -> dict:
    status, text = post(f"{server.http_url}/v2/models/{model}/generate", {"id": uuid.uuid4().hex, **fields})
    assert status == 200, text
    return json.loads(text)


def stream(server, model: str, **fields) -> list[str]:
    body = {"id": uuid.uuid4().hex, "stream": True, **fields}
    return list(stream_http(server.http_url, model, body))


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_http_generate_and_generate_stream_give_the_same_japanese(server, model):
    whole = generate(server, model, text_input=PROMPT, max_tokens=9)
    deltas = stream(server, model, text_input=PROMPT, max_tokens=9)
    assert whole["text_output"] == ANSWER_9
    assert "".join(deltas) == ANSWER_9
    assert not any(REPLACEMENT in delta for delta in deltas)
    assert len([d for d in deltas if d]) >= 5  # really streamed, one character group at a time


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_the_prompt_is_echoed_only_when_asked(server, model):
    answer = generate(server, model, text_input=PROMPT, max_tokens=9, exclude_input_in_output=False)
    assert answer["text_output"] == PROMPT + ANSWER_9


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_token_counts_are_returned_when_asked(server, model):
    answer = generate(
        server,
        model,
        text_input=PROMPT,
        max_tokens=9,
        return_num_input_tokens=True,
        return_num_output_tokens=True,
    )
    assert (answer["num_input_tokens"], answer["num_output_tokens"]) == (2, 9)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_streamed_token_counts_are_per_response_and_add_up(server, model):
    """Triton's OpenAI frontend sums num_output_tokens over responses, so each response counts its own."""
    body = {"id": uuid.uuid4().hex, "stream": True, "text_input": PROMPT, "max_tokens": 9}
    events = list(stream_http_events(server.http_url, model, {**body, "return_num_output_tokens": True}))
    counts = [event["num_output_tokens"] for event in events if "num_output_tokens" in event]
    assert sum(counts) == 9 and len(counts) > 1


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_character_cut_by_max_tokens(server, cycle_ids, tokenizer, model):
    """10 tokens end inside 齉: both fronts end like the full decode, streamed or not."""
    full = tokenizer.decode(cycle_ids[1:11])
    assert full.endswith(REPLACEMENT) and full.rstrip(REPLACEMENT) == ANSWER_9
    deltas = stream(server, model, text_input=PROMPT, max_tokens=10)
    assert "".join(deltas) == full == generate(server, model, text_input=PROMPT, max_tokens=10)["text_output"]
    assert not any(REPLACEMENT in delta for delta in deltas[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_grpc_streaming_with_tritonclient(server, model):
    body = request_body(PROMPT, 15, chat=False, stream=True)
    deltas = list(stream_grpc(server.grpc_url, model, body))
    assert "".join(deltas) == ANSWER_9 + "齉紅葉😀"
    assert not any(REPLACEMENT in delta for delta in deltas)


@pytest.mark.slow
def test_32_concurrent_streams_all_complete_in_order(server):
    def one(index: int) -> str:
        return "".join(stream(server, MODELS[index % 2], text_input=PROMPT, max_tokens=19))

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(32)))
    assert answers == [ANSWER_9 + "齉紅葉😀𠮷"] * 32


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_stop_words_end_id_and_seeded_sampling(server, model, tokenizer):
    assert (
        generate(server, model, text_input=PROMPT, max_tokens=30, stop_words=["野"])["text_output"]
        == "葉😀𠮷野"
    )
    end_id = tokenizer.encode("野", add_special_tokens=False)[0]
    assert generate(server, model, text_input=PROMPT, max_tokens=30, end_id=end_id)["text_output"] == "葉😀𠮷"
    assert (
        "野" not in generate(server, model, text_input=PROMPT, max_tokens=9, bad_words=["野"])["text_output"]
    )
    hot = dict(text_input=PROMPT, max_tokens=12, temperature=50.0)
    same = {generate(server, model, seed=7, **hot)["text_output"] for _ in range(2)}
    assert len(same) == 1
    various = {generate(server, model, seed=seed, **hot)["text_output"] for seed in range(5)}
    assert len(various) > 1
    assert (
        generate(server, model, temperature=0.0, text_input=PROMPT, max_tokens=9)["text_output"] == ANSWER_9
    )


@pytest.mark.slow
def test_chat_template_and_a_single_bos(server, tokenizer):
    counts = dict(max_tokens=1, return_num_input_tokens=True)
    messages = [{"role": "system", "content": "日本語で答えて"}, {"role": "user", "content": "紅葉は?"}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    expected = len(tokenizer.encode(rendered, add_special_tokens=False))
    assert rendered.count("<|begin_of_text|>") == 1
    for model in MODELS:
        answer = generate(
            server, model, text_input="", messages=json.dumps(messages, ensure_ascii=False), **counts
        )
        assert answer["num_input_tokens"] == expected
        # a prompt the client rendered already (OpenAI frontend) keeps its one BOS
        assert generate(server, model, text_input=rendered, **counts)["num_input_tokens"] == expected
        single = [{"role": "user", "content": "紅葉は?"}]
        templated = tokenizer.apply_chat_template(single, tokenize=False, add_generation_prompt=True)
        answer = generate(server, model, text_input="紅葉は?", apply_chat_template=True, **counts)
        assert answer["num_input_tokens"] == len(tokenizer.encode(templated, add_special_tokens=False))


BAD_REQUESTS = [
    ({"max_tokens": 4}, "text_input"),
    ({"text_input": PROMPT, "max_tokens": 0}, "max_tokens 0 is out of range: send an integer at least 1"),
    ({"text_input": PROMPT, "max_tokens": MAX_SEQ_LEN}, f"at most {MAX_SEQ_LEN - 1}"),
    # tritonserver's own JSON parsing would wrap, 500 or ignore these; the HTTP gate names the field
    ({"text_input": PROMPT, "max_tokens": 2**31}, "max_tokens 2147483648 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 2**32 + 4}, "max_tokens 4294967300 is out of range"),
    ({"text_input": PROMPT, "max_tokens": "4"}, 'max_tokens must be an integer, not "4"'),
    ({"text_input": PROMPT, "max_tokens": 4.5}, "max_tokens must be an integer, not 4.5"),
    ({"text_input": PROMPT, "max_tokens": None}, "max_tokens is null"),
    ({"text_input": PROMPT, "max_tokens": 4, "seed": -1}, "seed -1 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 4, "temperature": "hot"}, "temperature must be a number"),
    ({"text_input": PROMPT, "max_tokens": 4, "stream": "yes"}, "stream must be true or false"),
    ({"text_input": PROMPT, "max_new_tokens": 4}, "did you mean max_tokens?"),
    (b"{not json", "is not JSON"),
    ({"text_input": PROMPT, "max_tokens": 4, "temperature": -0.5}, "temperature -0.5 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 4, "top_p": 0}, "top_p 0 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 4, "top_p": 1.5}, "top_p 1.5 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 4, "top_k": -1}, "top_k -1 is out of range"),
    ({"text_input": PROMPT, "max_tokens": 4, "min_tokens": -5}, "min_tokens -5 is out of range"),
    ({"text_input": "紅葉" * 200, "max_tokens": 4}, f"accepts at most {MAX_INPUT_LEN}"),
    ({"text_input": PROMPT, "max_tokens": 4, "messages": "not json"}, "messages is not valid JSON"),
    (
        {"text_input": "紅葉" * 2000, "max_tokens": 4},
        "text_input is 12000 bytes",
    ),  # refused before tokenizing
    ({"text_input": PROMPT, "max_tokens": 4, "beam_width": 2}, "beam_width 2 is not served here"),
    ({"text_input": PROMPT, "max_tokens": 4, "beam_width": 4}, "beam_width 4 is not served here"),
    ({"text_input": PROMPT, "max_tokens": 4, "num_return_sequences": 3}, "num_return_sequences 3"),
]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(("body", "message"), BAD_REQUESTS)
def test_bad_requests_get_clear_errors_and_the_server_keeps_serving(server, model, body, message):
    for endpoint in ("generate", "generate_stream"):
        status, text = post(f"{server.http_url}/v2/models/{model}/{endpoint}", body)
        assert message in text and status == 400, (endpoint, status, text)
    assert generate(server, model, text_input=PROMPT, max_tokens=9)["text_output"] == ANSWER_9


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_stream_true_on_the_one_answer_endpoint_is_refused(server, model):
    status, text = post(
        f"{server.http_url}/v2/models/{model}/generate",
        {"text_input": PROMPT, "max_tokens": 4, "stream": True},
    )
    assert status == 400 and f"use /v2/models/{model}/generate_stream" in text, (status, text)
    assert stream(server, model, text_input=PROMPT, max_tokens=9)  # the streaming endpoint takes it


@pytest.mark.slow
def test_a_form_encoded_body_of_megabytes_is_answered_and_the_server_survives(server):
    """curl -d's default Content-Type: tritonserver 2.51 alone dies parsing 2.5 MB of it (docs/triton.md §6.3)."""
    body = json.dumps({"text_input": "紅葉" * 500_000, "max_tokens": 4}, ensure_ascii=False).encode()
    request = urllib.request.Request(
        f"{server.http_url}/v2/models/ensemble/generate",
        data=body,
        method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    with pytest.raises(urllib.error.HTTPError) as answered:
        urllib.request.urlopen(request, timeout=120)
    assert answered.value.code == 400
    assert "text_input is 3000000 bytes" in error_text(answered.value.read())
    assert server.process.poll() is None
    assert generate(server, "ensemble", text_input=PROMPT, max_tokens=9)["text_output"] == ANSWER_9


@pytest.mark.slow
def test_tritonserver_s_own_http_is_on_loopback_behind_the_gate(server):
    """The gate holds the public port; tritonserver's own HTTP listens on loopback only, and answers the
    same repository (an unchecked request there meets Triton's own parser)."""
    from triton_repo.launch.ports import listeners

    inside = listeners(server.triton_http_port)
    assert inside and all(listener.address == "0100007F" for listener in inside), inside
    assert server.triton_http_port != server.ports.http
    assert (
        post(
            f"{server.triton_http_url}/v2/models/ensemble/generate", {"text_input": PROMPT, "max_tokens": "4"}
        )[0]
        != 200
    )


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("endpoint", "fields"),
    [
        ("generate", {"text_input": PROMPT, "max_tokens": 9}),
        (
            "generate",
            {"text_input": PROMPT, "parameters": {"max_tokens": 4, "return_num_output_tokens": True}},
        ),
        ("generate_stream", {"text_input": PROMPT, "max_tokens": 9, "stream": True, "id": "r1"}),
        (
            "generate_stream",
            {"text_input": "紅葉" * 400, "max_tokens": 4, "stream": True},
        ),  # over max_input_len
        ("generate", {"text_input": "紅葉" * 400, "max_tokens": 4}),
    ],
)
def test_the_gate_answers_generate_with_tritonserver_s_own_bytes(server, model, endpoint, fields):
    """The gate answers over gRPC (tritonserver's HTTP streams lose events under load): status, type and
    body as tritonserver's own HTTP endpoint gives them, the model's 400 included."""
    path = f"/v2/models/{model}/{endpoint}"
    gate = http_call(f"{server.http_url}{path}", json.dumps(fields).encode())
    own = http_call(f"{server.triton_http_url}{path}", json.dumps(fields).encode())
    assert (gate[0], gate[1]["Content-Type"]) == (own[0], own[1]["Content-Type"])
    if own[0] == 200:
        assert gate[2] == own[2] and b'"text_output":"' in gate[2]
    else:  # passed on from tritonserver's HTTP endpoint: the same error
        assert own[0] == 400 and gate[2] == own[2] and b"max_input_len" in own[2]


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_invalid_utf8_is_rejected(server, model):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc_url)
    results = []
    client.start_stream(callback=lambda result, error: results.append((result, error)))
    text = grpcclient.InferInput("text_input", [1, 1], "BYTES")
    text.set_data_from_numpy(np.array([[b"\xe7\xb4\x85\xff"]], dtype=np.object_))
    tokens = grpcclient.InferInput("max_tokens", [1, 1], "INT32")
    tokens.set_data_from_numpy(np.array([[4]], dtype=np.int32))
    client.async_stream_infer(model, [text, tokens])
    deadline = time.monotonic() + 30
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    client.stop_stream()
    client.close()
    assert results, "no answer"
    error = results[0][1]
    assert isinstance(error, InferenceServerException) and "not valid UTF-8" in str(error)


@pytest.mark.slow
@pytest.mark.parametrize("model", MODELS)
def test_a_batch_of_prompts_is_refused_with_what_to_do(server, model):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(server.grpc_url)
    text = grpcclient.InferInput("text_input", [2, 1], "BYTES")
    text.set_data_from_numpy(np.array([[PROMPT.encode()], [PROMPT.encode()]], dtype=np.object_))
    tokens = grpcclient.InferInput("max_tokens", [2, 1], "INT32")
    tokens.set_data_from_numpy(np.array([[4], [4]], dtype=np.int32))
    results: list = []
    client.start_stream(callback=lambda result, error: results.append(error))
    client.async_stream_infer(model, [text, tokens])
    deadline = time.monotonic() + 30
    while not results and time.monotonic() < deadline:
        time.sleep(0.05)
    client.stop_stream()
    client.close()
    assert results and isinstance(results[0], InferenceServerException), results
    assert "text_input holds 2 prompts: send one prompt per request" in str(results[0])


def hang_up_after_first_event(server, model: str, request_id: str, max_tokens: int) -> None:
    body = json.dumps(
        {"id": request_id, "text_input": PROMPT, "max_tokens": max_tokens, "stream": True}
    ).encode()
    with posted(server.http_url, f"/v2/models/{model}/generate_stream", body, timeout_s=30) as sock:
        received = b""
        while b"data:" not in received:
            received += sock.recv(4096)


@pytest.mark.slow
def test_a_client_that_disconnects_mid_stream_stops_the_engine_through_the_bls(server):
    """Read one event of a 3000-token stream and hang up: the BLS stops the engine, whose own metrics
    count the request as finished far short of 3000 tokens."""
    before = when_idle(server.metrics_url)
    hang_up_after_first_event(server, "tensorrt_llm_bls", f"hangup-{uuid.uuid4().hex}", 3000)
    after = when_idle(server.metrics_url)
    assert after.finished - before.finished == 1
    assert after.output_tokens - before.output_tokens < 3000
    assert generate(server, "tensorrt_llm_bls", text_input=PROMPT, max_tokens=9)["text_output"] == ANSWER_9


@pytest.mark.slow
def test_a_client_that_leaves_a_generate_behind_the_gate_stops_the_engine(server):
    """Ask /generate for 3000 tokens, hang up once the engine runs it: the gate cancels its gRPC call, so the
    engine stops far short of 3000 tokens (tritonserver's own HTTP notices only when it writes the answer)."""
    before = when_idle(server.metrics_url)
    body = json.dumps({"id": f"leave-{uuid.uuid4().hex}", "text_input": PROMPT, "max_tokens": 3000}).encode()
    with posted(server.http_url, "/v2/models/ensemble/generate", body):
        deadline = time.monotonic() + 60
        while engine_counters(server.metrics_url).active == 0:
            assert time.monotonic() < deadline, "the engine never started the request"
            time.sleep(0.02)
    after = when_idle(server.metrics_url)
    assert after.finished - before.finished == 1
    assert after.output_tokens - before.output_tokens < 3000


@pytest.mark.slow
def test_metrics_endpoint_answers(server):
    generate(server, "ensemble", text_input=PROMPT, max_tokens=2)
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        metrics = response.read().decode()
    assert 'nv_inference_request_success{model="ensemble"' in metrics
    assert 'nv_inference_request_success{model="tensorrt_llm"' in metrics


@pytest.mark.slow
def test_chat_command_streams_to_the_terminal(server):
    result = CliRunner().invoke(
        chat_command,
        ["--url", server.http_url, "--raw", "--max-tokens", "9", "--model", "tensorrt_llm_bls", PROMPT],
    )
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER_9 + "\n"
    result = CliRunner().invoke(
        chat_command,
        [
            "--url",
            server.grpc_url,
            "--protocol",
            "grpc",
            "--wait",
            "30",
            "--raw",
            "--max-tokens",
            "9",
            PROMPT,
        ],
    )
    assert result.exit_code == 0, result.output
    assert result.output == ANSWER_9 + "\n"
