"""`swallow-trt serve --dynamo`: a real NVIDIA Dynamo graph on 127.0.0.1 (ai-dynamo 1.6.1 in .venv-dynamo,
built by `make dynamo-env`): the CPU reference engine's exact answers through Dynamo's OpenAI frontend,
`conform` against it, KV-aware and round-robin routing, disaggregated prefill/decode and a worker killed
under load (Dynamo's mocker). Not named test_triton_*: ai-dynamo's pytest plugins would skip such files
(this process never imports dynamo; the graph's processes run with plugin autoload off).

Each graph is a module fixture started once; waits are bounded hang guards, never timing assertions.
"""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

import openai
import pytest
from click.testing import CliRunner

from benchmarks.metrics.results import read_results
from benchmarks.options import BenchOptions
from benchmarks.run import run_bench
from dynamo_deploy.graph.environment import ROOT
from dynamo_deploy.graph.graph import DynamoGraph, GraphOptions, worker_roles
from dynamo_deploy.graph.local_deployment import local_deployment
from dynamo_deploy.graph.processes import log_reason
from triton_repo.launch.tritonserver import free_port
from trt_build.cli.conform import conform as conform_command
from trt_build.cli.deploy import deploy as deploy_command
from trt_build.cli.serve import serve as serve_command
from trt_build.common.errors import SwallowTrtError
from trt_build.source.chain_model import CHAIN_SENTENCE, write_chain_model

HANG_GUARD_S = 240  # a bound on waiting for answers: reaching it means something hangs
LONG_PROMPT = "京都の紅葉と鎌倉の寺社について、歴史と見どころを詳しく説明してください。" * 24


# ---------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory: pytest.TempPathFactory, tokenizer_dir: Path) -> Path:
    return write_chain_model(tmp_path_factory.mktemp("dynamo") / "chain")


def started(deployment, tmp: Path, **options) -> DynamoGraph:
    return DynamoGraph(
        deployment, GraphOptions(http_port=free_port(), run_dir=tmp, timeout_s=HANG_GUARD_S, **options)
    )


