"""`swallow-trt plan`: weights, KV cache and settings of a model on a GPU (trt_build/plan)."""

from __future__ import annotations

import json
from typing import Any

import click

from trt_build.build.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS, DEFAULT_MAX_SEQ_LEN
from trt_build.cli.base import command
from trt_build.cli.japanese_units import japanese_lengths
from trt_build.common.gpus import PROFILES
from trt_build.common.targets import TARGET_CHOICES
from trt_build.plan.planner import PlanRequest, plan_for
from trt_build.plan.render import plan_dict, render
from trt_build.quant.schemes import KV_CACHE_DTYPES, SCHEMES


@command()
@japanese_lengths
@click.option(
    "--model",
    "model_name",
    required=True,
    help="Registry id or short name, HF model dir or TRT-LLM checkpoint dir.",
)
@click.option(
    "--gpu",
    "gpu_name",
    type=click.Choice(sorted(PROFILES), case_sensitive=False),
    help="The GPU (its memory, bandwidth, FP8 support); give --gpu-memory-gb for another memory size.",
)
@click.option(
    "--gpu-memory-gb",
    type=click.FloatRange(min=0, min_open=True),
    help="Memory of one GPU in GB (10^9 bytes): with --gpu, replaces the profile's; alone, plans for a GPU "
    "of unknown kind (assumed Hopper, SM 9.0).",
)
@click.option(
    "--quant",
    type=click.Choice(list(SCHEMES)),
    default=None,
    help="Weight format [default: none; nvfp4: pytorch target, Blackwell].",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default=None,
    help="auto = bf16 [default: auto].",
)
@click.option(
    "--tp", type=click.IntRange(1, 64), default=None, help="Tensor parallelism [default: the recommended TP]."
)
@click.option("--pp", type=click.IntRange(1, 64), default=None, help="Pipeline parallelism [default: 1].")
@click.option("--max-seq-len", type=click.IntRange(1), default=DEFAULT_MAX_SEQ_LEN, show_default=True)
@click.option("--max-batch-size", type=click.IntRange(1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True)
@click.option("--max-num-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NUM_TOKENS, show_default=True)
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="auto: by the installed TensorRT-LLM version.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
def plan(as_json: bool, **options: Any) -> None:
    """Plan GPU memory: weights and KV cache per GPU, sequences that fit, recommended TP and flags.

    Exits with status 1 (after printing the plan) when the combination cannot work.
    """
    result = plan_for(PlanRequest(**options))
    click.echo(json.dumps(plan_dict(result), indent=2) if as_json else render(result))
    if result.refusals:
        click.get_current_context().exit(1)
