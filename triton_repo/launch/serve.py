"""`swallow-trt serve`: run tritonserver on a generated repository, or trtllm-serve on a deployment, until Ctrl-C.

--repo REPO                          tritonserver on a `swallow-trt repo` output. Engine repositories
                                     with several ranks run in MPI leader mode; a pytorch-target
                                     repository (llmapi model) with TP x PP > 1 runs as one server under
                                     `mpirun -n 1`, and the LLM API spawns its workers (reference 4.5).
--via trtllm-serve --deploy DEPLOY   TensorRT-LLM's OpenAI-compatible server on a `build --target
                                     pytorch` deployment: `trtllm-serve <checkpoint> --extra_llm_api_options
                                     <yaml> --tp_size ...`. Where trtllm-serve is absent it prints the
                                     exact command for the GPU host and exits 3, like `build`.
"""

from __future__ import annotations

import shlex
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import click

from triton_repo.launch.tritonserver import Ports, TritonServer
from triton_repo.repository.engine_configs import ENGINE, MODEL_NAMES
from triton_repo.repository.llmapi_configs import LLMAPI_MODELS
from triton_repo.repository.write import LLMAPI_STOCK_FILES, repository_manifest, repository_world_size

NO_GPU_TOOLCHAIN = 3  # as `swallow-trt build`: nothing was started, the command for the GPU host is printed


def check_repository(repo: Path) -> dict:
    """The repository's manifest, after checking that its models (and the stock llmapi files) are there."""
    manifest = repository_manifest(repo)
    pytorch = manifest.get("target") == "pytorch"
    missing = [
        name
        for name in (LLMAPI_MODELS if pytorch else MODEL_NAMES)
        if not (repo / name / "config.pbtxt").is_file()
    ]
    if missing:
        raise click.ClickException(
            f"{repo} is not a swallow-trt model repository (missing {', '.join(missing)}). "
            "Write one with `swallow-trt repo`."
        )
    absent = [name for name in LLMAPI_STOCK_FILES if not (repo / ENGINE / "1" / name).is_file()]
    if pytorch and manifest.get("backend") == "llmapi" and absent:
        raise click.ClickException(
            f"{repo / ENGINE / '1'} lacks TensorRT-LLM's llmapi model ({', '.join(absent)}). Copy them from "
            "triton_backend/all_models/llmapi/tensorrt_llm/1/ of the TensorRT-LLM git tag that matches the "
            "serving host's tensorrt_llm (python3 -c 'import tensorrt_llm; print(tensorrt_llm.__version__)'), "
            "or write the repository again with `swallow-trt repo ... --llmapi-model DIR`."
        )
    return manifest


def endpoints(server: TritonServer, pytorch: bool = False) -> str:
    models = (
        ".../tensorrt_llm_bls/generate_stream"
        if pytorch
        else "/v2/models/ensemble/generate_stream, .../tensorrt_llm_bls/..."
    )
    return "\n".join(
        [
            f"HTTP     {server.http_url}  (POST {models})",
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
        click.echo(
            "trtllm-serve NOT started: this host has no trtllm-serve (TensorRT-LLM is not installed).\n"
            "Install TensorRT-LLM on the GPU host (pip install --extra-index-url https://pypi.nvidia.com "
            "tensorrt-llm==<version>) or use the NGC container nvcr.io/nvidia/tritonserver:<yy.mm>-trtllm-python-py3, "
            f"then run there:\n  {shlex.join(argv)}",
            err=True,
        )
        raise SystemExit(NO_GPU_TOOLCHAIN)
    click.echo(
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
        raise click.ClickException(f"trtllm-serve exited with {returncode} (its output is above).")
    click.echo("Stopped.")


@click.command()
@click.option(
    "--repo",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model repository (swallow-trt repo output).",
)
@click.option(
    "--via",
    type=click.Choice(["triton", "trtllm-serve"]),
    default="triton",
    show_default=True,
    help="trtllm-serve: TensorRT-LLM's OpenAI-compatible server on a pytorch deployment (--deploy).",
)
@click.option(
    "--deploy",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="A `build --target pytorch` deployment directory (with --via trtllm-serve).",
)
@click.option("--host", default="0.0.0.0", show_default=True, help="trtllm-serve: address to listen on.")
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), default=8001, show_default=True)
@click.option("--metrics-port", type=click.IntRange(1, 65535), default=8002, show_default=True)
@click.option(
    "--log", "log_path", type=click.Path(path_type=Path), help="Server log file [a temporary file]."
)
@click.option(
    "--timeout", type=click.IntRange(min=1), default=600, show_default=True, help="Seconds to wait for ready."
)
def command(
    repo: Path | None,
    via: str,
    deploy: Path | None,
    host: str,
    http_port: int,
    grpc_port: int,
    metrics_port: int,
    log_path: Path | None,
    timeout: int,
) -> None:
    """Serve a model repository with tritonserver (or a pytorch deployment with trtllm-serve); Ctrl-C stops it.

    Exit status 3 (--via trtllm-serve): no trtllm-serve here; the command for the GPU host is printed.
    """
    if via == "trtllm-serve":
        if deploy is None or repo is not None:
            raise click.ClickException("--via trtllm-serve serves --deploy DEPLOY_DIR (not --repo).")
        run_trtllm_serve(deploy, host, http_port)
        return
    if repo is None or deploy is not None:
        raise click.ClickException(
            "Pass --repo REPO (tritonserver), or --via trtllm-serve --deploy DEPLOY_DIR."
        )
    manifest = check_repository(repo)
    pytorch = manifest.get("target") == "pytorch"
    world_size = repository_world_size(repo)
    parallel = int(manifest.get("tensor_parallel_size", 1)) * int(manifest.get("pipeline_parallel_size", 1))
    mpi_singleton = pytorch and manifest.get("backend") == "llmapi" and parallel > 1
    server = TritonServer(
        repo,
        Ports(http_port, grpc_port, metrics_port),
        world_size=world_size,
        log_path=log_path,
        mpi_singleton=mpi_singleton,
    )
    click.echo(
        f"Starting {server.installation.binary} ({server.installation.source}), world size {world_size}"
        + (f", one server under mpirun for the LLM API's {parallel} GPU workers" if mpi_singleton else "")
        + "..."
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start(timeout_s=timeout)
        click.echo(f"Ready.\n{endpoints(server, pytorch)}\nPress Ctrl-C to stop.")
        while not stop.is_set():
            if server.process.poll() is not None:
                raise click.ClickException(
                    f"tritonserver exited with {server.process.returncode}.\n{server.log_tail()}"
                )
            stop.wait(1.0)
    except KeyboardInterrupt:
        pass
    finally:
        signal.signal(signal.SIGTERM, previous)
        click.echo("Stopping tritonserver...")
        server.stop()
    click.echo("Stopped.")
