"""`swallow-trt conform`: against our Triton fronts on the chain model (a real tritonserver on the CPU
engine), against small servers that answer right or wrong, and against nothing at all."""

from __future__ import annotations

import json
import urllib.request
import uuid

import pytest
from click.testing import CliRunner

from benchmarks.conform.checks import CHECKS, FAIL, PASS, Context, PathRun, one_bos, stops
from benchmarks.conform.paths import Answer, ClientPath
from benchmarks.conform.prompt import render_prompt
from tests.conform_fakes import AppServer, Chain, openai_app, triton_app
from triton_repo.launch.tritonserver import TritonServer, free_port
from triton_repo.openai_front import OpenAIFrontServer, OpenAIFrontSettings
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.cli.conform import conform as conform_command
from trt_build.source.chain_model import CHAIN_SENTENCE, chain_token_ids, write_chain_model

TRITON_PATHS = [
    f"{model}/{path}"
    for model in ("ensemble", "tensorrt_llm_bls")
    for path in (
        "http-generate/id",
        "http-generate/no-id",
        "http-stream/id",
        "http-stream/no-id",
        "grpc-stream/id",
        "grpc-stream/no-id",
    )
]
OPENAI_PATHS = ["chat", "chat/stream", "completions", "completions/stream"]
# What a server that decodes each streamed token alone gets wrong on every streamed path.
PER_TOKEN_FAILURES = {"exact", "no-fffd", "characters"}


def run_conform(*args: str) -> tuple[int, str, dict | None]:
    """(exit code, output, the JSON report when --json printed one)."""
    result = CliRunner().invoke(conform_command, list(args))
    report = None
    if "--json" in args and result.output.lstrip().startswith("{"):
        report = json.loads(result.output[: result.output.rindex("}") + 1])
    return result.exit_code, result.output, report


def failing(report: dict) -> set[tuple[str, str]]:
    return {
        (row["path"], check)
        for row in report["paths"]
        for check, o in row["checks"].items()
        if o["status"] == FAIL
    }


@pytest.fixture(scope="module")
def chain_server(chain_triton):
    return chain_triton


