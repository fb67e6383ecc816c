"""`swallow-trt build`: an engine (trtllm-build) or a PyTorch-backend deployment (trt_build/build)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from trt_build.build.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS, DEFAULT_MAX_SEQ_LEN
from trt_build.build.run import BuildOptions, run_build
from trt_build.cli.base import command
from trt_build.common.gpus import PROFILES
from trt_build.common.targets import TARGET_CHOICES
from trt_build.quant.schemes import KV_CACHE_DTYPES


@command()
@click.option("--checkpoint", "checkpoint", required=True, type=click.Path(path_type=Path, file_okay=False))
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Engine (or pytorch deployment) directory to write.",
)
@click.option(
    "--gpu",
    "gpu_name",
    type=click.Choice(sorted(PROFILES), case_sensitive=False),
    help="The GPU the build is for [required unless --choice names it].",
)
@click.option("--max-batch-size", type=click.IntRange(1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True)
@click.option("--max-seq-len", type=click.IntRange(1), default=DEFAULT_MAX_SEQ_LEN, show_default=True)
@click.option("--max-input-len", type=click.IntRange(1), default=None, help="[default: max-seq-len]")
@click.option("--max-num-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NUM_TOKENS, show_default=True)
@click.option("--workers", type=click.IntRange(1), default=None, help="[default: ranks on this node]")
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="engine: trtllm-build; pytorch: LLM-API options for an HF/ModelOpt checkpoint (no compilation); "
    "auto: by the installed TensorRT-LLM version.",
)
@click.option("--tp", type=click.IntRange(1, 64), default=None, help="pytorch: tensor parallelism [1].")
@click.option("--pp", type=click.IntRange(1, 64), default=None, help="pytorch: pipeline parallelism [1].")
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default="auto",
    show_default=True,
    help="pytorch: auto = the checkpoint's KV format, fp8 = force an FP8 KV cache.",
)
@click.option(
    "--choice",
    type=click.Path(path_type=Path, dir_okay=False),
    help="pytorch: a deployment choice (`plan ... --save`): TP, PP, batch, tokens per step, sequence length, "
    "KV dtype and share come from its agg role; flags that contradict it are refused.",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing engine / deployment directory.")
@click.option("--dry-run", is_flag=True, help="Print the command (or options) with the reason for each flag.")
def build(**options: Any) -> None:
    """Build a TensorRT engine (trtllm-build), or a PyTorch-backend deployment (--target pytorch).

    Exit status 3: no trtllm-build / NVIDIA GPU here; the command to run on the GPU host is printed.
    """
    context = click.get_current_context()
    explicit = frozenset(
        name for name in options if context.get_parameter_source(name) is ParameterSource.COMMANDLINE
    )
    click.echo(run_build(BuildOptions(**options, explicit=explicit)))
