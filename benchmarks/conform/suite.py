"""`run_conform`: probe the endpoint, send the prompt on every path, sequentially and then concurrently,
and check what came back. Greedy decoding makes every comparison exact."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from benchmarks.conform import UNREACHABLE_EXIT
from benchmarks.conform.checks import Context, PathRun
from benchmarks.conform.openai_api import OpenAIEndpoint
from benchmarks.conform.paths import Answer, ClientPath
from benchmarks.conform.prompt import RenderedPrompt, render_prompt
from benchmarks.conform.report import Report, build_report
from benchmarks.conform.triton import TritonEndpoint, grpc_address
from benchmarks.load.datasets import load_tokenizer
from triton_repo.client.server_check import FRONT_MODELS, OPENAI, TRITON, base_url, wait_for_server
from trt_build.common.errors import SwallowTrtError
from trt_build.source.tokenizer import ensure_tokenizer


@dataclass(frozen=True)
class ConformOptions:
    url: str
    protocol: str = "auto"  # auto | triton | openai
    models: tuple[str, ...] = ()  # Triton front models / the OpenAI model (default: found on the server)
    grpc_url: str | None = None  # Triton gRPC (default: the HTTP port + 1)
    grpc: bool = True  # Triton: also test the gRPC streaming paths
    tokenizer_dir: Path | None = None  # the served model's tokenizer (default: Llama 3.1, built offline)
    api_key: str | None = None  # OpenAI servers that want one
    concurrency: int = 32
    max_tokens: int = 256
    wait_s: float = 0.0
    timeout_s: float = 300.0


async def run_paths(paths: list[ClientPath], concurrency: int) -> list[PathRun]:
    """Every path once, in order (the sequential answers), then `concurrency` requests at once per path."""
    sequential: dict[str, Answer] = {}
    for path in paths:
        sequential[path.name] = await path.send()
    runs = []
    for path in paths:
        concurrent = list(await asyncio.gather(*(path.send() for _ in range(concurrency))))
        answer = sequential[path.name]
        runs.append(PathRun(path, answer, sequential.get(path.reference, answer), concurrent))
    return runs


async def _triton_paths(
    session: aiohttp.ClientSession, base: str, options: ConformOptions, report: Report, prompt: RenderedPrompt
) -> tuple[TritonEndpoint, list[ClientPath]]:
    grpc_url = (options.grpc_url or grpc_address(base)) if options.grpc else None
    endpoint = TritonEndpoint(session, base, grpc_url, prompt, options.max_tokens, options.timeout_s)
    try:
        models = await endpoint.front_models(options.models)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        raise SwallowTrtError(
            f"{base} did not describe its models: {type(error).__name__}: {error}.",
            "Check that it is a Triton server and name the front model with --model.",
            exit_code=UNREACHABLE_EXIT,
        ) from None
    if not models:
        raise SwallowTrtError(
            f"{base} is a Triton server with none of {', '.join(FRONT_MODELS)} ready.",
            "Name the model clients call with --model.",
            exit_code=UNREACHABLE_EXIT,
        )
    report.target = ", ".join(models)
    report.notes.append(f"gRPC at {grpc_url}" if grpc_url else "gRPC paths not tested (--no-grpc)")
    return endpoint, [path for model in models for path in endpoint.paths(model)]


async def _openai_paths(
    base: str, options: ConformOptions, report: Report, prompt: RenderedPrompt
) -> tuple[OpenAIEndpoint, list[ClientPath]]:
    endpoint = OpenAIEndpoint(base, options.api_key, prompt, options.max_tokens, options.timeout_s)
    try:
        report.target = await endpoint.choose_model(options.models)
    except Exception as error:  # the server's own words, whatever the client raised
        await endpoint.close()
        raise SwallowTrtError(
            f"{base} lists no usable model: {error}.",
            "Name it with --model.",
            exit_code=UNREACHABLE_EXIT,
        ) from None
    note = await endpoint.probe_completions_bos()
    if note:
        report.notes.append(note)
    return endpoint, endpoint.paths()


async def conform(options: ConformOptions) -> Report:
    base = base_url(options.url).removesuffix("/v1")  # an OpenAI base URL is often given with /v1
    # refused / not ready is said before anything slow (the tokenizer takes seconds to load)
    protocol = await asyncio.to_thread(
        wait_for_server, base, options.protocol, options.wait_s, UNREACHABLE_EXIT
    )
    tokenizer = load_tokenizer(options.tokenizer_dir or ensure_tokenizer())
    prompt = render_prompt(tokenizer)
    headers = {"Authorization": f"Bearer {options.api_key}"} if options.api_key else None
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0),
        timeout=aiohttp.ClientTimeout(total=options.timeout_s),
        headers=headers,
    ) as session:
        report = Report(base, protocol, "", options.concurrency, options.max_tokens)
        if protocol == TRITON:
            endpoint, paths = await _triton_paths(session, base, options, report, prompt)
        else:
            assert protocol == OPENAI
            endpoint, paths = await _openai_paths(base, options, report, prompt)
        try:
            runs = await run_paths(paths, options.concurrency)
        finally:
            await endpoint.close()
    return build_report(report, runs, Context(tokenizer, prompt, options.max_tokens))


def run_conform(options: ConformOptions) -> Report:
    """The conformance report of the endpoint at `options.url` (SwallowTrtError if it cannot be tested)."""
    return asyncio.run(conform(options))
