"""`swallow-trt bench`: stream requests to a running server at each load level and write the results.

Protocols: Triton gRPC streaming (`grpc`), Triton HTTP generate_stream (`http`), an OpenAI-compatible
server (`openai`). With `--engine-dir` it wraps `trtllm-bench` instead (engine level, no server).
"""

from __future__ import annotations

import asyncio
import json
import math
import time
import urllib.request
from pathlib import Path
from typing import Any

import click

from benchmarks.clients import CLIENTS, ClientOptions
from benchmarks.load.datasets import BUILTIN, load_dataset, load_tokenizer
from benchmarks.load.generator import ARRIVALS, LoadLevel, Runner, stop_on_ctrl_c
from benchmarks.metrics import results
from benchmarks.metrics.summary import RequestRecord, Summary, parse_goodput, read_server_counts, summarize
from trt_build.common.manifest import write_manifest
from trt_build.common.outdir import atomic_output_dir

DURATION_POOL = 512  # prompts prepared for a --duration run (cycled)
CLIENT_BUSY = 0.8  # client CPU time / wall time above which the client may be the bottleneck


def default_model(url: str, protocol: str) -> str:
    """What to benchmark when --model is not given: a Triton server's front model (engine repositories
    have `ensemble`, pytorch ones only `tensorrt_llm_bls`), or the first model an OpenAI server lists."""
    if protocol != "openai":
        from triton_repo.client.chat import front_model

        return front_model(url, protocol)
    from benchmarks.clients.triton_http import base_url

    address = base_url(url).removesuffix("/v1") + "/v1/models"
    try:
        with urllib.request.urlopen(address, timeout=30) as response:
            listed = [entry["id"] for entry in json.load(response).get("data", [])]
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise click.ClickException(
            f"Cannot list the models at {address} ({error}); name one with --model."
        ) from None
    if not listed:
        raise click.ClickException(f"{address} lists no models; name one with --model.")
    return listed[0]


def parse_levels(
    concurrency: str | None, request_rate: str | None, max_concurrency: int | None
) -> list[LoadLevel]:
    """`--concurrency 1,4,16` or `--request-rate 2,8` (inf allowed) -> load levels."""
    if concurrency and request_rate:
        raise click.ClickException("Give either --concurrency or --request-rate, not both.")
    spec, kind = (request_rate, "rate") if request_rate else (concurrency or "1", "concurrency")
    levels = []
    for part in spec.split(","):
        part = part.strip()
        try:
            value = float(part)
        except ValueError:
            raise click.ClickException(
                f"--{kind.replace('rate', 'request-rate')} {spec!r}: {part!r} is not a number."
            ) from None
        if kind == "concurrency" and (value < 1 or value != int(value)):
            raise click.ClickException(f"--concurrency values are whole numbers >= 1, got {part}.")
        if kind == "rate" and not value > 0:
            raise click.ClickException(f"--request-rate values are > 0 requests/s (or inf), got {part}.")
        levels.append(LoadLevel(kind, value, max_concurrency if kind == "rate" else None))
    return levels


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


def headline(summary: Summary) -> str:
    m = summary.metrics

    def ms(name: str, key: str) -> str:
        value = getattr(m[name], key)
        return "-" if value is None else f"{value:.1f}"

    good = "" if summary.goodput is None else f"  goodput {summary.goodput:.2f} req/s"
    return (
        f"{summary.config['load_level']:>8}: {summary.num_completed} ok, {summary.num_errors} errors"
        f"{', partial' if summary.partial else ''} | {summary.request_throughput:.2f} req/s, "
        f"{summary.output_token_throughput:.1f} tok/s{good} | TTFT p50 {ms('ttft_ms', 'p50')} "
        f"p99 {ms('ttft_ms', 'p99')} ms | ITL p50 {ms('itl_ms', 'p50')} ms | TPOT p50 {ms('tpot_ms', 'p50')} ms "
        f"| E2E p50 {ms('e2e_ms', 'p50')} ms"
    )


async def run_sweep(
    options: ClientOptions,
    protocol: str,
    pool: list,
    levels: list[LoadLevel],
    num_requests: int | None,
    duration_s: float | None,
    warmup: int | None,
    arrival: str,
    burstiness: float,
    seed: int,
    progress: bool,
) -> tuple[list[tuple[LoadLevel, Any]], list[str], bool]:
    client = CLIENTS[protocol](options)
    await client.setup()
    runner = Runner(client, pool, progress=progress)
    outcomes = []
    try:
        with stop_on_ctrl_c(runner, lambda: click.echo("\nStopping: keeping what was measured...", err=True)):
            for level in levels:
                level_warmup = warmup if warmup is not None else (level.slots or 1)
                outcome = await runner.run_level(
                    level, num_requests, duration_s, level_warmup, arrival, burstiness, seed
                )
                if level_warmup and outcome.warmup.get("errors") == level_warmup:
                    raise click.ClickException(
                        f"Every warm-up request failed at {level.name}: {outcome.warmup.get('first_error')}"
                    )
                outcomes.append((level, outcome))
                if runner.stop.is_set():
                    break
    finally:
        await client.close()
    return outcomes, client.notes, runner.stop.is_set()


