"""The launcher runs the real tritonserver (from nvidia-pytriton here) with a Python-backend model.

One echo server (module fixture) serves every check that needs a running server: what it binds, that
`serve` refuses its ports without starting anything, that a health answer from it does not make another
server "ready", that a server started on its ports dies with the reason first; it is stopped last.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from pathlib import Path

import pytest
from click.testing import CliRunner
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.launch import serve as serve_module
from triton_repo.launch.ports import check_ports_free, listeners, port_problem
from triton_repo.launch.tritonserver import (
    Ports,
    TritonServer,
    find_tritonserver,
    free_port,
    log_errors,
    server_command,
)
from triton_repo.repository.engine_configs import MODEL_NAMES
from trt_build.cli.serve import serve as serve_command
from trt_build.common.errors import SwallowTrtError

# 127.0.0.1 as /proc/net/tcp writes it, and as tcp6 writes ::ffff:127.0.0.1 (gRPC listens on IPv6)
LOOPBACK_HEX = {"0100007F", "0000000000000000FFFF00000100007F"}

ECHO_MODEL = textwrap.dedent(
    """
    import numpy as np
    import triton_python_backend_utils as pb_utils

    class TritonPythonModel:
        def execute(self, requests):
            responses = []
            for request in requests:
                text = pb_utils.get_input_tensor_by_name(request, "text_input").as_numpy()
                out = np.array([t.decode("utf-8")[::-1].encode("utf-8") for t in text.reshape(-1)], dtype=object)
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("text_output", out)]))
            return responses
    """
)


def write_echo_repo(root: Path) -> Path:
    config = mc.ModelConfig(name="echo", backend="python", max_batch_size=0)
    config.input.add(name="text_input", data_type=mc.TYPE_STRING, dims=[-1])
    config.output.add(name="text_output", data_type=mc.TYPE_STRING, dims=[-1])
    config.instance_group.add(kind=mc.ModelInstanceGroup.KIND_CPU, count=1)
    (root / "echo" / "1").mkdir(parents=True)
    (root / "echo" / "config.pbtxt").write_text(text_format.MessageToString(config))
    (root / "echo" / "1" / "model.py").write_text(ECHO_MODEL)
    return root


def test_leader_mode_command_loads_only_the_engine_on_other_ranks(tmp_path):
    installation = find_tritonserver()
    command = server_command(installation, tmp_path, Ports(8000, 8001, 8002), "p_", world_size=2)
    assert command[:4] == ["mpirun", "--allow-run-as-root", "-n", "1"]
    split = command.index(":")
    leader, follower = command[:split], command[split:]
    assert "--model-control-mode=explicit" not in leader
    assert "--model-control-mode=explicit" in follower and "--load-model=tensorrt_llm" in follower
    assert "--backend-config=python,shm-region-prefix-name=p_0_" in leader
    assert "--backend-config=python,shm-region-prefix-name=p_1_" in follower


def write_unstarted_repo(root: Path) -> Path:
    """A repository `serve` accepts (manifest and the five models' configs) but that never runs."""
    for name in MODEL_NAMES:
        (root / name).mkdir(parents=True)
        (root / name / "config.pbtxt").write_text(f'name: "{name}"\n')
    (root / "manifest.json").write_text(json.dumps({"world_size": 1}))
    return root


def test_every_service_binds_the_host_and_http_port_alone_implies_the_others(tmp_path, monkeypatch):
    command = server_command(find_tritonserver(), tmp_path, Ports.following(9100), "p_", host="10.1.2.3")
    for flag in ("--http-address=10.1.2.3", "--grpc-address=10.1.2.3", "--metrics-address=10.1.2.3"):
        assert flag in command
    assert {"--http-port=9100", "--grpc-port=9101", "--metrics-port=9102"} <= set(command)
    seen = []
    monkeypatch.setattr("triton_repo.launch.serve.serve_until_stopped", seen.append)
    result = CliRunner().invoke(serve_command, ["--repo", str(tmp_path), "--http-port", "9100"])
    assert result.exit_code == 0, result.output
    assert seen[0].ports == Ports(9100, 9101, 9102) and seen[0].host == "127.0.0.1"
    CliRunner().invoke(serve_command, ["--repo", str(tmp_path), "--grpc-port", "7000", "--host", "::1"])
    assert seen[1].ports == Ports(8000, 7000, 8002) and seen[1].host == "::1"
    assert seen[0].http_gate and seen[1].http_gate  # generate requests checked unless told
    CliRunner().invoke(serve_command, ["--repo", str(tmp_path), "--no-check-http"])
    assert not seen[2].http_gate
    gated = server_command(
        find_tritonserver(), tmp_path, Ports(9100, 9101, 9102), "p_", host="0.0.0.0", gated_http_port=9200
    )
    assert {"--http-address=127.0.0.1", "--http-port=9200", "--grpc-address=0.0.0.0"} <= set(gated)


def test_ports_that_clash_or_do_not_exist_are_refused_by_name():
    with pytest.raises(SwallowTrtError, match="OpenAI and HTTP are both given port 9000"):
        check_ports_free("127.0.0.1", {"HTTP": 9000, "OpenAI": 9000})
    with pytest.raises(SwallowTrtError, match="gRPC port 65536 is not a TCP port"):
        check_ports_free("127.0.0.1", Ports.following(65535).named())


def test_the_failure_of_a_dead_server_starts_with_the_log_s_reason(tmp_path):
    log = tmp_path / "tritonserver.log"
    log.write_text(
        "I0612 10:11:12.000001 77 server.cc:674] some table\n"
        'E0612 10:11:12.000002 77 server.cc:241] "CudaDriverHelper has not been initialized."\n'
        "E0612 10:11:12.123456 77 model_lifecycle.cc:654] failed to load 'ensemble' version 1: "
        "Internal: ValueError: no tokenizer\n"
        "I0612 10:11:12.200000 77 server.cc:307] Waiting for in-flight requests to complete.\n"
        "error: creating server: Internal - failed to load all models\n"
    )
    assert log_errors(log.read_text()) == [
        "failed to load 'ensemble' version 1: Internal: ValueError: no tokenizer",
        "creating server: Internal - failed to load all models",
    ]
    server = TritonServer(tmp_path, Ports(1, 2, 3), log_path=log)
    server.process = subprocess.Popen([sys.executable, "-c", "raise SystemExit(1)"])
    server.process.wait()
    first = str(server.exit_error()).splitlines()[0]
    assert (
        first
        == "tritonserver exited with 1: failed to load 'ensemble' version 1: Internal: ValueError: no tokenizer"
    )


@pytest.fixture(scope="module")
def echo_server(tmp_path_factory):
    root = tmp_path_factory.mktemp("echo")
    server = TritonServer(write_echo_repo(root / "repo"), log_path=root / "triton.log")
    with server:
        yield server


@pytest.mark.slow
def test_the_server_binds_loopback_by_default(echo_server):
    for port in (echo_server.ports.http, echo_server.ports.grpc, echo_server.ports.metrics):
        found = listeners(port)
        assert found and all(listener.address in LOOPBACK_HEX for listener in found), (port, found)
    assert echo_server.http_url.startswith("http://127.0.0.1:")


@pytest.mark.slow
def test_serve_refuses_taken_ports_before_starting_anything(echo_server, tmp_path, monkeypatch):
    def never(*args, **kwargs):
        raise AssertionError("tritonserver must not be started")

    monkeypatch.setattr(serve_module, "TritonServer", never)
    repo = write_unstarted_repo(tmp_path / "repo")
    taken = echo_server.ports
    for args, port, service in [
        (["--http-port", str(taken.http), "--grpc-port", str(free_port())], taken.http, "HTTP"),
        (["--http-port", str(free_port()), "--grpc-port", str(taken.grpc)], taken.grpc, "gRPC"),
        (
            [
                "--http-port",
                str(free_port()),
                "--grpc-port",
                str(free_port()),
                "--openai-port",
                str(taken.metrics),
            ],
            taken.metrics,
            "OpenAI",
        ),
    ]:
        args += ["--metrics-port", str(free_port())]  # explicit: an implied P+1 / P+2 may belong to anyone
        result = CliRunner().invoke(serve_command, ["--repo", str(repo), *args])
        assert result.exit_code == 1, result.output
        assert f"Error: {service} port {port} on 127.0.0.1 is not free" in result.output, result.output
        assert "Ready." not in result.output and "Traceback" not in result.output
    assert port_problem("0.0.0.0", taken.http)  # the wildcard clashes with a loopback listener too


@pytest.mark.slow
def test_a_health_answer_from_another_server_is_not_ready(echo_server, tmp_path):
    """Our process runs, but what answers on the port is the echo server: never ready."""
    impostor = TritonServer(write_unstarted_repo(tmp_path / "repo"), echo_server.ports)
    impostor.triton_http_port = echo_server.triton_http_port  # as if the echo server took it first
    impostor.process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        assert (
            impostor.not_ready()
            == f"another process answers on port {echo_server.triton_http_port}, not this tritonserver"
        )
        assert echo_server.not_ready() is None  # the echo server itself is proven ready
    finally:
        impostor.process.kill()
        impostor.process.wait()


@pytest.mark.slow
def test_a_server_that_cannot_bind_says_so_first(echo_server, tmp_path):
    """serve's own check bypassed: a taken HTTP port stops the start before tritonserver runs; a taken gRPC
    port is tritonserver's own first error."""
    repo = write_echo_repo(tmp_path / "repo")
    server = TritonServer(repo, Ports(echo_server.ports.http, free_port(), free_port()), http_gate=True)
    with pytest.raises(SwallowTrtError) as raised:
        server.start(timeout_s=120)
    assert str(raised.value).startswith(
        f"HTTP port {echo_server.ports.http} on 127.0.0.1 cannot be bound: another process listens on it."
    )
    assert server.process is None
    server = TritonServer(
        repo,
        Ports(free_port(), echo_server.ports.grpc, free_port()),
        log_path=tmp_path / "t.log",
        http_gate=True,
    )
    with pytest.raises(SwallowTrtError) as raised:
        server.start(timeout_s=120)
    first = str(raised.value).splitlines()[0]
    assert first.startswith("tritonserver exited with") and "already in use" in first, str(raised.value)
    assert port_problem("127.0.0.1", server.ports.http) is None  # the gate let its port go


@pytest.mark.slow
def test_real_server_serves_a_python_model_and_leaves_nothing_behind(echo_server):
    """Runs last: it stops the module's server."""
    server = echo_server
    body = json.dumps(
        {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["東京タワー"]}]}
    ).encode()
    request = urllib.request.Request(f"{server.http_url}/v2/models/echo/infer", data=body, method="POST")
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    assert answer["outputs"][0]["data"] == ["ーワタ京東"]
    with urllib.request.urlopen(server.metrics_url, timeout=10) as response:
        assert "nv_inference_request_success" in response.read().decode()
    assert list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))  # the stub uses our prefix
    pid = server.process.pid
    server.stop()
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
