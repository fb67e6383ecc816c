"""What `swallow-trt serve` runs: tritonserver on a generated repository, or trtllm-serve on a deployment,
until Ctrl-C or SIGTERM. The progress lines it prints (starting, endpoints, stopping) are the command's
own output while it runs.

Every port (HTTP, gRPC, metrics, OpenAI) is checked free on the bind host (`--host`) before anything
starts, and "Ready." is printed only once the server is proven ours (triton_repo/launch/tritonserver.py).

--repo REPO                          tritonserver on a `swallow-trt repo` output. Engine repositories
                                     with several ranks run in MPI leader mode; a pytorch-target
                                     repository (llmapi model) with TP x PP > 1 runs as one server under
                                     `mpirun -n 1`, and the LLM API spawns its workers itself.
--via trtllm-serve --deploy DEPLOY   TensorRT-LLM's OpenAI-compatible server on a `build --target
                                     pytorch` deployment: `trtllm-serve <checkpoint> --extra_llm_api_options
                                     <yaml> --tp_size ...`. Where trtllm-serve is absent the error carries
                                     the exact command for the GPU host and exit status 3, like `build`.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from triton_repo.launch.ports import check_ports_free, shown_host
from triton_repo.launch.tritonserver import DEFAULT_HOST, Ports, TritonServer
from triton_repo.openai_front import OpenAIFrontServer, OpenAIFrontSettings
from triton_repo.repository.common import repository_manifest
from triton_repo.repository.engine_configs import ENGINE, MODEL_NAMES
from triton_repo.repository.engine_repo import repository_world_size
from triton_repo.repository.llmapi_configs import LLMAPI_MODELS
from triton_repo.repository.llmapi_repo import STOCK_SOURCE, missing_stock_files
from trt_build.common.console import say
from trt_build.common.errors import NO_GPU_TOOLCHAIN, SwallowTrtError


@dataclass(frozen=True)
class ServeOptions:
    """What `swallow-trt serve` is asked for: `repo` (tritonserver) or, with via trtllm-serve, `deploy`."""

    repo: Path | None = None
    via: str = "triton"
    deploy: Path | None = None
    host: str = DEFAULT_HOST  # what every service binds
    ports: Ports = field(default_factory=Ports)
    log_path: Path | None = None
    timeout_s: int = 600
    openai_port: int | None = None  # also serve the OpenAI-compatible API there (on `host`)
    served_model_name: str | None = None  # the model name OpenAI clients use [the front model's]
    http_gate: bool = True  # generate requests checked, then answered over gRPC (http_gate.py)


def check_repository(repo: Path) -> dict[str, Any]:
    """The repository's manifest, after checking that its models (and the stock llmapi files) are there."""
    manifest = repository_manifest(repo)
    pytorch = manifest.get("target") == "pytorch"
    missing = [
        name
        for name in (LLMAPI_MODELS if pytorch else MODEL_NAMES)
        if not (repo / name / "config.pbtxt").is_file()
    ]
    if missing:
        raise SwallowTrtError(
            f"{repo} is not a swallow-trt model repository (missing {', '.join(missing)}).",
            "Write one with `swallow-trt repo`.",
        )
    absent = missing_stock_files(repo)
    if absent:
        raise SwallowTrtError(
            f"{repo / ENGINE / '1'} lacks TensorRT-LLM's llmapi model ({', '.join(absent)}).",
            f"Copy them from {STOCK_SOURCE}/ of the TensorRT-LLM git tag that matches the serving host's "
            "tensorrt_llm (python3 -c 'import tensorrt_llm; print(tensorrt_llm.__version__)'), or write the "
            "repository again with `swallow-trt repo ... --llmapi-model DIR`.",
        )
    return manifest


def endpoints(server: TritonServer, pytorch: bool = False) -> str:
    models = (
        ".../tensorrt_llm_bls/generate_stream"
        if pytorch
        else "/v2/models/ensemble/generate_stream, .../tensorrt_llm_bls/..."
    )
    checked = (
        f"generate requests checked, then answered over gRPC; the rest passed to {server.triton_http_url}"
        if server.http_gate
        else "tritonserver's own: generate requests unchecked (--no-check-http)"
    )
    return "\n".join(
        [
            f"bound    {shown_host(server.host)}",
            f"HTTP     {server.http_url}  (POST {models})",
            f"         {checked}",
            f"gRPC     {server.grpc_url}",
            f"metrics  {server.metrics_url}",
            f"log      {server.log_path}",
        ]
    )


