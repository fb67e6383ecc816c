"""`swallow-trt serve`: run tritonserver on a generated repository until Ctrl-C."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import click

from triton_repo.generate import repository_world_size
from triton_repo.model_configs import MODEL_NAMES
from triton_repo.server import Ports, TritonServer


def check_repository(repo: Path) -> None:
    missing = [name for name in MODEL_NAMES if not (repo / name / "config.pbtxt").is_file()]
    if missing:
        raise click.ClickException(
            f"{repo} is not a swallow-trt model repository (missing {', '.join(missing)}). "
            "Write one with `swallow-trt repo`."
        )


def endpoints(server: TritonServer) -> str:
    return "\n".join(
        [
            f"HTTP     {server.http_url}  (POST /v2/models/ensemble/generate_stream, .../tensorrt_llm_bls/...)",
            f"gRPC     {server.grpc_url}",
            f"metrics  {server.metrics_url}",
            f"log      {server.log_path}",
        ]
    )


@click.command()
@click.option(
    "--repo",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Model repository.",
)
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
    repo: Path, http_port: int, grpc_port: int, metrics_port: int, log_path: Path | None, timeout: int
) -> None:
    """Serve a model repository with tritonserver (MPI leader mode for multi-GPU engines); Ctrl-C stops it."""
    check_repository(repo)
    world_size = repository_world_size(repo)
    server = TritonServer(
        repo, Ports(http_port, grpc_port, metrics_port), world_size=world_size, log_path=log_path
    )
    click.echo(
        f"Starting {server.installation.binary} ({server.installation.source}), world size {world_size}..."
    )
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        server.start(timeout_s=timeout)
        click.echo(f"Ready.\n{endpoints(server)}\nPress Ctrl-C to stop.")
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
