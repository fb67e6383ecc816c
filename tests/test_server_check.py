"""`chat`, `bench` and `conform` say first, and before anything slow, that nothing listens or that the server
is not ready (with the --wait hint); only a ready server without a front model is told it has none."""

from __future__ import annotations

import pytest
from aiohttp import web
from click.testing import CliRunner

from tests.conform_fakes import AppServer
from triton_repo.launch.tritonserver import free_port
from trt_build.cli.bench import bench
from trt_build.cli.conform import conform
from trt_build.cli.serve import chat


def health_app(ready: int, live: int, model_ready: int = 200) -> web.Application:
    """A Triton-like HTTP server whose health and model-ready answers are the given statuses."""
    statuses = {"/v2/health/ready": ready, "/v2/health/live": live}

    async def answer(request: web.Request) -> web.Response:
        return web.Response(status=statuses.get(request.path, model_ready))

    app = web.Application()
    app.router.add_get("/{tail:.*}", answer)
    return app


@pytest.fixture(autouse=True)
def no_tokenizer(monkeypatch):
    """Nothing slow may happen before the server check: loading a tokenizer fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError("the tokenizer was loaded before the server was checked")

    for module in ("benchmarks.served.sweep", "benchmarks.conform.suite"):
        monkeypatch.setattr(f"{module}.load_tokenizer", refuse)


def run(command, url: str, protocol: str, tmp_path) -> tuple[int, str]:
    args = {
        "chat": [chat, ["--url", url, "--protocol", protocol, "hello"]],
        "bench": [bench, ["--url", url, "--protocol", protocol, "--output", str(tmp_path / "out")]],
        "conform": [conform, [url, "--protocol", {"http": "triton"}.get(protocol, protocol)]],
    }[command]
    result = CliRunner().invoke(*args)
    assert not isinstance(result.exception, AssertionError), result.exception
    return result.exit_code, result.output


# conform speaks HTTP to a Triton server (its gRPC paths follow the HTTP server): no conform over grpc
CLOSED_PORT_CASES = [
    (command, protocol)
    for command in ("chat", "bench", "conform")
    for protocol in ("http", "grpc", "openai")
    if (command, protocol) != ("conform", "grpc")
]


@pytest.mark.parametrize(("command", "protocol"), CLOSED_PORT_CASES)
def test_a_closed_port_is_said_first_with_the_wait_hint(command, protocol, tmp_path):
    address = f"127.0.0.1:{free_port()}"
    url = address if protocol == "grpc" else f"http://{address}"
    code, output = run(command, url, protocol, tmp_path)
    assert code != 0
    assert output.startswith(f"Error: {url} refuses connections: nothing listens there."), output
    assert "pass --wait SECONDS" in output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["chat", "bench", "conform"])
def test_a_live_server_that_is_not_ready_is_said_first(command, tmp_path):
    with AppServer(health_app(ready=503, live=200)) as server:
        code, output = run(command, server.url, "http", tmp_path)
    assert code != 0
    assert output.startswith(f"Error: {server.url} is not ready: Triton is live but not ready"), output
    assert "pass --wait SECONDS" in output


def test_a_server_that_is_not_triton_is_not_mistaken_for_a_missing_model(tmp_path):
    with AppServer(health_app(ready=404, live=404)) as server:
        code, output = run("chat", server.url, "http", tmp_path)
    assert code != 0 and "does not answer as Triton" in output and "serves neither" not in output


@pytest.mark.parametrize("command", ["chat", "bench"])
def test_only_a_ready_server_without_a_front_model_is_told_so(command, tmp_path):
    with AppServer(health_app(ready=200, live=200, model_ready=400)) as server:
        code, output = run(command, server.url, "http", tmp_path)
    assert code != 0
    assert "is ready but serves neither ensemble nor tensorrt_llm_bls" in output and "--model" in output


def test_waiting_is_said_in_the_message(tmp_path):
    url = f"http://127.0.0.1:{free_port()}"
    result = CliRunner().invoke(chat, ["--url", url, "--wait", "0.6", "hello"])
    assert result.exit_code != 0
    assert result.output.startswith(f"Error: {url} refuses connections after waiting 0.6 s"), result.output
    assert "--wait SECONDS" not in result.output