def trtllm_serve_command(deploy: Path, host: str, port: int) -> list[str]:
    from trt_build.build.llmapi_options import trtllm_serve_argv
    from trt_build.build.pytorch import read_deployment

    deployment = read_deployment(deploy)
    return trtllm_serve_argv(
        str(deployment.checkpoint), str(deployment.options_path), deployment.tp, deployment.pp, host, port
    )


def run_trtllm_serve(deploy: Path, host: str, port: int) -> None:
    argv = trtllm_serve_command(deploy, host, port)
    program = shutil.which("trtllm-serve")
    if program is None:
        raise SwallowTrtError(
            "trtllm-serve NOT started: this host has no trtllm-serve (TensorRT-LLM is not installed).",
            "Install TensorRT-LLM on the GPU host (pip install --extra-index-url https://pypi.nvidia.com "
            "tensorrt-llm==<version>) or use the NGC container nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3, "
            f"then run there:\n  {shlex.join(argv)}",
            exit_code=NO_GPU_TOOLCHAIN,
        )
    say(
        f"$ {shlex.join(argv)}\nOpenAI-compatible API at http://{host}:{port}/v1 once ready; Ctrl-C stops it."
    )
    process = subprocess.Popen([program, *argv[1:]])
    previous = signal.signal(signal.SIGTERM, lambda *_: process.send_signal(signal.SIGINT))
    try:
        returncode = process.wait()
    except KeyboardInterrupt:
        process.send_signal(signal.SIGINT)
        returncode = process.wait()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if returncode not in (0, -signal.SIGINT, 130):
        raise SwallowTrtError(f"trtllm-serve exited with {returncode} (its output is above).")
    say("Stopped.")


def openai_front(server: TritonServer, options: ServeOptions) -> OpenAIFrontServer | None:
    """The OpenAI-compatible API in front of a started server's gRPC port, when asked for."""
    if options.openai_port is None:
        return None
    settings = OpenAIFrontSettings(
        grpc_url=server.grpc_url,
        served_model_name=options.served_model_name,
        host=options.host,
        port=options.openai_port,
    )
    return OpenAIFrontServer(settings).start()


def serve_repository(options: ServeOptions) -> None:
    """tritonserver on `repo` (and the OpenAI API beside it) until Ctrl-C or SIGTERM; an exit of the server
    on its own is an error."""
    repo, ports, log_path = options.repo, options.ports, options.log_path
    assert repo is not None
    manifest = check_repository(repo)
    openai_port = {} if options.openai_port is None else {"OpenAI": options.openai_port}
    check_ports_free(options.host, {**ports.named(), **openai_port})
    pytorch = manifest.get("target") == "pytorch"
    world_size = repository_world_size(repo)
    parallel = int(manifest.get("tensor_parallel_size", 1)) * int(manifest.get("pipeline_parallel_size", 1))
    mpi_singleton = pytorch and manifest.get("backend") == "llmapi" and parallel > 1
    server = TritonServer(
        repo,
        ports,
        world_size,
        log_path,
        mpi_singleton=mpi_singleton,
        host=options.host,
        http_gate=options.http_gate,
    )
    say(
        f"Starting {server.installation.binary} ({server.installation.source}), world size {world_size}"
        + (f", one server under mpirun for the LLM API's {parallel} GPU workers" if mpi_singleton else "")
        + "..."
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    front = None
    try:
        server.start(timeout_s=options.timeout_s)
        front = openai_front(server, options)
        openai = f"\nOpenAI   {front.url}  (POST /chat/completions, /completions)" if front else ""
        say(f"Ready.\n{endpoints(server, pytorch)}{openai}\nPress Ctrl-C to stop.")
        while not stop.is_set():
            if server.process.poll() is not None:
                raise server.exit_error()
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        if front is not None:
            front.stop()
        say("Stopping tritonserver...")
        server.stop()
    say("Stopped.")


def serve_until_stopped(options: ServeOptions) -> None:
    """`swallow-trt serve`: trtllm-serve on a deployment, or tritonserver on a repository."""
    if options.via == "trtllm-serve":
        if options.deploy is None or options.repo is not None:
            raise SwallowTrtError("--via trtllm-serve serves --deploy DEPLOY_DIR (not --repo).")
        run_trtllm_serve(options.deploy, options.host, options.ports.http)
        return
    if options.repo is None or options.deploy is not None:
        raise SwallowTrtError("Pass --repo REPO (tritonserver), or --via trtllm-serve --deploy DEPLOY_DIR.")
    serve_repository(options)
