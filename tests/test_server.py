"""The launcher runs the real tritonserver (from nvidia-pytriton here) with a Python-backend model."""

from __future__ import annotations

import json
import os
import textwrap
import urllib.request
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from triton_repo.launch.tritonserver import Ports, TritonServer, find_tritonserver, server_command

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


@pytest.mark.slow
def test_real_server_serves_a_python_model_and_leaves_nothing_behind(tmp_path):
    repo = write_echo_repo(tmp_path / "repo")
    server = TritonServer(repo, log_path=tmp_path / "triton.log")
    with server:
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
    assert server.process.poll() is not None
    with pytest.raises(ProcessLookupError):
        os.killpg(pid, 0)
    assert not list(Path("/dev/shm").glob(f"{server.shm_prefix}*"))
