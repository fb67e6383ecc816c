"""`swallow-trt bench` against a real tritonserver running a model with known timing.

The model answers the first token 80 ms after a request reaches it and each next token 20 ms later,
8 tokens per request. Expected: TTFT 80 ms, ITL 20 ms, TPOT 20 ms, E2E 80 + 7 x 20 = 220 ms.
Tolerances: TTFT and E2E (mean and p50) within -2 / +15 ms (the client and server add time, never
remove it); ITL p50 within +-5 ms, ITL and TPOT means within +-3 ms; output tokens/s within -15 % / +5 %
of requests x tokens / (batches x E2E). Each check gets a few measurements (tests/timing.py).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.bench_timing_model import MODEL_NAME, write_timing_repo
from tests.timing import on_time
from triton_repo.launch.tritonserver import TritonServer
from trt_build.cli.bench import bench

TTFT_MS, GAP_MS, TOKENS = 80.0, 20.0, 8
E2E_MS = TTFT_MS + (TOKENS - 1) * GAP_MS


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


def check_level(directory: Path, concurrency: int, requests: int) -> None:
    summary = json.loads((directory / "summary.json").read_text())
    assert summary["num_completed"] == requests and summary["num_errors"] == 0
    m = summary["metrics"]
    for key in ("mean", "p50"):
        assert TTFT_MS - 2 <= m["ttft_ms"][key] <= TTFT_MS + 15, m["ttft_ms"]
        assert E2E_MS - 2 <= m["e2e_ms"][key] <= E2E_MS + 15, m["e2e_ms"]
    assert abs(m["itl_ms"]["p50"] - GAP_MS) <= 5, m["itl_ms"]
    assert abs(m["itl_ms"]["mean"] - GAP_MS) <= 3, m["itl_ms"]
    assert abs(m["tpot_ms"]["mean"] - GAP_MS) <= 3, m["tpot_ms"]
    assert m["itl_ms"]["count"] == requests * (TOKENS - 1)
    batches = math.ceil(requests / concurrency)
    expected = requests * TOKENS / (batches * E2E_MS / 1e3)
    assert 0.85 * expected <= summary["output_token_throughput"] <= 1.05 * expected, (summary, expected)
    assert summary["total_output_tokens"] == requests * TOKENS
    assert summary["output_tokens_source"] == {"server": requests}  # num_output_tokens summed per response
    assert summary["token_count_mismatches"] == 0
    assert summary["goodput"] == pytest.approx(summary["request_throughput"])
    rows = [json.loads(line) for line in (directory / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == requests and all(row["num_chunks"] == TOKENS for row in rows)
    assert all(row["output_tokens_tokenizer"] == TOKENS for row in rows)  # 東京 x 8 is 8 Llama 3.1 tokens


@pytest.mark.slow
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_measured_latencies_match_the_timing_model(timing_server, tmp_path, protocol):
    url = timing_server.grpc_url if protocol == "grpc" else timing_server.http_url

    def check(out: Path) -> None:
        index = json.loads((out / "index.json").read_text())
        assert [level["name"] for level in index["levels"]] == ["c1", "c4"]
        config = json.loads((out / "c4" / "summary.json").read_text())["config"]
        assert config["server_notes"] == []  # the model declares every optional input the client uses
        check_level(out / "c1", 1, 8)
        check_level(out / "c4", 4, 8)

    on_time(lambda out: run_bench(url, protocol, out, "1,4", 8), check, tmp_path)


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