@click.command()
@click.option(
    "--url", help="Server address (grpc: host:8001; http: http://host:8000; openai: http://host:9000)."
)
@click.option(
    "--model",
    help="Model name on the server [Triton: the first of ensemble, tensorrt_llm_bls it has; OpenAI: the first "
    "model it lists]. With --engine-dir: the Hugging Face model id trtllm-bench reads.",
)
@click.option("--protocol", type=click.Choice(sorted(CLIENTS)), default="grpc", show_default=True)
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="The model's tokenizer directory (default: the cached Llama 3.1 tokenizer).",
)
@click.option("--concurrency", help="Closed-loop concurrency levels, e.g. 1,4,16 (default 1).")
@click.option("--request-rate", help="Open-loop request rates in req/s, e.g. 2,8 (inf: all at once).")
@click.option(
    "--arrival",
    type=click.Choice(ARRIVALS),
    default="poisson",
    show_default=True,
    help="Arrival process in --request-rate mode.",
)
@click.option(
    "--burstiness",
    type=float,
    default=1.0,
    show_default=True,
    help="Gamma shape for --arrival gamma (< 1 burstier, 1 = Poisson).",
)
@click.option(
    "--max-concurrency", type=click.IntRange(min=1), help="Cap on requests in flight in --request-rate mode."
)
@click.option("--num-requests", type=click.IntRange(min=1), help="Measured requests per level (default 100).")
@click.option(
    "--duration",
    "duration_s",
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds of sending per level instead of a request count.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    help="Warm-up requests per level, excluded from results (default: one per concurrency slot).",
)
@click.option(
    "--dataset",
    default="synthetic",
    show_default=True,
    help=f'{" | ".join(BUILTIN)} | a JSONL file of {{"prompt"}} or {{"messages"}} lines.',
)
@click.option(
    "--isl", type=click.IntRange(min=1), default=128, show_default=True, help="Synthetic input tokens."
)
@click.option("--isl-stddev", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--osl", type=click.IntRange(min=1), default=128, show_default=True, help="Output tokens (max_tokens)."
)
@click.option("--osl-stddev", type=click.FloatRange(min=0), default=0.0, show_default=True)
@click.option(
    "--ignore-eos",
    is_flag=True,
    help="Force the output length (min_tokens / ignore_eos where the server allows).",
)
@click.option("--goodput", "goodput_spec", help="SLOs in ms for goodput, e.g. ttft:500,tpot:50,e2e:10000.")
@click.option(
    "--label", help="Name of this build in reports, e.g. fp8-tp1 (default: the output directory name)."
)
@click.option(
    "--openai-endpoint",
    type=click.Choice(["auto", "completions", "chat"]),
    default="auto",
    show_default=True,
    help="openai: chat for prompts with messages when auto.",
)
@click.option("--request-timeout", type=click.FloatRange(min=1), default=600.0, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@click.option(
    "--engine-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="Engine-level mode: run trtllm-bench on this engine instead of a server (GPU hosts).",
)
@click.option(
    "--hf-model-dir",
    type=click.Path(path_type=Path, file_okay=False),
    help="With --engine-dir: the HF checkpoint directory (tokenizer, config).",
)
@click.option("--dry-run", is_flag=True, help="With --engine-dir: print the trtllm-bench commands only.")
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Results directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace the results directory if it exists.")
def command(
    url: str | None,
    model: str | None,
    protocol: str,
    tokenizer_dir: Path | None,
    concurrency: str | None,
    request_rate: str | None,
    arrival: str,
    burstiness: float,
    max_concurrency: int | None,
    num_requests: int | None,
    duration_s: float | None,
    warmup: int | None,
    dataset: str,
    isl: int,
    isl_stddev: float,
    osl: int,
    osl_stddev: float,
    ignore_eos: bool,
    goodput_spec: str | None,
    label: str | None,
    openai_endpoint: str,
    request_timeout: float,
    seed: int,
    no_progress: bool,
    engine_dir: Path | None,
    hf_model_dir: Path | None,
    dry_run: bool,
    output: Path,
    overwrite: bool,
) -> None:
    """Benchmark a running server: TTFT, ITL, TPOT, E2E, throughput and goodput per load level."""
    levels = parse_levels(concurrency, request_rate, max_concurrency)
    if num_requests and duration_s:
        raise click.ClickException("Give either --num-requests or --duration, not both.")
    if arrival == "gamma" and not burstiness > 0:
        raise click.ClickException("--burstiness must be > 0.")
    slo_ms = parse_goodput(goodput_spec)
    label = label or output.name
    if engine_dir is not None:
        from benchmarks.engine_level.trtllm_bench import run_trtllm_bench

        run_trtllm_bench(
            engine_dir,
            hf_model_dir,
            model,
            tokenizer_dir,
            levels,
            num_requests or 100,
            warmup,
            isl,
            isl_stddev,
            osl,
            osl_stddev,
            seed,
            label,
            output,
            overwrite,
            dry_run,
            slo_ms,
        )
        return
    if dry_run:
        raise click.ClickException("--dry-run applies to --engine-dir (trtllm-bench) runs.")
    if num_requests is None and duration_s is None:
        num_requests = 100
    if not math.isfinite(burstiness):
        raise click.ClickException("--burstiness must be finite.")
    from trt_build.source.tokenizer import ensure_tokenizer

    tokenizer = load_tokenizer(tokenizer_dir or ensure_tokenizer())
    pool_size = (num_requests or DURATION_POOL) + (
        warmup if warmup is not None else max(level.slots or 1 for level in levels)
    )
    pool = load_dataset(dataset, tokenizer, pool_size, isl, isl_stddev, osl, osl_stddev, seed)
    url = url or CLIENTS[protocol].default_url
    model = model or default_model(url, protocol)
    options = ClientOptions(
        url=url,
        model=model,
        ignore_eos=ignore_eos,
        request_timeout_s=request_timeout,
        endpoint=openai_endpoint,
    )
    started = time.time()
    with atomic_output_dir(output, overwrite) as tmp:
        outcomes, notes, interrupted = asyncio.run(
            run_sweep(
                options,
                protocol,
                pool,
                levels,
                num_requests,
                duration_s,
                warmup,
                arrival,
                burstiness,
                seed,
                not no_progress,
            )
        )
        for note in notes:
            click.echo(f"note: {note}", err=True)
        config = {
            "protocol": protocol,
            "url": options.url,
            "model": model,
            "dataset": dataset,
            "isl": isl if dataset == "synthetic" else None,
            "isl_stddev": isl_stddev if dataset == "synthetic" else None,
            "osl": osl,
            "osl_stddev": osl_stddev,
            "ignore_eos": ignore_eos,
            "num_requests": num_requests,
            "duration_s": duration_s,
            "warmup": warmup,
            "arrival": arrival if request_rate else None,
            "burstiness": burstiness if request_rate else None,
            "seed": seed,
            "tokenizer": str(tokenizer_dir or ensure_tokenizer()),
            "server_notes": notes,
        }
        written = []
        for level, outcome in outcomes:
            count_output_tokens(tokenizer, outcome.records)
            summary = summarize(
                outcome.records,
                label,
                {**config, "load_level": level.name, "load": level.describe()},
                slo_ms,
                partial=outcome.interrupted,
                warmup=outcome.warmup,
            )
            chunks = sum(len(r.chunk_times) for r in outcome.records)
            summary.client = {
                "cpu_s": outcome.client_cpu_s,
                "wall_s": outcome.wall_s,
                "cpu_us_per_chunk": outcome.client_cpu_s / chunks * 1e6 if chunks else None,
                "cpu_utilization": outcome.client_cpu_s / outcome.wall_s if outcome.wall_s else None,
            }
            click.echo(headline(summary))
            if (summary.client["cpu_utilization"] or 0) > CLIENT_BUSY:
                click.echo(
                    f"warning: the client used {summary.client['cpu_utilization']:.0%} of a CPU core at "
                    f"{level.name}; the results may be limited by the client, not the server.",
                    err=True,
                )
            target = tmp if len(levels) == 1 else tmp / level.name
            results.write_level(target, summary, outcome.records)
            written.append((level.name, summary))
        if len(levels) > 1:
            results.write_index(tmp, label, written, interrupted)
        write_manifest(
            tmp,
            "bench",
            label=label,
            levels=[name for name, _ in written],
            partial=interrupted,
            seconds=time.time() - started,
        )
    click.echo(f"Results in {output}" + (" (partial: stopped by Ctrl-C)" if interrupted else ""))