@pytest.mark.slow
@pytest.mark.parametrize("model", ["ensemble", "tensorrt_llm_bls"])
def test_the_chain_model_answers_its_sentence_through_triton(chain_server, model, tokenizer):
    body = {
        "id": uuid.uuid4().hex,
        "text_input": "こんにちは",
        "max_tokens": 200,
        "return_num_output_tokens": True,
    }
    request = urllib.request.Request(
        f"{chain_server.http_url}/v2/models/{model}/generate", data=json.dumps(body).encode(), method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        answer = json.loads(response.read())
    assert answer["text_output"] == CHAIN_SENTENCE
    assert answer["num_output_tokens"] == len(chain_token_ids(CHAIN_SENTENCE, tokenizer))  # stopped at eot


@pytest.mark.slow
def test_conform_passes_every_check_on_every_path_of_our_triton_fronts(chain_server):
    """`ensemble` is the stateful front (issue 13, point 1): id-less streams are exact too."""
    code, output, report = run_conform(
        chain_server.http_url, "--grpc-url", chain_server.grpc_url, "--json", "--concurrency", "4"
    )
    assert report is not None, output
    assert report["protocol"] == "triton" and [row["path"] for row in report["paths"]] == TRITON_PATHS
    assert failing(report) == set(), output
    assert code == 0, output
    for row in report["paths"]:
        assert row["answer"] == CHAIN_SENTENCE, row
        statuses = {check: outcome["status"] for check, outcome in row["checks"].items()}
        # the counts are really compared (the repository reports them), and concurrency really ran
        assert statuses["one-bos"] == statuses["usage"] == statuses["stops"] == PASS, row
        assert statuses["concurrency"] == PASS and "4 identical" in row["checks"]["concurrency"]["detail"]


@pytest.mark.slow
def test_conform_passes_our_openai_api_on_the_engine_repository(chain_server):
    settings = OpenAIFrontSettings(
        grpc_url=chain_server.grpc_url, port=free_port(), served_model_name="chain"
    )
    with OpenAIFrontServer(settings) as front:
        code, output, report = run_conform(front.url, "--json", "--concurrency", "4")
    assert report is not None and code == 0 and failing(report) == set(), output
    assert report["protocol"] == "openai" and [row["path"] for row in report["paths"]] == OPENAI_PATHS
    for row in report["paths"]:
        assert row["answer"] == CHAIN_SENTENCE
        assert all(o["status"] == PASS for o in row["checks"].values()), row


@pytest.mark.slow
def test_conform_passes_the_pytorch_target_repository_and_the_openai_api_before_it(tmp_path_factory):
    """The llmapi repository (its CPU stand-in) on the chain model: its Triton front and our OpenAI API."""
    root = tmp_path_factory.mktemp("conform-llmapi")
    model = write_chain_model(root / "chain")
    repo = write_repository(RepoOptions(root / "repo", model, checkpoint_dir=model, max_seq_len=1024))
    with (
        TritonServer(repo, log_path=root / "tritonserver.log", exit_timeout_s=2) as triton,
        OpenAIFrontServer(OpenAIFrontSettings(grpc_url=triton.grpc_url, port=free_port())) as front,
    ):
        results = [
            run_conform(triton.http_url, "--grpc-url", triton.grpc_url, "--json", "--concurrency", "4"),
            run_conform(front.url, "--json", "--concurrency", "4"),
        ]
    for code, output, report in results:
        assert report is not None and code == 0 and failing(report) == set(), output
        assert report["paths"] and all(row["answer"] == CHAIN_SENTENCE for row in report["paths"]), output
    assert {row["path"].split("/")[0] for row in results[0][2]["paths"]} == {"tensorrt_llm_bls"}


@pytest.fixture(scope="module")
def chain(tokenizer):
    return Chain(tokenizer)


def test_conform_fails_a_triton_server_that_decodes_each_token_alone(tokenizer):
    with AppServer(triton_app(Chain(tokenizer, per_token=True))) as server:
        code, output, report = run_conform(server.url, "--json", "--no-grpc", "--concurrency", "2")
    assert code == 1, output
    streamed = {"ensemble/http-stream/id", "ensemble/http-stream/no-id"}
    assert failing(report) == {(path, check) for path in streamed for check in PER_TOKEN_FAILURES}
    rows = {row["path"]: row for row in report["paths"]}
    assert "U+FFFD" in rows["ensemble/http-stream/id"]["checks"]["no-fffd"]["detail"]
    assert "emoji" in rows["ensemble/http-stream/id"]["checks"]["characters"]["detail"]
    assert "exact on ensemble/http-stream/no-id" in output


def test_conform_passes_a_triton_server_that_streams_right(tokenizer):
    with AppServer(triton_app(Chain(tokenizer))) as server:
        code, output, _ = run_conform(server.url, "--no-grpc", "--concurrency", "2")
    assert code == 0, output
    assert "result: PASS" in output and "FAIL" not in output


def test_conform_passes_an_openai_server_that_streams_right(tokenizer):
    with AppServer(openai_app(Chain(tokenizer))) as server:
        code, output, report = run_conform(server.url, "--json", "--concurrency", "4")
    assert code == 0, output
    assert report["protocol"] == "openai" and report["target"] == "chain"
    assert [row["path"] for row in report["paths"]] == OPENAI_PATHS
    for row in report["paths"]:
        assert row["answer"] == CHAIN_SENTENCE
        assert all(o["status"] == PASS for o in row["checks"].values()), row
        assert "stop token counted" in row["checks"]["usage"]["detail"]


def test_conform_fails_an_openai_server_that_decodes_each_token_alone(tokenizer):
    with AppServer(openai_app(Chain(tokenizer, per_token=True))) as server:
        code, output, report = run_conform(server.url, "--json", "--protocol", "openai", "--concurrency", "2")
    assert code == 1, output
    expected = {
        (path, check) for path in ("chat/stream", "completions/stream") for check in PER_TOKEN_FAILURES
    }
    assert failing(report) == expected


def test_a_closed_port_is_said_first():
    url = f"http://127.0.0.1:{free_port()}"
    code, output, _ = run_conform(url, "--wait", "1")
    assert code == 2
    assert output.startswith(f"Error: {url} refuses connections after waiting 1 s"), output


def test_a_server_that_is_not_ready_is_said_first(tokenizer):
    with AppServer(triton_app(Chain(tokenizer), ready=False)) as server:
        code, output, _ = run_conform(server.url)
    assert code == 2
    assert output.startswith(f"Error: {server.url} is not ready: Triton is live but not ready"), output


def run_of(answer: Answer, reference: Answer | None = None) -> PathRun:
    path = ClientPath("p", True, "ref", send=None)  # type: ignore[arg-type]
    return PathRun(path, answer, reference or answer, [])


def test_one_bos_names_a_second_bos(tokenizer):
    context = Context(tokenizer, render_prompt(tokenizer), 256)
    expected = context.prompt.tokens
    assert one_bos(run_of(Answer(text="x", prompt_tokens=expected)), context).status == PASS
    outcome = one_bos(run_of(Answer(text="x", prompt_tokens=expected + 1)), context)
    assert outcome.status == FAIL and "two BOS" in outcome.detail


@pytest.mark.parametrize(
    ("answer", "why"),
    [
        (Answer(text="鎌倉<|eot_id|>", finish_reason="stop"), "<|eot_id|>"),
        (Answer(text="鎌倉assistant<|end_header_id|>", finish_reason="stop"), "<|end_header_id|>"),
        (Answer(text="鎌倉", finish_reason="length"), "finish_reason 'length'"),
        (Answer(text="鎌倉", completion_tokens=256), "ran to max_tokens"),
    ],
)
def test_stops_names_leaked_stop_text_and_answers_cut_by_length(tokenizer, answer, why):
    outcome = stops(run_of(answer), Context(tokenizer, render_prompt(tokenizer), 256))
    assert outcome.status == FAIL and why in outcome.detail


def test_every_check_has_a_legend():
    from benchmarks.conform.checks import describe_checks

    assert list(describe_checks()) == list(CHECKS) and all(describe_checks().values())
