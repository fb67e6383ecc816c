"""`swallow-trt verify`: compare a converted checkpoint with its source model."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click

from trt_build.cli.base import command
from trt_build.verify.compare import VerifyOptions, verify
from trt_build.verify.report import report_table


@command(name="verify")
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The Hugging Face source model directory.",
)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Checkpoint written by `swallow-trt convert`: TensorRT-LLM (--target engine) or ModelOpt unified HF "
    "(--target pytorch).",
)
@click.option(
    "--prompts",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Texts to use instead of the built-in Japanese/English set: one per line, or JSONL with 'text'.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--report/--no-report",
    "write_report",
    default=None,
    help="Write QUANT_REPORT.md into the checkpoint directory [default: for quantized checkpoints].",
)
def verify_command(
    model_dir: Path, checkpoint: Path, prompts: Path | None, as_json: bool, write_report: bool | None
) -> None:
    """Compare a checkpoint's logits and perplexity with its source model; exit 1 beyond the thresholds.

    Quantized checkpoints are compared on the held-out Japanese/English evaluation set, per language.
    """
    verified = verify(VerifyOptions(model_dir, checkpoint, prompts, write_report))
    report = verified.report
    if as_json:
        click.echo(json.dumps({**asdict(report), "passed": report.passed}, ensure_ascii=False, indent=2))
    else:
        if verified.report_path is not None:
            click.echo(f"wrote {verified.report_path}")
        click.echo("\n".join(report_table(report)))
    if not report.passed:
        click.echo("FAILED: " + "; ".join(report.failures), err=True)
        raise click.exceptions.Exit(1)
    if not as_json:
        click.echo("PASSED")
