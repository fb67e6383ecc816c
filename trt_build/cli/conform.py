"""`swallow-trt conform URL`: prove a serving endpoint right for Japanese before users reach it."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trt_build.cli.base import command
from trt_build.common.errors import SwallowTrtError


@command()
@click.argument("url")
@click.option(
    "--protocol",
    type=click.Choice(["auto", "triton", "openai"]),
    default="auto",
    show_default=True,
    help="auto: Triton if /v2/health/ready answers, OpenAI-compatible if /v1/models does.",
)
@click.option(
    "--model",
    "models",
    multiple=True,
    help="Triton: a front model to test (repeatable) [ensemble and tensorrt_llm_bls, those ready]; "
    "OpenAI: the model [the first /v1/models lists].",
)
@click.option("--grpc-url", help="Triton gRPC host:port [the HTTP port + 1].")
@click.option("--grpc/--no-grpc", default=True, show_default=True, help="Triton: test gRPC streaming too.")
@click.option(
    "--tokenizer",
    "tokenizer_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The served model's tokenizer directory (token counts, chat template) [Llama 3.1, built offline].",
)
@click.option(
    "--api-key", envvar="OPENAI_API_KEY", help="For OpenAI servers that want one [$OPENAI_API_KEY]."
)
@click.option(
    "--concurrency",
    type=click.IntRange(min=0),
    default=32,
    show_default=True,
    help="Requests sent at once per path, each answer compared with the sequential one (0: skip).",
)
@click.option("--max-tokens", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--wait", "wait_s", type=float, default=0, help="Wait up to this many seconds for the server.")
@click.option("--timeout", "timeout_s", type=float, default=300, show_default=True, help="Per request, s.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON instead of a table.")
def conform(as_json: bool, **settings) -> None:
    """Check that URL serves Japanese right on every path: streamed == non-streamed byte for byte, no
    U+FFFD, split kanji / emoji / ZWJ / flags / variation selectors / half-width kana / combining marks
    intact, one BOS, stops at <|eot_id|>, usage counts, the same under concurrency.

    Exit status: 0 all checks pass, 1 a check failed, 2 the endpoint could not be tested (refused,
    not ready, no model).
    """
    from benchmarks.conform import UNREACHABLE_EXIT
    from triton_repo.client.server_check import wait_for_server

    # refused / not ready is said before the suite's imports (torch, transformers: seconds)
    settings["protocol"] = wait_for_server(
        settings["url"], settings["protocol"], settings.pop("wait_s"), UNREACHABLE_EXIT
    )
    from benchmarks.conform.report import format_table, to_json
    from benchmarks.conform.suite import ConformOptions, run_conform

    settings["models"] = tuple(settings["models"])
    report = run_conform(ConformOptions(**settings))
    click.echo(json.dumps(to_json(report), ensure_ascii=False, indent=2) if as_json else format_table(report))
    if not report.passed:
        failed = sorted({f"{check} on {path}" for path, check, _ in report.failures})
        raise SwallowTrtError(
            f"{len(report.failures)} checks failed: {', '.join(failed[:6])}"
            + (" ..." if len(failed) > 6 else "")
            + "."
        )
