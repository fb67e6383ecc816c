"""How exactly `swallow-trt bench` measures: known timing in, measured timing out, side by side.

Two servers with known timing answer every request with `TOKENS` tokens, the first `TTFT_MS` after the request
arrives and the rest `GAP_MS` apart on an absolute schedule: the fake stream server (OpenAI SSE, Triton HTTP
SSE, Triton gRPC; benchmarks/perf/fake_server.py) and a real tritonserver running the timing model
(benchmarks/perf/timing_model.py). So TTFT, ITL, TPOT, E2E and output tokens/s are known exactly, and the
rate mode's send times are known too.

Tolerances (the client and the server add time, never remove it): TTFT and E2E p50 within -2 / +15 ms, ITL p50
within +-5 ms, TPOT mean within +-3 ms, output tokens/s within -15 % / +5 % of requests x tokens / (rounds x
E2E), and at 20 requests/s every send 45-60 ms after the previous. This is a benchmark, not a unit test: on a
busy machine a late measurement is honestly late, so run it on an idle one.

    .venv/bin/python -m benchmarks.perf.bench_accuracy [--no-triton]
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import click

from benchmarks.perf.fake_server import FakeServer, Timing
from benchmarks.perf.timing_model import MODEL_NAME, write_timing_repo

TTFT_MS, GAP_MS, TOKENS, REQUESTS = 80.0, 20.0, 8, 8
E2E_MS = TTFT_MS + (TOKENS - 1) * GAP_MS
RATE, RATE_GAP_MS = 20.0, (45.0, 60.0)
# metric -> (where in summary.json, allowed (low, high) around the known value, absolute ms)
LATENCY_CHECKS = {
    "TTFT p50": (("ttft_ms", "p50"), TTFT_MS, (-2.0, 15.0)),
    "E2E p50": (("e2e_ms", "p50"), E2E_MS, (-2.0, 15.0)),
    "ITL p50": (("itl_ms", "p50"), GAP_MS, (-5.0, 5.0)),
    "TPOT mean": (("tpot_ms", "mean"), GAP_MS, (-3.0, 3.0)),
}


@dataclass(frozen=True)
class Endpoint:
    server: str
    protocol: str
    url: str
    model: str


def run_bench(endpoint: Endpoint, output: Path, *load: str) -> Path:
    command = [sys.executable, "-m", "trt_build.cli", "bench", "--url", endpoint.url, "--protocol",
               endpoint.protocol, "--model", endpoint.model, "--warmup", "2", "--isl", "32", "--osl", str(TOKENS),
               "--ignore-eos", "--no-progress", "--output", str(output), *load]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise click.ClickException(
            f"bench failed against {endpoint}: {done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
    return output


def level_rows(endpoint: Endpoint, level: Path, concurrency: int) -> list[tuple[str, str, str, str, bool]]:
    """(what, known, measured, error, within tolerance) for one concurrency level."""
    summary = json.loads((level / "summary.json").read_text())
    rows = []
    for name, ((metric, stat), known, (low, high)) in LATENCY_CHECKS.items():
        measured = summary["metrics"][metric][stat]
        rows.append((name, f"{known:.1f}", f"{measured:.1f}", f"{measured - known:+.1f} ms",
                     known + low <= measured <= known + high))  # fmt: skip
    expected = REQUESTS * TOKENS / (math.ceil(REQUESTS / concurrency) * E2E_MS / 1e3)
    measured = summary["output_token_throughput"]
    rows.append(("output tok/s", f"{expected:.1f}", f"{measured:.1f}", f"{measured / expected - 1:+.1%}",
                 0.85 * expected <= measured <= 1.05 * expected))  # fmt: skip
    return rows


def rate_row(level: Path) -> tuple[str, str, str, str, bool]:
    records = [json.loads(line) for line in (level / "requests.jsonl").read_text().splitlines()]
    sends = sorted(r["send_ms"] for r in records)
    gaps = [b - a for a, b in zip(sends[:-1], sends[1:], strict=True)]
    low, high = RATE_GAP_MS
    return ("send gap", f"{1e3 / RATE:.1f}", f"{min(gaps):.1f}..{max(gaps):.1f}", "",
            all(low <= g <= high for g in gaps))  # fmt: skip


def measure(endpoints: list[Endpoint], work: Path) -> list[tuple[str, tuple]]:
    table = []
    for index, endpoint in enumerate(endpoints):
        where = f"{endpoint.server} {endpoint.protocol}"
        sweep = run_bench(
            endpoint, work / f"{index}-sweep", "--concurrency", "1,4", "--num-requests", str(REQUESTS)
        )
        for concurrency in (1, 4):
            table += [
                (f"{where} c{concurrency}", row)
                for row in level_rows(endpoint, sweep / f"c{concurrency}", concurrency)
            ]
        rate = run_bench(endpoint, work / f"{index}-rate", "--request-rate", str(RATE), "--arrival", "constant",
                         "--num-requests", "10")  # fmt: skip
        table.append((f"{where} rate{RATE:g}", rate_row(rate)))
    return table


@click.command()
@click.option(
    "--triton/--no-triton", default=True, show_default=True, help="Also measure a real tritonserver."
)
def main(triton: bool) -> None:
    """Print known and measured TTFT, E2E, ITL, TPOT, tokens/s and send gaps for every protocol."""
    from triton_repo.launch.tritonserver import TritonServer

    with tempfile.TemporaryDirectory() as tmp, FakeServer(Timing(TTFT_MS / 1e3, GAP_MS / 1e3)) as fake:
        work = Path(tmp)
        endpoints = [Endpoint("fake", "openai", fake.http_url, "swallow"),
                     Endpoint("fake", "http", fake.http_url, MODEL_NAME),
                     Endpoint("fake", "grpc", fake.grpc_url, MODEL_NAME)]  # fmt: skip
        if triton:
            repo = write_timing_repo(work / "repo", TTFT_MS, GAP_MS)
            with TritonServer(repo, log_path=work / "triton.log", exit_timeout_s=2) as server:
                table = measure([*endpoints, Endpoint("tritonserver", "http", server.http_url, MODEL_NAME),
                                 Endpoint("tritonserver", "grpc", server.grpc_url, MODEL_NAME)], work)  # fmt: skip
        else:
            table = measure(endpoints, work)
    click.echo(f"{'endpoint / level':<26} {'metric':<13} {'known':>8} {'measured':>13} {'error':>9}  ok")
    for where, (name, known, measured, error, ok) in table:
        click.echo(f"{where:<26} {name:<13} {known:>8} {measured:>13} {error:>9}  {'yes' if ok else 'NO'}")
    misses = sum(1 for _, row in table if not row[-1])
    click.echo(f"{len(table) - misses} of {len(table)} within tolerance")
    sys.exit(1 if misses else 0)


if __name__ == "__main__":
    main()
