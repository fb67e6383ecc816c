"""Load generation and the OpenAI client against a stream server with known timing, plus Ctrl-C.

The fake server (benchmarks/perf/fake_server.py, loopback, in a thread) answers the first token after 80 ms
and the next ones 20 ms apart. These tests check what does not depend on the clock (counts, concurrency,
order, what is written); how close the measured times come to the known ones is a benchmark
(`python -m benchmarks.perf.bench_accuracy`), since a busy machine makes any wall-clock bound flaky.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from benchmarks.load.generator import arrival_gaps
from benchmarks.load.levels import parse_levels
from benchmarks.perf.fake_server import FakeServer, Timing
from benchmarks.served.sweep import default_model
from trt_build.cli.bench import bench
from trt_build.common.errors import SwallowTrtError

TTFT_MS, GAP_MS, TOKENS = 80.0, 20.0, 6


def invoke(*args: str) -> object:
    return CliRunner().invoke(bench, [*args, "--no-progress"], catch_exceptions=False)


@pytest.fixture(scope="module")
def fake():
    with FakeServer(Timing(TTFT_MS / 1e3, GAP_MS / 1e3)) as server:
        yield server


def test_arrival_gaps_have_the_requested_rate_and_burstiness():
    poisson = arrival_gaps(10.0, 20000, "poisson", 1.0, seed=0)
    bursty = arrival_gaps(10.0, 20000, "gamma", 0.25, seed=0)
    for gaps in (poisson, bursty):
        assert sum(gaps) / len(gaps) == pytest.approx(0.1, rel=0.05)

    def cv2(gaps):  # squared coefficient of variation = 1 / gamma shape
        mean = sum(gaps) / len(gaps)
        return sum((g - mean) ** 2 for g in gaps) / len(gaps) / mean**2

    assert cv2(poisson) == pytest.approx(1.0, rel=0.1)
    assert cv2(bursty) == pytest.approx(4.0, rel=0.15)
    assert set(arrival_gaps(4.0, 5, "constant", 1.0, 0)) == {0.25}


def test_load_levels_parse_and_reject_bad_values():
    assert [lv.name for lv in parse_levels("1,4,16", None, None)] == ["c1", "c4", "c16"]
    rates = parse_levels(None, "2,0.5,inf", 8)
    assert [lv.name for lv in rates] == ["rate2", "rate0p5", "rateinf"] and rates[0].max_concurrency == 8
    for bad in (("0", None), ("1.5", None), ("a", None), ("1", "2"), (None, "-1")):
        with pytest.raises(SwallowTrtError):
            parse_levels(*bad, None)


@pytest.mark.parametrize("dataset", ["synthetic", "ja-chat"])  # completions / chat completions
def test_openai_protocol_counts_every_token_and_keeps_the_concurrency(fake, tmp_path, dataset):
    out = tmp_path / "out"
    result = invoke("--protocol", "openai", "--url", fake.http_url, "--model", "swallow", "--dataset",
                    dataset, "--concurrency", "4", "--num-requests", "8", "--warmup", "2", "--isl", "32",
                    "--osl", str(TOKENS), "--ignore-eos", "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    m = summary["metrics"]
    assert summary["num_completed"] == 8 and summary["num_errors"] == 0
    assert summary["output_tokens_source"] == {"server": 8}  # usage.completion_tokens
    assert summary["total_output_tokens"] == 8 * TOKENS and m["itl_ms"]["count"] == 8 * (TOKENS - 1)
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    spans = [(r["send_ms"], r["send_ms"] + r["e2e_ms"]) for r in rows]
    in_flight = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert in_flight == 4  # closed loop keeps exactly `concurrency` requests in flight
    assert all(r["ttft_ms"] <= r["e2e_ms"] for r in rows)


def test_request_rate_mode_sends_every_request_in_order(fake, tmp_path):
    out = tmp_path / "out"
    result = invoke("--protocol", "http", "--url", fake.http_url, "--request-rate", "20", "--arrival",
                    "constant", "--num-requests", "10", "--warmup", "0", "--isl", "16", "--osl", "3",
                    "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["config"]["load"] == {"kind": "rate", "value": 20.0, "max_concurrency": None}
    assert summary["num_completed"] == 10 and summary["num_errors"] == 0
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert len(rows) == 10 and len({r["send_ms"] for r in rows}) == 10  # one send per arrival, none merged


def test_grpc_streams_carry_one_request_after_another(fake, tmp_path):
    opened = fake.grpc_service.streams_opened
    result = invoke("--protocol", "grpc", "--url", fake.grpc_url, "--concurrency", "2", "--num-requests", "6",
                    "--warmup", "0", "--isl", "8", "--osl", "3", "--output", str(tmp_path / "out"))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["num_completed"] == 6 and summary["total_output_tokens"] == 18
    assert fake.grpc_service.streams_opened - opened == 2  # one stream per concurrent slot, reused


@pytest.mark.parametrize("protocol", ["http", "grpc"])
def test_triton_requests_carry_ids_unique_across_runs(fake, tmp_path, protocol):
    # ids unique across runs, so a server's logs and traces tell every request apart
    url = fake.grpc_url if protocol == "grpc" else fake.http_url
    seen = len(fake.request_ids)
    for run in ("a", "b"):
        result = invoke("--protocol", protocol, "--url", url, "--concurrency", "2", "--num-requests", "3",
                        "--warmup", "1", "--isl", "8", "--osl", "2", "--output", str(tmp_path / run))  # fmt: skip
        assert result.exit_code == 0, result.output
    ids = fake.request_ids[seen:]
    assert len(ids) == 8 and all(ids) and len(set(ids)) == 8


@pytest.mark.parametrize("protocol", ["openai", "http", "grpc"])
def test_without_model_the_server_s_own_model_is_used(fake, protocol):
    url = fake.grpc_url if protocol == "grpc" else fake.http_url
    assert default_model(url, protocol) == ("swallow" if protocol == "openai" else "ensemble")


@pytest.mark.slow
def test_ctrl_c_stops_cleanly_and_keeps_what_was_measured(fake, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "trt_build.cli", "bench", "--protocol", "openai", "--url", fake.http_url,
               "--concurrency", "2", "--duration", "60", "--warmup", "1", "--isl", "16", "--osl", "20",
               "--output", str(out)]  # fmt: skip
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=Path(__file__).parents[1]
    )
    seen = bytearray()

    def read_stderr() -> None:
        while chunk := process.stderr.read1(4096):
            seen.extend(chunk)

    reader = threading.Thread(target=read_stderr, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 60
        while b"openai c2" not in seen and time.monotonic() < deadline:  # the progress bar: measuring
            time.sleep(0.1)
        time.sleep(1.5)
        os.kill(process.pid, signal.SIGINT)
        process.wait(timeout=30)
        stdout = process.stdout.read()
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, seen.decode(errors="replace")[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["partial"] is True
    assert summary["num_completed"] >= 2 and summary["num_cancelled"] >= 1
    assert summary["num_errors"] == 0
    assert "partial" in stdout.decode()
    assert not list(tmp_path.glob(".out.partial-*"))


@pytest.mark.slow
def test_duration_mode_sends_until_the_deadline_and_not_after(fake, tmp_path):
    out = tmp_path / "out"
    result = invoke("--protocol", "grpc", "--url", fake.grpc_url, "--concurrency", "2", "--duration", "1",
                    "--warmup", "0", "--isl", "16", "--osl", "4", "--output", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["num_errors"] == 0 and summary["num_cancelled"] == 0 and not summary["partial"]
    assert summary["num_completed"] >= 2  # at least one round of both slots
    assert summary["duration_s"] >= 1.0 - 0.02  # never stops before the deadline (a lower bound only)
    rows = [json.loads(line) for line in (out / "requests.jsonl").read_text().splitlines()]
    assert all(r["send_ms"] <= 1000 for r in rows)  # nothing sent after the deadline (from the first send)


@pytest.mark.parametrize(
    "args, said",
    [
        (["--concurrency", "1", "--request-rate", "2"], "Give either --concurrency or --request-rate"),
        (["--concurrency", "0"], "--concurrency values are whole numbers"),
        (["--num-requests", "3", "--duration", "2"], "Give either --num-requests or --duration"),
        (["--goodput", "latency:5"], "Bad --goodput entry"),
        (["--dry-run"], "--dry-run applies to --engine-dir"),
    ],
)
def test_usage_errors_exit_2_like_click(tmp_path, args, said):
    result = CliRunner().invoke(bench, [*args, "--output", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert "Usage: bench [OPTIONS]" in result.output and f"Error: {said}" in result.output
    assert not (tmp_path / "out").exists()