@pytest.fixture(scope="module")
def cpu_graph(dynamo_env, chain_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("cpu-graph")
    with started(local_deployment(chain_dir, run / "deploy"), run, engine="cpu") as graph:
        yield graph


@pytest.fixture(scope="module")
def kv_mockers(dynamo_env, chain_dir, tmp_path_factory):
    run = tmp_path_factory.mktemp("kv-graph")
    deployment = local_deployment(chain_dir, run / "deploy", workers=2, router="kv")
    with started(deployment, run, engine="mocker") as graph:
        yield graph


def client(graph: DynamoGraph) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{graph.url}/v1", api_key="none", timeout=HANG_GUARD_S, max_retries=0)


def served_requests(graph: DynamoGraph, index: int) -> int:
    """Requests worker `index` has taken on its generate endpoint (Dynamo's own counter, /metrics)."""
    port = graph.workers[index].env["DYN_SYSTEM_PORT"]
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    pattern = r'^dynamo_component_requests_total\{[^}]*dynamo_endpoint="generate"[^}]*\} (\d+)'
    return sum(int(n) for n in re.findall(pattern, text, re.MULTILINE))


async def answer(api: openai.AsyncOpenAI, endpoint: str, streamed: bool, prompt: str, max_tokens: int) -> str:
    model = "swallow"
    if endpoint == "chat":
        messages = [{"role": "user", "content": prompt}]
        reply = await api.chat.completions.create(
            model=model, messages=messages, max_tokens=max_tokens, temperature=0, stream=streamed
        )
        if not streamed:
            return reply.choices[0].message.content or ""
        return "".join([c.choices[0].delta.content or "" async for c in reply if c.choices])
    reply = await api.completions.create(
        model=model, prompt=prompt, max_tokens=max_tokens, temperature=0, stream=streamed
    )
    if not streamed:
        return reply.choices[0].text
    return "".join([c.choices[0].text or "" async for c in reply if c.choices])


# ---------------------------------------------------------------- without a graph


def test_the_cpu_engine_refuses_a_disaggregated_deployment(chain_dir, tmp_path):
    with pytest.raises(SwallowTrtError, match="--engine mocker"):
        worker_roles(local_deployment(chain_dir, tmp_path / "a", mode="disagg"), "cpu")
    assert worker_roles(local_deployment(chain_dir, tmp_path / "b", workers=2, mode="disagg"), "mocker") == [
        ("prefill", 0), ("prefill", 1), ("decode", 0), ("decode", 1),
    ]  # fmt: skip


def test_serve_dynamo_on_a_directory_without_a_deployment_says_what_to_do(tmp_path):
    result = CliRunner().invoke(serve_command, ["--dynamo", str(tmp_path), "--engine", "cpu"])
    assert result.exit_code == 1
    assert "is not a Dynamo deployment" in result.output and "deploy dynamo" in result.output
    assert "Traceback" not in result.output


def test_the_failure_reason_is_the_exception_line_of_a_traceback():
    log = 'starting\nTraceback (most recent call last):\n  File "w.py", line 1\n    x()\nException: invalid value\n'
    assert log_reason(log) == "Exception: invalid value"
    assert log_reason("\x1b[2m2026\x1b[0m  ERROR bind failed\nlater\n") == "2026  ERROR bind failed"
    assert log_reason("only this\n") == "only this"


# ---------------------------------------------------------------- the CPU engine through Dynamo


@pytest.mark.slow
def test_32_concurrent_openai_streams_return_the_cpu_engines_exact_answer(cpu_graph):
    """8 of each path (chat / completions, streamed or not) at once: every answer is the chain sentence."""
    paths = [(endpoint, streamed) for endpoint in ("chat", "completions") for streamed in (False, True)]

    async def run() -> list[str]:
        api = client(cpu_graph)
        try:
            jobs = [answer(api, e, s, "こんにちは", 200) for _ in range(8) for e, s in paths]
            return await asyncio.wait_for(asyncio.gather(*jobs), HANG_GUARD_S)
        finally:
            await api.close()

    answers = asyncio.run(run())
    assert len(answers) == 32
    assert [a for a in answers if a != CHAIN_SENTENCE] == []


@pytest.mark.slow
def test_conform_passes_against_the_dynamo_frontend(cpu_graph, chain_dir):
    result = CliRunner().invoke(
        conform_command, [cpu_graph.url, "--tokenizer", str(chain_dir), "--concurrency", "2", "--json"]
    )
    report = json.loads(result.output[: result.output.rindex("}") + 1])
    failed = [
        (row["path"], c) for row in report["paths"] for c, o in row["checks"].items() if o["status"] == "fail"
    ]
    assert failed == [] and result.exit_code == 0
    assert any("adds no BOS" in note for note in report["notes"])  # Dynamo's completions: the client adds it


@pytest.mark.slow
@pytest.mark.parametrize("endpoint", ["chat", "completions"])
def test_bench_measures_the_dynamo_frontend(cpu_graph, chain_dir, tmp_path, endpoint):
    run_bench(
        BenchOptions(
            output=tmp_path / "bench", url=cpu_graph.url, protocol="openai", tokenizer_dir=chain_dir,
            concurrency="2", num_requests=4, warmup=0, dataset="ja-chat", osl=8, openai_endpoint=endpoint,
            progress=False,
        )
    )  # fmt: skip
    summary = read_results(tmp_path / "bench")[0].summary
    assert (summary["num_completed"], summary["num_errors"]) == (4, 0)
    assert summary["total_output_tokens"] == 4 * 8 and summary["output_tokens_source"]["server"] == 4


@pytest.mark.slow
def test_a_client_that_hangs_up_stops_the_cpu_engine(cpu_graph):
    """The engine logs each request's end; a stream closed after 3 chunks ends 'cancelled' well short."""
    log = cpu_graph.workers[0].log_path

    async def hang_up() -> None:
        api = client(cpu_graph)
        try:
            stream = await api.completions.create(
                model="swallow",
                prompt="こんにちは",
                max_tokens=4000,
                stream=True,
                extra_body={"ignore_eos": True},
            )
            chunks = 0
            async for _ in stream:
                chunks += 1
                if chunks == 3:
                    break
            await stream.close()
        finally:
            await api.close()

    asyncio.run(asyncio.wait_for(hang_up(), HANG_GUARD_S))
    ends: list[int] = []
    for _ in range(HANG_GUARD_S * 2):  # bounded: the cancel reaches the engine within its next steps
        ends = [int(n) for n in re.findall(r"request \d+: cancelled after (\d+) tokens", log.read_text())]
        if ends:
            break
        time.sleep(0.5)
    assert ends and ends[-1] < 64, ends  # stopped within a few tokens of the hang-up, not at 4000


@pytest.mark.slow
def test_a_request_the_cpu_engine_refuses_gets_a_clear_error_and_the_worker_keeps_serving(cpu_graph):
    async def run() -> tuple[str, str]:
        api = client(cpu_graph)
        try:
            with pytest.raises(openai.OpenAIError) as refused:  # prompt + max_tokens over the context length
                await answer(api, "completions", False, "こんにちは", 10_000)
            return str(refused.value), await answer(api, "completions", False, "こんにちは", 200)
        finally:
            await api.close()

    error, after = asyncio.run(run())
    assert re.search(r"8192|max_seq_len|context", error), error
    assert after == CHAIN_SENTENCE


def test_a_worker_that_cannot_start_is_reported_by_its_log_line(dynamo_env, chain_dir, tmp_path):
    """Weights gone after deploying: the CPU engine fails to load; start() says which process and why, and
    stops the rest."""
    broken = tmp_path / "weights-gone"
    shutil.copytree(chain_dir, broken)
    deployment = local_deployment(broken, tmp_path / "deploy")
    for weights in broken.glob("*.safetensors"):
        weights.unlink()
    graph = started(deployment, tmp_path / "run", engine="cpu")
    with pytest.raises(SwallowTrtError) as failed:
        graph.start()
    message = str(failed.value)
    assert "agg-worker-0 exited" in message and "safetensors" in message, message
    assert "Traceback" not in message
    assert not any(p.running for p in graph.processes)


# ---------------------------------------------------------------- routing (mocker workers)


@pytest.mark.slow
def test_the_kv_router_sends_a_repeated_prefix_back_to_its_worker(kv_mockers):
    async def run() -> list[int]:
        api = client(kv_mockers)
        cached = []
        try:
            for _ in range(6):
                reply = await asyncio.wait_for(
                    api.completions.create(model="swallow", prompt=LONG_PROMPT, max_tokens=4), HANG_GUARD_S
                )
                details = reply.usage.prompt_tokens_details
                cached.append(details.cached_tokens if details else 0)
        finally:
            await api.close()
        return cached

    before = [served_requests(kv_mockers, i) for i in range(2)]
    cached = asyncio.run(run())
    taken = [served_requests(kv_mockers, i) - before[i] for i in range(2)]
    assert cached[0] == 0 and all(c > 0 for c in cached[1:]), cached  # Dynamo reports the reused prefix
    assert sorted(taken) == [0, 6], taken  # all six on the worker that holds it


@pytest.mark.slow
def test_round_robin_spreads_requests_over_both_workers(dynamo_env, chain_dir, tmp_path):
    deployment = local_deployment(chain_dir, tmp_path / "deploy", workers=2, router="round-robin")

    async def run(graph) -> None:
        api = client(graph)
        try:
            for _ in range(8):
                await asyncio.wait_for(
                    api.completions.create(model="swallow", prompt=LONG_PROMPT, max_tokens=4), HANG_GUARD_S
                )
        finally:
            await api.close()

    with started(deployment, tmp_path, engine="mocker") as graph:
        asyncio.run(run(graph))
        taken = [served_requests(graph, i) for i in range(2)]
    assert taken == [4, 4]


@pytest.mark.slow
def test_disaggregated_prefill_and_decode_answer_under_load(dynamo_env, chain_dir, tmp_path):
    deployment = local_deployment(chain_dir, tmp_path / "deploy", workers=1, router="kv", mode="disagg")

    async def run(graph) -> list[str]:
        api = client(graph)
        try:
            jobs = [answer(api, "completions", True, f"{i}: {LONG_PROMPT}", 32) for i in range(32)]
            return await asyncio.wait_for(asyncio.gather(*jobs), HANG_GUARD_S)
        finally:
            await api.close()

    with started(deployment, tmp_path, engine="mocker") as graph:
        answers = asyncio.run(run(graph))
        prefill, decode = (served_requests(graph, i) for i in range(2))
    assert len(answers) == 32 and all(answers)
    assert prefill >= 32 and decode >= 32  # every request went through both roles


@pytest.mark.slow
def test_a_worker_killed_under_load_fails_its_requests_clearly_and_a_restart_rejoins(kv_mockers):
    async def one(api: openai.AsyncOpenAI, i: int) -> str | None:
        """None when the request succeeded, else the error the client got."""
        try:
            text = await answer(api, "completions", True, f"{i} {LONG_PROMPT}", 400)
        except openai.OpenAIError as error:
            return str(error) or type(error).__name__
        return None if text else "empty answer"

    async def load_then_kill() -> list[str | None]:
        api = client(kv_mockers)
        try:
            jobs = [asyncio.ensure_future(one(api, i)) for i in range(32)]
            while sum(served_requests(kv_mockers, w) for w in range(2)) < 32:  # all in flight
                await asyncio.sleep(0.05)
            held.append(served_requests(kv_mockers, 0))
            kv_mockers.kill_worker(0)
            return await asyncio.wait_for(asyncio.gather(*jobs), HANG_GUARD_S)  # nothing hangs
        finally:
            await api.close()

    async def sequential(count: int) -> list[str | None]:
        api = client(kv_mockers)
        try:
            return [await asyncio.wait_for(one(api, 1000 + i), HANG_GUARD_S) for i in range(count)]
        finally:
            await api.close()

    async def concurrent(count: int) -> list[str | None]:
        """Requests at once, so the router's load accounting spreads them over the workers it knows."""
        api = client(kv_mockers)
        try:
            return await asyncio.wait_for(
                asyncio.gather(*(one(api, 2000 + i) for i in range(count))), HANG_GUARD_S
            )
        finally:
            await api.close()

    held: list[int] = []
    outcomes = asyncio.run(load_then_kill())
    errors = [o for o in outcomes if o is not None]
    assert held[0] > 0 and len(outcomes) == 32  # the killed worker held requests; every one came back
    assert all(e.strip() for e in errors)  # a failure says why (most are migrated to the other worker)
    assert kv_mockers.workers[1].running and not kv_mockers.workers[0].running
    assert asyncio.run(sequential(6)) == [None] * 6  # the frontend keeps serving on the other worker

    kv_mockers.restart_worker(0)
    for _ in range(5):  # bounded: the router must send some new work to the rejoined worker
        assert asyncio.run(concurrent(8)) == [None] * 8
        if served_requests(kv_mockers, 0) > 0:
            break
    assert served_requests(kv_mockers, 0) > 0


def graph_processes(run_marker: str) -> list[int]:
    """Pids whose environment names this graph's discovery directory (every process the graph started)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if run_marker.encode() in (entry / "environ").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


@pytest.mark.slow
def test_ctrl_c_stops_every_process_serve_dynamo_started(dynamo_env, chain_dir, tmp_path):
    deploy = tmp_path / "deploy"  # written by the command a user runs
    written = CliRunner().invoke(
        deploy_command,
        [
            "dynamo",
            "--checkpoint",
            str(chain_dir),
            "--output",
            str(deploy),
            "--replicas",
            "2",
            "--served-model-name",
            "swallow",
        ],
    )
    assert written.exit_code == 0, written.output
    port = free_port()
    argv = [
        str(ROOT / ".venv" / "bin" / "swallow-trt"),
        "serve",
        "--dynamo",
        str(deploy),
        "--engine",
        "mocker",
    ]
    server = subprocess.Popen(
        [*argv, "--http-port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    try:
        lines = []
        for line in server.stdout:  # bounded by the graph's own readiness timeout
            lines.append(line)
            if line.startswith(("Ready.", "Error")):
                break
        assert lines[-1].startswith("Ready."), "".join(lines)
        logs = next(line.split()[1] for line in server.stdout if line.startswith("logs"))
        marker = f"DYN_FILE_KV={Path(logs).parent / 'discovery'}\0"
        assert len(graph_processes(marker)) >= 4  # broker, frontend, two workers
        server.send_signal(signal.SIGINT)
        status = server.wait(timeout=HANG_GUARD_S)
        rest = server.stdout.read()
        assert status == 0, "".join(lines) + rest
        assert "Stopped." in rest
        assert graph_processes(marker) == []
    finally:
        if server.poll() is None:
            server.kill()
