"""`bench` against a server that dies or freezes mid-sweep: the levels measured until then are kept and
report-readable, the level it failed in is flagged, and the sweep stops within the bounds given
(--max-consecutive-errors, --stall-timeout) instead of waiting out every request."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest
from aiohttp import web
from click.testing import CliRunner

from trt_build.cli.bench import bench, report


class FlakyServer:
    """An OpenAI-compatible server (loopback, own thread) that streams `healthy` completions, then dies
    (closes its port and every connection) or freezes (accepts requests and never answers)."""

    def __init__(self, healthy: int, then: str):
        self.healthy, self.then, self.answered = healthy, then, 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thaw = asyncio.Event()  # set on exit, so frozen handlers end

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": "swallow", "object": "model"}]})

    async def complete(self, request: web.Request) -> web.StreamResponse:
        if self.answered >= self.healthy:
            if self.then == "freeze":
                await self.thaw.wait()
            request.transport.close()  # dead: the connection drops mid-request
            return web.Response(status=503)
        self.answered += 1
        if self.answered == self.healthy and self.then == "die":
            await self.site.stop()  # nothing listens any more
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for _ in range(3):
            await response.write(b'data: {"choices": [{"text": "\\u6771\\u4eac"}]}\n\n')
        await response.write(b'data: {"choices": [], "usage": {"completion_tokens": 3}}\n\ndata: [DONE]\n\n')
        await response.write_eof()
        return response

    async def _start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/completions", self.complete)
        self.runner = web.AppRunner(app, access_log=None, shutdown_timeout=1)
        await self.runner.setup()
        self.site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await self.site.start()
        self.url = f"http://127.0.0.1:{self.site._server.sockets[0].getsockname()[1]}"

    def __enter__(self) -> FlakyServer:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    def __exit__(self, *exc: object) -> None:
        self.loop.call_soon_threadsafe(self.thaw.set)
        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


def sweep(url: str, out, *extra: str):
    args = ["--protocol", "openai", "--url", url, "--concurrency", "1,2,4", "--num-requests", "6", "--warmup",
            "0", "--isl", "8", "--osl", "3", "--no-progress", "--output", str(out), *extra]  # fmt: skip
    return CliRunner().invoke(bench, args)


def check_kept(out, reason: str, tmp_path) -> None:
    """c1 kept healthy, c2 flagged with the reason, c4 never run; the report reads it and flags c2 only."""
    index = json.loads((out / "index.json").read_text())
    assert index["partial"] is True and reason in index["stopped"] and index["stopped"].startswith("at c2")
    assert [level["name"] for level in index["levels"]] == ["c1", "c2"]
    c1 = json.loads((out / "c1" / "summary.json").read_text())
    c2 = json.loads((out / "c2" / "summary.json").read_text())
    assert c1["num_completed"] == 6 and c1["num_errors"] == 0 and c1["aborted"] is None
    assert c2["num_errors"] >= 1 and c2["error_rate"] > 0 and reason in c2["aborted"]
    assert not list(tmp_path.glob(".out.partial-*"))
    result = CliRunner().invoke(report, [str(out), "--output", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    rows = {line.split("|")[2].strip(): line for line in (tmp_path / "report" / "REPORT.md").read_text().splitlines()
            if line.startswith("| ") and line.count("|") > 10}  # fmt: skip
    assert "⚠" in rows["c2"] and "⚠" not in rows["c1"], rows
    assert "server given up on at c2" in (tmp_path / "report" / "REPORT.md").read_text()


def test_a_server_killed_mid_sweep_keeps_the_levels_measured(tmp_path):
    out = tmp_path / "out"
    with FlakyServer(healthy=8, then="die") as server:
        result = sweep(server.url, out, "--max-consecutive-errors", "3")
    assert result.exit_code == 1, result.output
    assert f"Gave up on {server.url} at c2: 3 requests in a row failed" in result.output
    assert str(out) in result.output
    check_kept(out, "requests in a row failed", tmp_path)


def test_a_frozen_server_is_given_up_after_the_stall_timeout(tmp_path):
    out = tmp_path / "out"
    with FlakyServer(healthy=7, then="freeze") as server:
        result = sweep(server.url, out, "--stall-timeout", "0.5")
    assert result.exit_code == 1, result.output
    assert "at c2: no response for 0.5 s with requests in flight" in result.output
    check_kept(out, "no response for 0.5 s", tmp_path)
    c2 = json.loads((out / "c2" / "summary.json").read_text())
    assert c2["num_completed"] == 1 and c2["num_cancelled"] == 0  # the stuck requests count as errors
    assert all(message.startswith("given up: at c2: no response") for message in c2["errors"])


@pytest.mark.parametrize("then", ["die", "freeze"])
def test_a_server_lost_before_anything_was_measured_leaves_nothing(tmp_path, then):
    with FlakyServer(healthy=0, then=then) as server:
        result = sweep(server.url, tmp_path / "out", "--stall-timeout", "0.5", "--warmup", "1")
    assert result.exit_code == 1 and "nothing was measured" in result.output, result.output
    assert not (tmp_path / "out").exists()
