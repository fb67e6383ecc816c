"""`swallow-trt bench` against a real tritonserver running a model with known timing.

The model answers the first token 80 ms after a request reaches it and each next token 20 ms later, 8
tokens per request. These tests check what does not depend on the clock (every request, token and chunk
counted, from the server's own counts, levels written, errors counted); how close the measured TTFT, ITL,
TPOT, E2E and tokens/s come to the known timing is a benchmark (`python -m benchmarks.perf.bench_accuracy`),
since a busy machine makes any wall-clock bound flaky.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.perf.timing_model import MODEL_NAME, write_timing_repo
from triton_repo.launch.tritonserver import TritonServer
from trt_build.cli.bench import bench

TTFT_MS, GAP_MS, TOKENS = 80.0, 20.0, 8


@pytest.fixture(scope="module")
def timing_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("timing")
    repo = write_timing_repo(root / "repo", TTFT_MS, GAP_MS)
    with TritonServer(repo, log_path=root / "triton.log", exit_timeout_s=2) as server:
        yield server


def run_bench(url: str, protocol: str, output: Path, concurrency: str, requests: int) -> None:
    args = [
        "--url", url, "--model", MODEL_NAME, "--protocol", protocol, "--concurrency", concurrency,
        "--num-requests", str(requests), "--warmup", "2", "--isl", "32", "--osl", str(TOKENS),
        "--ignore-eos", "--goodput", "ttft:200,tpot:30", "--no-progress", "--output", str(output),
    ]  # fmt: skip
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output


def check_level(directory: Path, requests: int) -> None:
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["num_completed"] == requests and summary["num_errors"] == 0
    m = summary["metrics"]
    assert m["itl_ms"]["count"] == requests * (TOKENS - 1)
    assert m["ttft_ms"]["count"] == m["e2e_ms"]["count"] == requests
    assert summary["total_output_tokens"] == requests * TOKENS
    assert summary["output_tokens_source"] == {"server": requests}  # num_output_tokens summed per response
    assert summary["token_count_mismatches"] == 0
    assert 0 < summary["goodput"] <= summary["request_throughput"]
    rows = [json.loads(line) for line in (directory / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == requests and all(row["num_chunks"] == TOKENS for row in rows)
    assert all(row["output_tokens_tokenizer"] == TOKENS for row in rows)  # 東京 x 8 is 8 Llama 3.1 tokens


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_every_request_token_and_chunk_is_counted(timing_server, tmp_path, protocol):
    url = timing_server.grpc_url if protocol == "grpc" else timing_server.http_url
    out = tmp_path / "out"
    run_bench(url, protocol, out, "1,4", 8)
    index = json.loads((out / "index.json").read_text())
    assert [level["name"] for level in index["levels"]] == ["c1", "c4"]
    config = json.loads((out / "c4" / "summary.json").read_text())["config"]
    assert config["server_notes"] == []  # the model declares every optional input the client uses
    check_level(out / "c1", 8)
    check_level(out / "c4", 8)


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_server_errors_are_counted_and_bad_model_names_explained(timing_server, tmp_path, protocol):
    url = timing_server.grpc_url if protocol == "grpc" else timing_server.http_url
    args = ["--url", url, "--protocol", protocol, "--num-requests", "3", "--warmup", "0", "--isl", "8",
            "--osl", "2000", "--no-progress", "--output", str(tmp_path / "errors")]  # fmt: skip
    result = CliRunner().invoke(bench, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "errors" / "summary.json").read_text())
    assert summary["num_errors"] == 3 and summary["num_completed"] == 0
    assert any("exceeds 1000" in message for message in summary["errors"]), summary["errors"]
    wrong = CliRunner().invoke(bench, [*args[:-1], str(tmp_path / "wrong"), "--model", "no_such_model"])
    assert wrong.exit_code != 0 and "no_such_model" in wrong.output and "--model" in wrong.output
