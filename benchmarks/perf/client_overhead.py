"""How much CPU the benchmark client itself spends per streamed chunk, at high concurrency.

A load generator that is slower than the server measures itself. This runs each protocol's client
against the fake stream server (benchmarks/perf/fake_server.py) in a separate process, so the CPU time of
this process (time.process_time: every thread, gRPC's included) is the client's alone, and divides it
by the chunks received. Target: below 50 microseconds per chunk.

    .venv/bin/python -m benchmarks.perf.client_overhead --concurrency 64,256 --tokens 64
"""

from __future__ import annotations

import asyncio
import subprocess
import sys

import click

from benchmarks.clients import CLIENTS, ClientOptions
from benchmarks.load.datasets import BenchRequest
from benchmarks.load.generator import Runner
from benchmarks.load.levels import LoadLevel

TARGET_US = 50.0


def start_fake_server(ttft_ms: float, gap_ms: float) -> tuple[subprocess.Popen, int, int]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "benchmarks.perf.fake_server",
            "--ttft-ms",
            str(ttft_ms),
            "--gap-ms",
            str(gap_ms),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    line = process.stdout.readline().split()
    if len(line) != 2:
        process.kill()
        raise click.ClickException("The fake stream server did not start.")
    return process, int(line[0]), int(line[1])


async def measure(protocol: str, url: str, concurrency: int, requests: int, tokens: int) -> dict[str, float]:
    client = CLIENTS[protocol](ClientOptions(url=url, model="ensemble"))
    await client.setup()
    pool = [BenchRequest("東京の天気は？", 6, tokens)]
    runner = Runner(client, pool, progress=False)
    try:
        result = await runner.run_level(
            LoadLevel("concurrency", concurrency), requests, None, warmup=concurrency
        )
    finally:
        await client.close()
    chunks = sum(len(r.chunk_times) for r in result.records)
    errors = sum(1 for r in result.records if not r.ok)
    return {
        "chunks": chunks,
        "errors": errors,
        "cpu_s": result.client_cpu_s,
        "wall_s": result.wall_s,
        "us_per_chunk": result.client_cpu_s / chunks * 1e6 if chunks else float("nan"),
        "chunks_per_s": chunks / result.wall_s if result.wall_s else 0.0,
    }


@click.command()
@click.option("--protocols", default="grpc,http,openai", show_default=True)
@click.option("--concurrency", default="64,256", show_default=True, help="Concurrent streams to try.")
@click.option("--tokens", type=int, default=64, show_default=True, help="Chunks per request.")
@click.option("--requests-per-stream", type=int, default=2, show_default=True)
@click.option("--gap-ms", type=float, default=10.0, show_default=True, help="Server gap between chunks.")
def main(protocols: str, concurrency: str, tokens: int, requests_per_stream: int, gap_ms: float) -> None:
    """Print the client's CPU time per streamed chunk for each protocol and concurrency."""
    server, http_port, grpc_port = start_fake_server(5.0, gap_ms)
    urls = {"grpc": f"127.0.0.1:{grpc_port}", "http": f"http://127.0.0.1:{http_port}"}
    urls["openai"] = urls["http"]
    try:
        click.echo(f"{'protocol':>8} {'streams':>7} {'chunks':>7} {'errors':>6} {'client CPU s':>12} "
                   f"{'wall s':>7} {'chunks/s':>9} {'us/chunk':>9}")  # fmt: skip
        worst = 0.0
        for protocol in protocols.split(","):
            for streams in (int(c) for c in concurrency.split(",")):
                row = asyncio.run(
                    measure(protocol, urls[protocol], streams, streams * requests_per_stream, tokens)
                )
                worst = max(worst, row["us_per_chunk"])
                click.echo(
                    f"{protocol:>8} {streams:>7} {row['chunks']:>7} {row['errors']:>6} {row['cpu_s']:>12.3f} "
                    f"{row['wall_s']:>7.2f} {row['chunks_per_s']:>9.0f} {row['us_per_chunk']:>9.1f}"
                )
        verdict = "within" if worst < TARGET_US else "ABOVE"
        click.echo(f"worst {worst:.1f} us/chunk: {verdict} the {TARGET_US:.0f} us target")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
