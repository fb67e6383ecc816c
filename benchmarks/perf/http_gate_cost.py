"""What `serve`'s HTTP gate costs: the same tritonserver measured through the gate and on its own HTTP port.

The server runs the timing model (benchmarks/perf/timing_model.py: first token after --ttft-ms, then one
every --gap-ms), so both paths face the same known engine; any difference is the gate's extra loopback hop
and its check of the generate body. The server and its gate run in a process of their own, as under `serve`,
so the client does not share the gate's interpreter. For each concurrency it streams requests with `bench`'s
own HTTP client through the gate and straight to tritonserver, and prints them side by side.

    .venv/bin/python -m benchmarks.perf.http_gate_cost --concurrency 1,16,64 --tokens 32

Metrics (client side, per level, as `bench` defines them in benchmarks/metrics/summary.py): TTFT p50/p99
and ITL p50 in ms, streamed chunks per second of wall time, errors; `gate - direct` is the difference of
the p50s.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import tempfile
from pathlib import Path

import click

from benchmarks.clients import CLIENTS, ClientOptions
from benchmarks.load.datasets import BenchRequest
from benchmarks.load.generator import Runner
from benchmarks.load.levels import LoadLevel
from benchmarks.metrics.summary import summarize
from benchmarks.perf.timing_model import MODEL_NAME, write_timing_repo


def shown(value: float | None) -> float:
    return float("nan") if value is None else value


async def measure(url: str, concurrency: int, requests: int, tokens: int) -> dict[str, float | str]:
    client = CLIENTS["http"](ClientOptions(url=url, model=MODEL_NAME))
    await client.setup()
    runner = Runner(client, [BenchRequest("東京の天気は？", 6, tokens)], progress=False)
    try:
        result = await runner.run_level(
            LoadLevel("concurrency", concurrency), requests, None, warmup=concurrency
        )
    finally:
        await client.close()
    summary = summarize(result.records, url, {"load_level": f"c{concurrency}"}, aborted=result.given_up)
    ttft, itl = summary.metrics["ttft_ms"], summary.metrics["itl_ms"]
    chunks = sum(len(r.chunk_times) for r in result.records if r.ok)
    return {
        "ttft_p50": shown(ttft.p50),
        "ttft_p99": shown(ttft.p99),
        "itl_p50": shown(itl.p50),
        "chunks_per_s": chunks / result.wall_s if result.wall_s else 0.0,
        # a level given up in its warm-up has no measured records: every request counts as failed
        "errors": summary.num_errors or (requests if result.given_up else 0),
        "first_error": next(iter(summary.errors), result.given_up or ""),
    }


def serve_timing_model(ttft_ms: float, gap_ms: float, urls, stop) -> None:
    """In a child process: the timing model behind a gated tritonserver until `stop` is set."""
    from triton_repo.launch.tritonserver import TritonServer

    with tempfile.TemporaryDirectory() as tmp:
        repo = write_timing_repo(Path(tmp) / "repo", ttft_ms, gap_ms)
        with TritonServer(
            repo, log_path=Path(tmp) / "triton.log", exit_timeout_s=2, http_gate=True
        ) as server:
            urls.put((server.http_url, server.triton_http_url))
            stop.wait()


@click.command()
@click.option("--concurrency", default="1,16,64", show_default=True, help="Concurrent streams to try.")
@click.option("--tokens", type=int, default=32, show_default=True, help="Tokens per request.")
@click.option("--requests-per-stream", type=int, default=4, show_default=True)
@click.option("--ttft-ms", type=float, default=20.0, show_default=True)
@click.option("--gap-ms", type=float, default=10.0, show_default=True)
def main(concurrency: str, tokens: int, requests_per_stream: int, ttft_ms: float, gap_ms: float) -> None:
    """Print TTFT, ITL and chunks/s through the HTTP gate and direct, side by side."""
    spawn = multiprocessing.get_context("spawn")
    urls, stop = spawn.Queue(), spawn.Event()
    server = spawn.Process(target=serve_timing_model, args=(ttft_ms, gap_ms, urls, stop))
    server.start()
    try:
        gate_url, direct_url = urls.get(timeout=300)
        click.echo(
            f"engine: TTFT {ttft_ms:g} ms, then a token every {gap_ms:g} ms; {tokens} tokens per request"
        )
        click.echo(
            f"{'streams':>7} {'path':>7} {'TTFT p50':>9} {'TTFT p99':>9} {'ITL p50':>8} {'chunks/s':>9} {'errors':>6}"
        )
        for streams in (int(c) for c in concurrency.split(",")):
            rows = {}
            for path, url in (("gate", gate_url), ("direct", direct_url)):
                rows[path] = row = asyncio.run(measure(url, streams, streams * requests_per_stream, tokens))
                click.echo(
                    f"{streams:>7} {path:>7} {row['ttft_p50']:>9.2f} {row['ttft_p99']:>9.2f} "
                    f"{row['itl_p50']:>8.2f} {row['chunks_per_s']:>9.0f} {row['errors']:>6}"
                    + (f"  first error: {row['first_error']}" if row["errors"] else "")
                )
            ttft = rows["gate"]["ttft_p50"] - rows["direct"]["ttft_p50"]
            itl = rows["gate"]["itl_p50"] - rows["direct"]["itl_p50"]
            click.echo(f"{streams:>7} {'gate - direct':>17} TTFT p50 {ttft:+.2f} ms, ITL p50 {itl:+.2f} ms")
    finally:
        stop.set()
        server.join(60)


if __name__ == "__main__":
    main()
