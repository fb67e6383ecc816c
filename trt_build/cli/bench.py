"""Commands about measuring: `bench` (a load sweep, served or engine-level) and `report` (comparing runs)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from benchmarks.clients import CLIENTS
from benchmarks.load.datasets import BUILTIN
from benchmarks.load.generator import ARRIVALS
from benchmarks.options import DEFAULT_REQUESTS, BenchOptions
from benchmarks.report.compare import write_report
from benchmarks.report.prediction import parse_predictions
from benchmarks.run import run_bench
from trt_build.cli.base import command
from trt_build.cli.japanese_units import japanese_lengths, lengths_json

DEFAULTS = BenchOptions(output=Path())  # the library's defaults, shown by --help


@command()
@japanese_lengths
@click.option(
    "--url", help="Server address (grpc: host:8001; http: http://host:8000; openai: http://host:9000)."
)
@click.option(
    "--model",
    help="Model name on the server [Triton: the first of ensemble, tensorrt_llm_bls it has; OpenAI: the first "
    "model it lists]. With --engine-dir: the Hugging Face model id trtllm-bench reads.",
)
@click.option("--protocol", type=click.Choice(sorted(CLIENTS)), default=DEFAULTS.protocol, show_default=True)
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
    default=DEFAULTS.arrival,
    show_default=True,
    help="Arrival process in --request-rate mode.",
)
@click.option(
    "--burstiness",
    type=float,
    default=DEFAULTS.burstiness,
    show_default=True,
    help="Gamma shape for --arrival gamma (< 1 burstier, 1 = Poisson).",
)
@click.option(
    "--max-concurrency", type=click.IntRange(min=1), help="Cap on requests in flight in --request-rate mode."
)
@click.option(
    "--num-requests",
    type=click.IntRange(min=1),
    help=f"Measured requests per level (default {DEFAULT_REQUESTS}).",
)
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
    default=DEFAULTS.dataset,
    show_default=True,
    help=f'{" | ".join(BUILTIN)} | a JSONL file of {{"prompt"}} or {{"messages"}} lines.',
)
@click.option(
    "--isl",
    type=click.IntRange(min=1),
    default=DEFAULTS.isl,
    show_default=True,
    help="Synthetic input tokens.",
)
@click.option("--isl-stddev", type=click.FloatRange(min=0), default=DEFAULTS.isl_stddev, show_default=True)
@click.option(
    "--osl",
    type=click.IntRange(min=1),
    default=DEFAULTS.osl,
    show_default=True,
    help="Output tokens (max_tokens).",
)
@click.option("--osl-stddev", type=click.FloatRange(min=0), default=DEFAULTS.osl_stddev, show_default=True)
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
    default=DEFAULTS.openai_endpoint,
    show_default=True,
    help="openai: chat for prompts with messages when auto.",
)
@click.option(
    "--request-timeout",
    "request_timeout_s",
    type=click.FloatRange(min=1),
    default=DEFAULTS.request_timeout_s,
    show_default=True,
)
@click.option(
    "--stall-timeout",
    "stall_timeout_s",
    type=click.FloatRange(min=0, min_open=True),
    default=DEFAULTS.stall_timeout_s,
    show_default=True,
    help="Give the server up (ending the sweep, keeping the levels measured) when requests are in flight "
    "and nothing has come back for this many seconds.",
)
@click.option(
    "--max-consecutive-errors",
    type=click.IntRange(min=1),
    default=DEFAULTS.max_consecutive_errors,
    show_default=True,
    help="Give the server up after this many failed requests in a row.",
)
@click.option(
    "--wait",
    "wait_s",
    type=click.FloatRange(min=0),
    default=DEFAULTS.wait_s,
    help="Wait up to this many seconds for the server to be ready.",
)
@click.option("--seed", type=int, default=DEFAULTS.seed, show_default=True)
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
def bench(no_progress: bool, **options: Any) -> None:
    """Benchmark a running server: TTFT, ITL, TPOT, E2E, throughput and goodput per load level."""
    lengths = lengths_json()
    click.echo(run_bench(BenchOptions(progress=not no_progress, lengths_in_characters=lengths, **options)))


@command()
@click.argument("results_dirs", nargs=-1, required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Report directory to write.")
@click.option("--overwrite", is_flag=True, help="Replace the report directory if it exists.")
@click.option(
    "--prediction",
    "predictions",
    multiple=True,
    metavar="LABEL=CHOICE_JSON",
    help="Put build LABEL's measurements beside a deployment choice's predictions (`plan ... --save`) and "
    "NVIDIA's published figure for the case; repeatable.",
)
def report(
    results_dirs: tuple[Path, ...], output: Path, overwrite: bool, predictions: tuple[str, ...]
) -> None:
    """Write REPORT.md and PNG plots comparing benchmark results directories (one build each)."""
    plots = write_report(list(results_dirs), output, overwrite, parse_predictions(predictions))
    click.echo(f"Report in {output / 'REPORT.md'} ({plots} plots)")
