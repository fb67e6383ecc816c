"""The OpenAI-compatible API (triton_repo/openai_front) against a real tritonserver on the CPU engine, with
the official `openai` client as the client.

The served model answers a fixed Japanese sentence whatever it is asked: its decoder layers are zero, so
the next token depends on the last one only, and its embeddings and lm_head chain the sentence's tokens
from the chat template's last token ("\\n\\n") to `<|eot_id|>`. 🍁 is three byte-level tokens, so every
stream really has to reassemble a split character. A second chain cycles あいあい... for long answers.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import openai
import pytest
import torch
from click.testing import CliRunner

from triton_repo.launch.tritonserver import TritonServer, free_port
from triton_repo.openai_front import OpenAIFrontServer, OpenAIFrontSettings
from triton_repo.openai_front.stops import StopText
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.cli.bench import bench as bench_command
from trt_build.cli.serve import chat as chat_command
from trt_build.convert.pipeline import convert_checkpoint
from trt_build.source.tokenizer import copy_tokenizer

SENTENCE = "東京の紅葉は美しい🍁。"
PROMPT = "東京"  # a raw completion prompt: [BOS, 東京] continues the sentence
REST = SENTENCE.removeprefix(PROMPT)
SERVED = "swallow-tiny"
MAX_INPUT_LEN, MAX_SEQ_LEN = 64, 4096
QUESTION = [{"role": "system", "content": "日本語で答えて"}, {"role": "user", "content": "紅葉は?"}]
REPLACEMENT = "\ufffd"
TEMPLATE_END = "\n\n"  # the Llama 3.1 chat template ends the prompt with the assistant header and this
CYCLE = "あい"
EOT = "<|eot_id|>"


def chain_links(tokenizer) -> dict[int, int]:
    """token -> the token greedy decoding must pick after it."""
    sentence = tokenizer.encode(SENTENCE, add_special_tokens=False)
    cycle = tokenizer.encode(CYCLE, add_special_tokens=False)
    (start,) = tokenizer.encode(TEMPLATE_END, add_special_tokens=False)
    eot = tokenizer.convert_tokens_to_ids(EOT)
    order = [start, *sentence, eot]
    links = dict(zip(order[:-1], order[1:], strict=True))
    links.update(zip(cycle, [*cycle[1:], cycle[0]], strict=True))
    assert len(set(sentence + cycle + [start])) == len(sentence) + len(cycle) + 1
    return links


def write_answer_model(tiny_model_dir: Path, output: Path, tokenizer) -> dict[int, int]:
    """Zero every layer (the residual stream carries the embedding through) and map each linked token's
    embedding to its own slot, whose lm_head row points at the next token."""
    from transformers import AutoModelForCausalLM

    links = chain_links(tokenizer)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    embed, head = model.model.embed_tokens.weight, model.lm_head.weight
    assert embed.data_ptr() != head.data_ptr() and len(links) <= embed.shape[1]
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            parameter.fill_(1.0 if name.endswith("norm.weight") else 0.0)
        for slot, (token, following) in enumerate(links.items()):
            embed[token, slot] = 1.0
            head[following, slot] = 1.0  # logit 8 after the final norm: greedy picks it, sampling rarely
    model.save_pretrained(output)
    copy_tokenizer(output)
    return links


def test_stop_text_holds_back_only_what_may_start_a_stop_string():
    stops = StopText(("。", "美しい"))
    pieces = [stops.push(text) for text in ("東京の", "紅葉は美", "し", "い🍁")]
    assert pieces == [("東京の", False), ("紅葉は", False), ("", False), ("", True)]
    assert stops.flush() == ""
    unstopped = StopText(("xyz",))
    released = [unstopped.push(text)[0] for text in ("ab", "cx", "yd", "xy")]
    assert released == ["ab", "c", "xyd", ""] and unstopped.flush() == "xy"
    assert StopText(()).push("東京") == ("東京", False)
    assert StopText(("は", "紅")).push("紅葉は") == ("", True)  # the earliest match wins


# ---------------------------------------------------------------- the served stack


@pytest.fixture(scope="module")
def triton(tmp_path_factory, tiny_model_dir, tokenizer):
    root = tmp_path_factory.mktemp("openai-front")
    write_answer_model(tiny_model_dir, root / "model", tokenizer)
    checkpoint = convert_checkpoint(root / "model", root / "checkpoint")
    repo = write_repository(
        RepoOptions(
            root / "repo",
            root / "model",
            checkpoint_dir=checkpoint,
            max_input_len=MAX_INPUT_LEN,
            max_seq_len=MAX_SEQ_LEN,
        )
    )
    with TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as running:
        yield running


def front_settings(triton, **settings) -> OpenAIFrontSettings:
    return OpenAIFrontSettings(grpc_url=triton.grpc_url, port=free_port(), **settings)


@pytest.fixture(scope="module")
def front(triton):
    """The OpenAI API on the default front model (tensorrt_llm_bls)."""
    with OpenAIFrontServer(front_settings(triton, served_model_name=SERVED)) as running:
        yield running


@pytest.fixture(scope="module")
def ensemble_front(triton):
    """The same API on the `ensemble`, named after it (the served name's default)."""
    with OpenAIFrontServer(front_settings(triton, front_model="ensemble")) as running:
        yield running


def client_for(front: OpenAIFrontServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=front.url, api_key="unused", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def client(front) -> openai.OpenAI:
    return client_for(front)


def rendered_prompt_tokens(tokenizer, messages) -> int:
    rendered = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert rendered.count("<|begin_of_text|>") == 1
    return len(tokenizer.encode(rendered, add_special_tokens=False))


def streamed_chat(client: openai.OpenAI, model: str = SERVED, **request) -> tuple[list[str], list]:
    """(content deltas, every chunk) of a streamed chat completion that asks for usage."""
    stream = client.chat.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, **request
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    return deltas, chunks


def streamed_completion(client: openai.OpenAI, model: str = SERVED, **request) -> tuple[list[str], list]:
    stream = client.completions.create(
        model=model, stream=True, stream_options={"include_usage": True}, **request
    )
    chunks = list(stream)
    deltas = [c.choices[0].text for c in chunks if c.choices and c.choices[0].text]
    return deltas, chunks


def finish_reason(chunks) -> str:
    reasons = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert len(reasons) == 1, reasons
    return reasons[0]


def get(url: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


# ---------------------------------------------------------------- answers


@pytest.mark.slow
def test_models_and_health(front, ensemble_front):
    assert [model.id for model in client_for(front).models.list()] == [SERVED]
    assert client_for(front).models.retrieve(SERVED).id == SERVED
    assert [model.id for model in client_for(ensemble_front).models.list()] == ["ensemble"]
    assert get(front.url.removesuffix("/v1") + "/health") == (200, {"status": "ready"})


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bls", "ensemble"])
def test_chat_streamed_and_not_give_the_same_answer_and_usage(request, tokenizer, which):
    front = request.getfixturevalue("front" if which == "bls" else "ensemble_front")
    model = SERVED if which == "bls" else "ensemble"
    client = client_for(front)
    whole = client.chat.completions.create(model=model, messages=QUESTION, temperature=0)
    assert whole.choices[0].message.content == SENTENCE
    assert whole.choices[0].finish_reason == "stop"  # <|eot_id|>, the repository's end id
    prompt_tokens = rendered_prompt_tokens(tokenizer, QUESTION)  # one BOS: a second would count here
    completion_tokens = len(tokenizer.encode(SENTENCE, add_special_tokens=False))
    assert (whole.usage.prompt_tokens, whole.usage.completion_tokens, whole.usage.total_tokens) == (
        prompt_tokens,
        completion_tokens,
        prompt_tokens + completion_tokens,
    )
    deltas, chunks = streamed_chat(client, model, messages=QUESTION, temperature=0)
    assert "".join(deltas) == SENTENCE
    assert len(deltas) >= 8 and not any(REPLACEMENT in delta for delta in deltas)  # really streamed
    assert chunks[0].choices[0].delta.role == "assistant"
    assert finish_reason(chunks) == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage == whole.usage
    assert all(chunk.usage is None for chunk in chunks[:-1])


@pytest.mark.slow
@pytest.mark.parametrize("which", ["bls", "ensemble"])
def test_completions_streamed_and_not(request, tokenizer, which):
    front = request.getfixturevalue("front" if which == "bls" else "ensemble_front")
    model = SERVED if which == "bls" else "ensemble"
    client = client_for(front)
    whole = client.completions.create(model=model, prompt=PROMPT)
    assert (whole.choices[0].text, whole.choices[0].finish_reason) == (REST, "stop")
    assert whole.usage.prompt_tokens == 1 + len(tokenizer.encode(PROMPT, add_special_tokens=False))  # BOS
    assert whole.usage.completion_tokens == len(tokenizer.encode(REST, add_special_tokens=False))
    deltas, chunks = streamed_completion(client, model, prompt=PROMPT)
    assert "".join(deltas) == REST and len(deltas) >= 6
    assert finish_reason(chunks) == "stop" and chunks[-1].usage == whole.usage


def cancelled_counts(triton) -> list[int]:
    """How many tokens each request the engine stopped early had made, in order (the engine logs it)."""
    log = triton.log_path.read_text(errors="replace")
    return [int(count) for count in re.findall(r"cancelled after (\d+) tokens", log)]


def leave_early(client: openai.OpenAI, stream: bool, max_tokens: int) -> None:
    """Ask for a long answer and go away: after two chunks, or (not streamed) when the client times out."""
    if stream:
        chunks = client.completions.create(model=SERVED, prompt="あ", max_tokens=max_tokens, stream=True)
        received = [chunk.choices[0].text for chunk, _ in zip(chunks, range(2), strict=False)]
        chunks.close()
        assert "".join(received) == "いあ"
        return
    impatient = client.with_options(timeout=1.0)
    with pytest.raises(openai.APITimeoutError):
        impatient.completions.create(model=SERVED, prompt="あ", max_tokens=max_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("stream", [True, False])
def test_a_client_that_goes_away_stops_the_engine(client, triton, stream):
    """The engine logs that it stopped a 4000-token answer early; the server keeps serving."""
    max_tokens = MAX_SEQ_LEN - 96
    before = len(cancelled_counts(triton))
    leave_early(client, stream, max_tokens)
    deadline, counts = time.monotonic() + 60, cancelled_counts(triton)
    while len(counts) == before and time.monotonic() < deadline:
        time.sleep(0.2)
        counts = cancelled_counts(triton)
    assert len(counts) == before + 1, triton.log_tail()
    assert counts[-1] < max_tokens
    assert client.completions.create(model=SERVED, prompt=PROMPT).choices[0].text == REST


@pytest.mark.slow
@pytest.mark.parametrize(
    "stop",
    [
        "美し",  # the engine spells it 美 + しい: only the text shows the match
        "🍁",  # three byte-level tokens
        ["x", "葉は"],
        "京の",  # starts inside the token 東京
    ],
)
def test_stop_strings_cut_the_text(client, stop):
    first = stop if isinstance(stop, str) else stop[1]
    expected = SENTENCE[: SENTENCE.index(first)]
    whole = client.chat.completions.create(model=SERVED, messages=QUESTION, stop=stop)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (expected, "stop")
    deltas, chunks = streamed_chat(client, messages=QUESTION, stop=stop)
    assert "".join(deltas) == expected and finish_reason(chunks) == "stop"


@pytest.mark.slow
def test_max_tokens_gives_length(client, tokenizer):
    ids = tokenizer.encode(SENTENCE, add_special_tokens=False)
    for limit in ({"max_tokens": 3}, {"max_completion_tokens": 3}):
        whole = client.chat.completions.create(model=SERVED, messages=QUESTION, **limit)
        assert whole.choices[0].message.content == tokenizer.decode(ids[:3]) == "東京の紅"
        assert (whole.choices[0].finish_reason, whole.usage.completion_tokens) == ("length", 3)
        deltas, chunks = streamed_chat(client, messages=QUESTION, **limit)
        assert "".join(deltas) == "東京の紅" and finish_reason(chunks) == "length"
    # 8 tokens end inside 🍁: both ways end as the full decode does
    cut = client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=7)
    deltas, _ = streamed_completion(client, prompt=PROMPT, max_tokens=7)
    assert cut.choices[0].text == "".join(deltas) == tokenizer.decode(ids[1:8])


@pytest.mark.slow
def test_temperature_top_p_and_seed_reach_the_engine(client):
    hot = dict(model=SERVED, messages=QUESTION, max_tokens=6, temperature=1.0)
    same = {client.chat.completions.create(seed=7, **hot).choices[0].message.content for _ in range(2)}
    assert len(same) == 1
    various = {
        client.chat.completions.create(seed=seed, **hot).choices[0].message.content for seed in range(4)
    }
    assert len(various) > 1 and SENTENCE[:4] not in various
    nucleus = client.chat.completions.create(top_p=0.01, seed=3, **hot)  # only the top token is left
    assert nucleus.choices[0].message.content == SENTENCE[:7]
    cold = client.chat.completions.create(**{**hot, "temperature": 0.05}, seed=3)
    assert cold.choices[0].message.content == SENTENCE[:7]


@pytest.mark.slow
def test_concurrent_streams_are_all_exact(front):
    client = openai.AsyncOpenAI(base_url=front.url, api_key="unused", max_retries=0, timeout=120)

    async def one(index: int) -> str:
        if index % 2:
            stream = await client.completions.create(model=SERVED, prompt=PROMPT, stream=True)
            return PROMPT + "".join([c.choices[0].text async for c in stream if c.choices])
        stream = await client.chat.completions.create(model=SERVED, messages=QUESTION, stream=True)
        return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

    async def all_of_them() -> list[str]:
        try:
            return await asyncio.gather(*(one(index) for index in range(16)))
        finally:
            await client.close()

    assert asyncio.run(all_of_them()) == [SENTENCE] * 16


# ---------------------------------------------------------------- errors


def error_of(raised: pytest.ExceptionInfo) -> dict:
    body = raised.value.body
    assert set(body) == {"message", "type", "param", "code"}, body  # the client unwraps {"error": ...}
    assert "Traceback" not in body["message"]
    return body


@pytest.mark.slow
@pytest.mark.parametrize(
    ("request_fields", "param"),
    [
        ({"temperature": "hot"}, "temperature"),
        ({"max_tokens": "9"}, "max_tokens"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]}, "tools"),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role"),
        ({"messages": []}, "messages"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"stop": 5}, "stop"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
            "messages.0.content",
        ),  # fmt: skip
        ({"max_tokens": MAX_SEQ_LEN}, "max_tokens"),  # refused by the repository: above max_seq_len
        ({"max_tokens": 2**31}, "max_tokens"),  # never wrapped into INT32 on the way to Triton
        ({"seed": -1}, "seed"),
        ({"temperature": -0.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"messages": [{"role": "user", "content": "紅葉" * 200}]}, "messages"),  # above max_input_len
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_invalid_requests_are_400_naming_the_field(client, request_fields, param, stream):
    fields = {"model": SERVED, "messages": QUESTION, **request_fields}
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(**fields, stream=stream) if stream else client.chat.completions.create(
            **fields
        )
    body = error_of(raised)
    assert raised.value.status_code == 400 and body["param"] == param, body
    assert body["type"] == "invalid_request_error"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("prompt", "message"),
    [
        (["東京", "大阪"], "one prompt per request"),
        ([[1, 2, 3]], "token-id prompts are not supported"),
        ("紅葉" * 200, "accepts at most 64"),  # the repository's max_input_len
    ],
)
def test_invalid_completion_prompts_are_400(client, prompt, message):
    with pytest.raises(openai.BadRequestError) as raised:
        client.completions.create(model=SERVED, prompt=prompt)
    body = error_of(raised)
    assert body["param"] == "prompt" and message in body["message"], body


@pytest.mark.slow
def test_unknown_model_is_404(client):
    for create in (
        lambda: client.chat.completions.create(model="gpt-4o", messages=QUESTION),
        lambda: client.completions.create(model="gpt-4o", prompt=PROMPT, stream=True),
        lambda: client.models.retrieve("gpt-4o"),
    ):
        with pytest.raises(openai.NotFoundError) as raised:
            create()
        body = error_of(raised)
        assert (raised.value.status_code, body["code"], body["param"]) == (404, "model_not_found", "model")
        assert "gpt-4o" in body["message"] and SERVED in body["message"]


@pytest.mark.slow
def test_a_body_that_is_not_json_is_400(front):
    request = urllib.request.Request(
        front.url + "/chat/completions",
        data=b"{not json",
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with pytest.raises(urllib.error.HTTPError) as raised:
        urllib.request.urlopen(request, timeout=30)
    body = json.loads(raised.value.read())
    assert raised.value.code == 400 and set(body["error"]) == {"message", "type", "param", "code"}


def test_a_huge_body_is_refused_413_before_it_is_read():
    settings = OpenAIFrontSettings(
        grpc_url=f"127.0.0.1:{free_port()}", port=free_port(), served_model_name="x", max_body_bytes=4096
    )
    with OpenAIFrontServer(settings) as front:
        with pytest.raises(openai.APIStatusError) as raised:
            client_for(front).chat.completions.create(
                model="x", messages=[{"role": "user", "content": "紅" * 5000}]
            )
        assert raised.value.status_code == 413 and "4096 bytes" in error_of(raised)["message"]


def test_without_triton_the_api_answers_503():
    """No tritonserver behind the port: health and requests say 503 in the OpenAI shape."""
    settings = OpenAIFrontSettings(
        grpc_url=f"127.0.0.1:{free_port()}", port=free_port(), served_model_name="x"
    )
    with OpenAIFrontServer(settings) as front:
        assert get(front.url.removesuffix("/v1") + "/health")[0] == 503
        client = client_for(front)
        with pytest.raises(openai.InternalServerError) as raised:
            client.chat.completions.create(model="x", messages=QUESTION)
        assert raised.value.status_code == 503 and error_of(raised)["type"] == "service_unavailable"


# ---------------------------------------------------------------- our clients against it


@pytest.mark.slow
def test_chat_command_over_openai(front):
    base = front.url.removesuffix("/v1")
    for extra in ([], ["--raw"]):
        args = [
            "--url",
            base,
            "--protocol",
            "openai",
            "--wait",
            "10",
            *extra,
            "紅葉は?" if not extra else PROMPT,
        ]
        result = CliRunner().invoke(chat_command, args)
        assert result.exit_code == 0, result.output
        assert result.output == (SENTENCE if not extra else REST) + "\n"


@pytest.mark.slow
def test_bench_over_openai(front, tmp_path):
    args = [
        "--url", front.url.removesuffix("/v1"), "--protocol", "openai", "--concurrency", "1,2",
        "--num-requests", "4", "--warmup", "1", "--isl", "16", "--osl", "8", "--ignore-eos", "--no-progress",
        "--output", str(tmp_path / "bench"),
    ]  # fmt: skip
    result = CliRunner().invoke(bench_command, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    for level in ("c1", "c2"):
        summary = json.loads((tmp_path / "bench" / level / "summary.json").read_text())
        assert summary["num_completed"] == 4 and summary["num_errors"] == 0, summary
        assert summary["total_output_tokens"] == 4 * 8  # ignore_eos -> min_tokens = max_tokens
        assert summary["output_tokens_source"] == {"server": 4}
        assert summary["config"]["model"] == SERVED


@pytest.mark.slow
def test_python_m_entry_serves_until_interrupted(triton):
    port = free_port()
    command = [
        sys.executable,
        "-m",
        "triton_repo.openai_front",
        "--grpc-url",
        triton.grpc_url,
        "--port",
        str(port),
    ]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline, status = time.monotonic() + 60, None
        while status != 200 and time.monotonic() < deadline and process.poll() is None:
            try:
                status = get(f"http://127.0.0.1:{port}/health")[0]
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.2)
        assert status == 200, process.stdout.read().decode() if process.poll() is not None else "not ready"
        assert get(f"http://127.0.0.1:{port}/v1/models")[1]["data"][0]["id"] == "tensorrt_llm_bls"
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0)
        answer = client.chat.completions.create(model="tensorrt_llm_bls", messages=QUESTION)
        assert answer.choices[0].message.content == SENTENCE
    finally:
        process.send_signal(subprocess.signal.SIGINT)
        output = process.communicate(timeout=30)[0].decode()
    assert process.returncode == 0, output
    assert "POST /v1/chat/completions" in output
    assert "紅葉" not in output and "東京" not in output  # the log never carries a request's or answer's text


# ---------------------------------------------------------------- the pytorch-target (llmapi) repository


@pytest.fixture(scope="module")
def llmapi_front(tmp_path_factory, tiny_model_dir, tokenizer):
    """The CPU stand-in of a pytorch-target repository (written from the HF model) and the API before it."""
    root = tmp_path_factory.mktemp("openai-front-llmapi")
    write_answer_model(tiny_model_dir, root / "model", tokenizer)
    repo = write_repository(
        RepoOptions(root / "repo", root / "model", checkpoint_dir=root / "model", max_seq_len=MAX_SEQ_LEN)
    )
    with (
        TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as running,
        OpenAIFrontServer(front_settings(running, served_model_name=SERVED)) as front,
    ):
        yield front


@pytest.mark.slow
def test_the_pytorch_target_repository_answers_the_same(llmapi_front, tokenizer):
    client = client_for(llmapi_front)
    whole = client.chat.completions.create(model=SERVED, messages=QUESTION)
    assert (whole.choices[0].message.content, whole.choices[0].finish_reason) == (SENTENCE, "stop")
    assert whole.usage.prompt_tokens == rendered_prompt_tokens(tokenizer, QUESTION)
    assert whole.usage.completion_tokens == len(tokenizer.encode(SENTENCE, add_special_tokens=False))
    deltas, chunks = streamed_chat(client, messages=QUESTION)
    assert "".join(deltas) == SENTENCE and chunks[-1].usage == whole.usage
    assert not any(REPLACEMENT in delta for delta in deltas)
    cut = client.completions.create(model=SERVED, prompt=PROMPT, max_tokens=3, stop="美")
    assert (cut.choices[0].text, cut.choices[0].finish_reason) == ("の紅葉", "length")
    stopped = client.completions.create(model=SERVED, prompt=PROMPT, stop="美")
    assert (stopped.choices[0].text, stopped.choices[0].finish_reason) == ("の紅葉は", "stop")
