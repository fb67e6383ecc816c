"""Streams that lose events: through `serve`'s HTTP gate (generate answered over tritonserver's gRPC stream)
and straight to tritonserver's HTTP endpoint (`--no-check-http`), run by run.

tritonserver 2.51 drops a streamed HTTP event (or a stream's start or end) when the socket that hands it to
its HTTP thread is full; that socket's buffer is the kernel's `net.core.wmem_default`, read when tritonserver
starts (docs/triton.md §6.4). This counts, per run, the streams that did not get exactly their own
`--events` events (each event carries its request's id), for a fresh server with and without the gate.
Set the buffer before running, as root, to compare: `sysctl -w net.core.wmem_default=4608`.

    .venv/bin/python -m benchmarks.perf.gate_lost_events --runs 8
"""

from __future__ import annotations

import asyncio
import itertools
import json
import tempfile
from pathlib import Path

import aiohttp
import click

from benchmarks.perf.timing_model import MODEL_NAME, write_timing_repo
from triton_repo.launch.tritonserver import TritonServer

SEND_BUFFER_SETTING = Path("/proc/sys/net/core/wmem_default")


async def one_run(url: str, streams: int, per_stream: int, events: int, ids: itertools.count) -> int:
    """How many of `streams` x `per_stream` requests did not get exactly their own `events` events."""

    async def request(session: aiohttp.ClientSession) -> bool:
        request_id = f"r{next(ids)}"
        body = {"id": request_id, "text_input": "東京", "max_tokens": events, "stream": True}
        try:
            async with session.post(f"{url}/v2/models/{MODEL_NAME}/generate_stream", json=body) as answer:
                data = await answer.read()
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return False  # a broken or stalled stream
        lines = [line[5:] for line in data.decode(errors="replace").splitlines() if line.startswith("data:")]
        return [json.loads(line).get("id") for line in lines] == [request_id] * events

    timeout = aiohttp.ClientTimeout(total=20)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=0)) as session:

        async def client() -> list[bool]:
            return [await request(session) for _ in range(per_stream)]

        results = await asyncio.gather(*(client() for _ in range(streams)))
    return sum(not ok for answers in results for ok in answers)


@click.command()
@click.option("--runs", default=8, show_default=True, help="Runs per path, each on the same server.")
@click.option("--streams", default=64, show_default=True, help="Concurrent streams.")
@click.option(
    "--per-stream", default=8, show_default=True, help="Requests each concurrent client sends in turn."
)
@click.option("--events", default=32, show_default=True, help="Events per stream (10 ms apart).")
def main(runs: int, streams: int, per_stream: int, events: int) -> None:
    buffer = SEND_BUFFER_SETTING.read_text().strip() if SEND_BUFFER_SETTING.exists() else "unknown"
    click.echo(f"net.core.wmem_default {buffer}; {streams} streams x {per_stream} requests x {events} events")
    ids = itertools.count()
    for gate in (True, False):
        with tempfile.TemporaryDirectory() as tmp:
            repo = write_timing_repo(Path(tmp) / "repo", 20, 10)
            with TritonServer(repo, log_path=Path(tmp) / "t.log", exit_timeout_s=2, http_gate=gate) as server:
                short = [
                    asyncio.run(one_run(server.http_url, streams, per_stream, events, ids))
                    for _ in range(runs)
                ]
        lost = sum(1 for count in short if count)
        path = "through the gate" if gate else "straight to tritonserver"
        click.echo(f"{path:>26}: runs that lost events {lost} of {runs}; streams short per run {short}")


if __name__ == "__main__":
    main()
