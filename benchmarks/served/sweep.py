"""A served run: stream requests to a running server at each load level and write the results.

Protocols: Triton gRPC streaming (`grpc`), Triton HTTP generate_stream (`http`), an OpenAI-compatible
server (`openai`). Each level is summarized (benchmarks/metrics) and written as it ends; a first Ctrl-C
stops sending and keeps what was measured. A server that stops answering (benchmarks/load/generator.py)
ends the sweep: the levels measured until then are kept, the one it died in flagged, and the command fails.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.clients import CLIENTS, ClientOptions
from benchmarks.clients.triton_http import base_url
from benchmarks.load.datasets import BenchRequest, load_dataset, load_tokenizer
from benchmarks.load.generator import Runner, RunResult, stop_on_ctrl_c
from benchmarks.load.levels import LoadLevel
from benchmarks.metrics import results
from benchmarks.metrics.summary import RequestRecord, Summary, headline, read_server_counts, summarize
from benchmarks.options import DEFAULT_REQUESTS, BenchOptions
from triton_repo.client.server_check import front_model, wait_for_server
from trt_build.common.console import say
from trt_build.common.errors import SwallowTrtError, UsageError
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir

DURATION_POOL = 512  # prompts prepared for a --duration run (cycled)
CLIENT_BUSY = 0.8  # client CPU time / wall time above which the client may be the bottleneck


def default_model(url: str, protocol: str) -> str:
    """What to benchmark when --model is not given: a Triton server's front model (engine repositories
    have `ensemble`, pytorch ones only `tensorrt_llm_bls`), or the first model an OpenAI server lists."""
    if protocol != "openai":
        return front_model(url, protocol)
    address = base_url(url).removesuffix("/v1") + "/v1/models"
    try:
        with urllib.request.urlopen(address, timeout=30) as response:
            listed = [entry["id"] for entry in json.load(response).get("data", [])]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise SwallowTrtError(
            f"Cannot list the models at {address} ({error}); name one with --model."
        ) from None
    if not listed:
        raise SwallowTrtError(f"{address} lists no models; name one with --model.")
    return listed[0]


def count_output_tokens(tokenizer: Any, records: list[RequestRecord]) -> None:
    """Tokenizer counts for every completed request: the count where the server gave none, else a check
    (and the referee between the per-response and cumulative readings of Triton's num_output_tokens)."""
    done = [r for r in records if r.ok]
    if not done:
        return
    counts = [len(ids) for ids in tokenizer([r.text for r in done], add_special_tokens=False)["input_ids"]]
    for record, count in zip(done, counts, strict=True):
        record.output_tokens_tokenizer = count
        if record.server_counts:
            record.output_tokens, record.server_count_reading = read_server_counts(
                record.server_counts, count
            )
            record.output_tokens_source = "server"
        elif record.output_tokens is None:
            record.output_tokens, record.output_tokens_source = count, "tokenizer"


LevelWriter = Callable[[LoadLevel, RunResult, list[str]], None]


async def run_sweep(
    options: BenchOptions,
    client_options: ClientOptions,
    pool: list[BenchRequest],
    levels: list[LoadLevel],
    num_requests: int | None,
    write: LevelWriter,
) -> Runner:
    """Every level in turn on one client, each handed to `write` (with the client's notes) as it ends,
    until the last, Ctrl-C, or the server is given up on; returns the runner, which says which."""
    client = CLIENTS[options.protocol](client_options)
    await client.setup()
    runner = Runner(client, pool, options.progress, options.stall_timeout_s, options.max_consecutive_errors)
    try:
        with stop_on_ctrl_c(runner, lambda: say("\nStopping: keeping what was measured...", err=True)):
            for level in levels:
                warmup = options.warmup if options.warmup is not None else (level.slots or 1)
                outcome = await runner.run_level(
                    level, num_requests, options.duration_s, warmup, options.arrival, options.burstiness,
                    options.seed,
                )  # fmt: skip
                if outcome.records:  # a level stopped in its warm-up measured nothing
                    write(level, outcome, client.notes)
                if runner.stop.is_set():
                    break
    finally:
        await client.close()
    return runner


def client_figures(outcome: RunResult) -> dict[str, Any]:
    """The client's own CPU time over the level: is the load generator the bottleneck?"""
    chunks = sum(len(r.chunk_times) for r in outcome.records)
    return {
        "cpu_s": outcome.client_cpu_s,
        "wall_s": outcome.wall_s,
        "cpu_us_per_chunk": outcome.client_cpu_s / chunks * 1e6 if chunks else None,
        "cpu_utilization": outcome.client_cpu_s / outcome.wall_s if outcome.wall_s else None,
    }


def run_config(
    options: BenchOptions, url: str, model: str, num_requests: int | None, tokenizer: Path
) -> dict[str, Any]:
    """summary.json's `config`: what was run, so a report can say it."""
    synthetic = options.dataset == "synthetic"
    return {
        "protocol": options.protocol,
        "url": url,
        "model": model,
        "dataset": options.dataset,
        "isl": options.isl if synthetic else None,
        "isl_stddev": options.isl_stddev if synthetic else None,
        "osl": options.osl,
        "osl_stddev": options.osl_stddev,
        "lengths_in_characters": options.lengths_in_characters,
        "ignore_eos": options.ignore_eos,
        "num_requests": num_requests,
        "duration_s": options.duration_s,
        "warmup": options.warmup,
        "arrival": options.arrival if options.request_rate else None,
        "burstiness": options.burstiness if options.request_rate else None,
        "seed": options.seed,
        "tokenizer": str(tokenizer),
    }


class ResultsWriter:
    """Writes each level as it ends (and, for a sweep, the index of the levels so far), so a server that
    dies mid-sweep leaves every measured level readable."""

    def __init__(
        self,
        tmp: Path,
        options: BenchOptions,
        config: dict[str, Any],
        tokenizer: Any,
        slo_ms: dict[str, float],
        single: bool,
    ):
        self.tmp, self.options, self.config, self.tokenizer = tmp, options, config, tokenizer
        self.slo_ms, self.single = slo_ms, single  # single: one level, written at the top of `tmp`
        self.written: list[tuple[str, Summary]] = []

    def __call__(self, level: LoadLevel, outcome: RunResult, notes: list[str]) -> None:
        count_output_tokens(self.tokenizer, outcome.records)
        level_config = {
            **self.config,
            "server_notes": notes,
            "load_level": level.name,
            "load": level.describe(),
        }
        summary = summarize(
            outcome.records, self.options.run_label, level_config, self.slo_ms, partial=outcome.interrupted,
            warmup=outcome.warmup, aborted=outcome.given_up,
        )  # fmt: skip
        summary.client = client_figures(outcome)
        say(headline(summary))
        if (summary.client["cpu_utilization"] or 0) > CLIENT_BUSY:
            say(
                f"warning: the client used {summary.client['cpu_utilization']:.0%} of a CPU core at "
                f"{level.name}; the results may be limited by the client, not the server.",
                err=True,
            )
        results.write_level(self.tmp if self.single else self.tmp / level.name, summary, outcome.records)
        self.written.append((level.name, summary))
        self.index(partial=True)

    def index(self, partial: bool, stopped: str | None = None) -> None:
        if not self.single:
            results.write_index(self.tmp, self.options.run_label, self.written, partial, stopped)


def run_served(options: BenchOptions, levels: list[LoadLevel], slo_ms: dict[str, float]) -> str:
    """Prepare the prompts, run every level against the server, write the results directory; returns the
    closing line."""
    if options.dry_run:
        raise UsageError("--dry-run applies to --engine-dir (trtllm-bench) runs.")
    num_requests = options.num_requests
    if num_requests is None and options.duration_s is None:
        num_requests = DEFAULT_REQUESTS
    if not math.isfinite(options.burstiness):
        raise UsageError("--burstiness must be finite.")
    url = options.url or CLIENTS[options.protocol].default_url
    wait_for_server(url, options.protocol, options.wait_s)  # refused / not ready first, before the tokenizer
    model = options.model or default_model(url, options.protocol)
    from trt_build.source.tokenizer import ensure_tokenizer

    tokenizer_path = options.tokenizer_dir or ensure_tokenizer()
    tokenizer = load_tokenizer(tokenizer_path)
    warmup = options.warmup if options.warmup is not None else max(level.slots or 1 for level in levels)
    pool = load_dataset(
        options.dataset, tokenizer, (num_requests or DURATION_POOL) + warmup, options.isl, options.isl_stddev,
        options.osl, options.osl_stddev, options.seed,
    )  # fmt: skip
    client_options = ClientOptions(
        url=url,
        model=model,
        ignore_eos=options.ignore_eos,
        request_timeout_s=options.request_timeout_s,
        endpoint=options.openai_endpoint,
    )
    started = time.time()
    with atomic_output_dir(options.output, options.overwrite) as tmp:
        config = run_config(options, url, model, num_requests, tokenizer_path)
        writer = ResultsWriter(tmp, options, config, tokenizer, slo_ms, len(levels) == 1)
        runner = asyncio.run(run_sweep(options, client_options, pool, levels, num_requests, writer))
        notes = writer.written[-1][1].config["server_notes"] if writer.written else []
        for note in notes:
            say(f"note: {note}", err=True)
        interrupted = runner.stop.is_set()
        if not writer.written and runner.given_up:
            raise SwallowTrtError(
                f"Gave up on {url} {runner.given_up}; nothing was measured, {options.output} was not written.",
                "Check the server (its log) and --model, then run again.",
            )
        if not writer.written:
            raise SwallowTrtError(
                f"Stopped before any request was measured; {options.output} was not written."
            )
        writer.index(partial=interrupted, stopped=runner.given_up)
        write_manifest(
            tmp,
            "bench",
            label=options.run_label,
            levels=[name for name, _ in writer.written],
            partial=interrupted,
            stopped=runner.given_up,
            seconds=time.time() - started,
        )
    if runner.given_up:
        raise SwallowTrtError(
            f"Gave up on {url} {runner.given_up}.",
            f"The levels measured until then are in {options.output} (partial; a level with errors is flagged "
            "in its summary and in reports). Check the server, then run again.",
        )
    return f"Results in {options.output}" + (" (partial: stopped by Ctrl-C)" if interrupted else "")
