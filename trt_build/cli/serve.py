"""Commands that serve a model: `repo` (write a Triton model repository), `serve` (run it), `chat`
(stream an answer from the running server)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from triton_repo.client.chat import ChatOptions, answer_deltas
from triton_repo.launch.tritonserver import DEFAULT_HOST, Ports
from triton_repo.repository.common import repository_manifest
from triton_repo.repository.llmapi_repo import stock_files_note
from triton_repo.repository.write import RepoOptions, write_repository
from trt_build.build.limits import KV_CACHE_FREE_GPU_MEM_FRACTION
from trt_build.cli.base import command

DIRECTORY = click.Path(exists=True, file_okay=False, path_type=Path)


def wrote_message(repo: Path, from_engine: bool) -> str:
    manifest = repository_manifest(repo)
    if manifest.get("target") == "pytorch":
        return (
            f"Wrote {repo} (pytorch target: {manifest['backend']}; send requests to tensorrt_llm_bls). "
            f"Serve it with: swallow-trt serve --repo {repo}"
        )
    target = "C++ tensorrtllm backend" if from_engine else "CPU reference engine"
    return f"Wrote {repo} ({target}). Serve it with: swallow-trt serve --repo {repo}"


@command()
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Model repository to write.")
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    required=True,
    type=DIRECTORY,
    help="Hugging Face tokenizer directory (copied into the repository).",
)
@click.option(
    "--engine",
    "engine_dir",
    type=DIRECTORY,
    help="TensorRT-LLM engine directory (C++ tensorrtllm backend), or a `build --target pytorch` deployment "
    "(TensorRT-LLM's llmapi model); GPU.",
)
@click.option(
    "--checkpoint",
    "checkpoint_dir",
    type=DIRECTORY,
    help="TensorRT-LLM checkpoint, or Hugging Face directory (pytorch-target layout): served by the CPU "
    "reference engine (no GPU needed).",
)
@click.option(
    "--llmapi-model",
    type=DIRECTORY,
    envvar="SWALLOW_TRT_LLMAPI_MODEL",
    help="pytorch deployments: TensorRT-LLM's triton_backend/all_models/llmapi/tensorrt_llm/1 (model.py, "
    "helpers.py) at the tag of the serving host's tensorrt_llm, copied into the repository.",
)
@click.option("--max-batch-size", type=click.IntRange(min=1), help="Triton max batch size [engine's / 32].")
@click.option(
    "--instances",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="preprocessing and BLS instances.",
)
@click.option(
    "--kv-cache-free-gpu-mem-fraction",
    type=click.FloatRange(0.05, 0.99),
    default=KV_CACHE_FREE_GPU_MEM_FRACTION,
    show_default=True,
    help="Share of free GPU memory (after the engine loads) for the KV cache.",
)
@click.option(
    "--kv-cache-reuse/--no-kv-cache-reuse",
    default=None,
    help="Prefix (system prompt) KV reuse [on when the engine has paged context FMHA].",
)
@click.option(
    "--max-input-len", type=click.IntRange(min=1), help="CPU engine: longest prompt [max-seq-len/2]."
)
@click.option("--max-seq-len", type=click.IntRange(min=2), help="CPU engine: prompt + output limit [8192].")
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
def repo(**options: Any) -> None:
    """Write a Triton model repository (ensemble, preprocessing, tensorrt_llm, postprocessing, BLS;
    for the pytorch target: the llmapi tensorrt_llm and our tensorrt_llm_bls front)."""
    request = RepoOptions(**options)
    written = write_repository(request)
    note = stock_files_note(written)
    if note:
        click.echo(note, err=True)
    click.echo(wrote_message(written, from_engine=request.engine_dir is not None))


@command()
@click.option("--repo", type=DIRECTORY, help="Model repository (swallow-trt repo output).")
@click.option(
    "--via",
    type=click.Choice(["triton", "trtllm-serve"]),
    default="triton",
    show_default=True,
    help="trtllm-serve: TensorRT-LLM's OpenAI-compatible server on a pytorch deployment (--deploy).",
)
@click.option(
    "--deploy",
    type=DIRECTORY,
    help="A `build --target pytorch` deployment directory (with --via trtllm-serve).",
)
@click.option(
    "--host",
    default=DEFAULT_HOST,
    show_default=True,
    help="Address HTTP, gRPC, metrics and the OpenAI API bind (0.0.0.0: every interface).",
)
@click.option("--http-port", type=click.IntRange(1, 65535), default=8000, show_default=True)
@click.option("--grpc-port", type=click.IntRange(1, 65535), help="[HTTP port + 1]")
@click.option("--metrics-port", type=click.IntRange(1, 65535), help="[HTTP port + 2]")
@click.option(
    "--log", "log_path", type=click.Path(path_type=Path), help="Server log file [a temporary file]."
)
@click.option(
    "--timeout", type=click.IntRange(min=1), default=600, show_default=True, help="Seconds to wait for ready."
)
@click.option(
    "--openai-port",
    type=click.IntRange(1, 65535),
    help="Also serve an OpenAI-compatible API (/v1/chat/completions, /v1/completions, /v1/models) on "
    "--host:PORT in front of the repository (Triton's own OpenAI frontend uses 9000).",
)
@click.option(
    "--served-model-name", help="The model name OpenAI clients send [the repository's front model name]."
)
@click.option(
    "--check-http/--no-check-http",
    default=True,
    show_default=True,
    help="The HTTP gate on --http-port: every generate body is checked (type, range, unknown field, "
    "stream on /generate) and refused with a 400 naming the field before tritonserver parses it, then "
    "answered through tritonserver's gRPC stream, which loses no event under load (docs/triton.md §6.4). "
    "--no-check-http: tritonserver serves its HTTP port itself.",
)
@click.option(
    "--dynamo",
    type=DIRECTORY,
    help="A `deploy dynamo` directory: run its NVIDIA Dynamo graph (frontend, router, workers) on --http-port.",
)
@click.option(
    "--engine",
    type=click.Choice(["auto", "trtllm", "cpu", "mocker"]),
    default="auto",
    show_default=True,
    help="--dynamo workers: trtllm runs DEPLOY/local/launch.sh; cpu: the reference engine on the checkpoint; "
    "mocker: Dynamo's simulated engine (load and routing); auto: trtllm where TensorRT-LLM is installed, else cpu.",
)
def serve(
    repo: Path | None,
    via: str,
    deploy: Path | None,
    host: str,
    http_port: int,
    grpc_port: int | None,
    metrics_port: int | None,
    log_path: Path | None,
    timeout: int,
    openai_port: int | None,
    served_model_name: str | None,
    check_http: bool,
    dynamo: Path | None,
    engine: str,
) -> None:
    """Serve a model repository with tritonserver (or a pytorch deployment with trtllm-serve); Ctrl-C stops it.

    Exit status 3 (--via trtllm-serve): no trtllm-serve here; the command for the GPU host is printed.
    """
    if dynamo is not None:
        from dynamo_deploy.graph.graph import GraphOptions
        from dynamo_deploy.graph.serve import serve_dynamo

        if repo is not None or deploy is not None:
            raise click.UsageError(
                "--dynamo serves a Dynamo deployment on its own (not with --repo / --deploy)."
            )
        serve_dynamo(dynamo, engine, GraphOptions(host=host, http_port=http_port, timeout_s=timeout))
        return
    from triton_repo.launch.serve import ServeOptions, serve_until_stopped  # the server side: not for `chat`

    ports = Ports.following(http_port, grpc_port, metrics_port)
    options = ServeOptions(
        repo, via, deploy, host, ports, log_path, timeout, openai_port, served_model_name, check_http
    )
    serve_until_stopped(options)


@command()
@click.argument("prompt")
@click.option(
    "--url",
    default="http://localhost:8000",
    show_default=True,
    help="HTTP URL, host:port for gRPC, or the OpenAI API's URL (http://localhost:9000).",
)
@click.option("--protocol", type=click.Choice(["http", "grpc", "openai"]), default="http", show_default=True)
@click.option(
    "--model",
    help="ensemble or tensorrt_llm_bls [the first of them the server has]; openai: [the first model listed].",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--chat/--raw", default=True, show_default=True, help="Apply the chat template to the prompt.")
@click.option("--temperature", type=float, help="0 = greedy (the default when no sampling option is given).")
@click.option("--top-p", type=float)
@click.option("--top-k", type=int)
@click.option("--seed", type=int)
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to this many seconds for the server.")
def chat(**options: Any) -> None:
    """Stream an answer to PROMPT from a running `swallow-trt serve`."""
    for delta in answer_deltas(ChatOptions(**options)):
        sys.stdout.write(delta)
        sys.stdout.flush()
    sys.stdout.write("\n")
