"""`swallow-trt plan`: weights, KV cache and settings of a model on a GPU (trt_build/plan)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trt_build.build.limits import DEFAULT_MAX_BATCH_SIZE, DEFAULT_MAX_NUM_TOKENS, DEFAULT_MAX_SEQ_LEN
from trt_build.cli.base import command
from trt_build.cli.japanese_units import japanese_lengths, lengths_json
from trt_build.common.errors import UsageError
from trt_build.common.gpus import PROFILES
from trt_build.common.targets import TARGET_CHOICES
from trt_build.plan.planner import PlanRequest, plan_for
from trt_build.plan.predict.predict import predict as predict_plan
from trt_build.plan.predict.render import (
    plot_pareto,
    prediction_dict,
    render_prediction,
    render_search,
    search_dict,
)
from trt_build.plan.predict.slo import choice, parse_slo, search
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
@click.option(
    "--predict", is_flag=True, help="Add AIConfigurator's estimates (TTFT, ITL, tok/s); needs --isl/--osl."
)
@click.option("--isl", type=click.IntRange(1), help="Input tokens per request, for --predict / --slo.")
@click.option("--osl", type=click.IntRange(1), help="Output tokens per request, for --predict / --slo.")
@click.option(
    "--concurrency",
    type=click.IntRange(1),
    help="Requests in flight for --predict [default: max throughput, the largest batch whose KV fits].",
)
@click.option("--slo", help="Search deployments meeting e.g. ttft=500,tpot=30 (ms); with --gpus or --users.")
@click.option("--gpus", type=click.IntRange(1), help="--slo: the GPUs to deploy on (the most tokens/s).")
@click.option("--users", type=click.IntRange(1), help="--slo: concurrent users to serve (the fewest GPUs).")
@click.option(
    "--pareto", type=click.Path(dir_okay=False, path_type=Path), help="--slo: write the Pareto PNG."
)
@click.option(
    "--save", type=click.Path(dir_okay=False, path_type=Path), help="--slo: write the chosen deployment."
)
def plan(
    as_json: bool,
    predict: bool,
    isl: int | None,
    osl: int | None,
    concurrency: int | None,
    slo: str | None,
    gpus: int | None,
    users: int | None,
    pareto: Path | None,
    save: Path | None,
    **options: Any,
) -> None:
    """Plan GPU memory: weights and KV cache per GPU, sequences that fit, recommended TP and flags; with
    --predict or --slo, estimated serving performance (docs/upstream-2026.md §6).

    Exits with status 1 (after printing the plan) when the combination cannot work.
    """
    if (predict or slo) and (isl is None or osl is None):
        raise UsageError("--predict and --slo need --isl and --osl (tokens per request).")
    if not slo and (gpus or users or pareto or save):
        raise UsageError("--gpus, --users, --pareto and --save go with --slo.")
    if concurrency and not predict:
        raise UsageError("--concurrency goes with --predict.")
    bounds = parse_slo(slo) if slo else None
    result = plan_for(PlanRequest(**options))
    out: dict[str, Any] = plan_dict(result)
    if lengths := lengths_json():
        out["lengths"] = lengths
    text = [render(result)]
    if predict:
        prediction = predict_plan(result.scenario, isl, osl, concurrency)
        out["prediction"] = prediction_dict(prediction)
        text.append(render_prediction(prediction))
    if bounds is not None:
        found = search(result.scenario, isl, osl, bounds, gpus, users)
        out["slo_search"] = search_dict(found, isl, osl)
        text.append(render_search(found, isl, osl))
        if pareto:
            plot_pareto(found, pareto)
            text.append(f"Pareto front written to {pareto}")
    click.echo(json.dumps(out, indent=2, ensure_ascii=False) if as_json else "\n".join(text))
    if save:  # after the search is shown, so that "no configuration meets the SLO" comes with it
        choice(result.scenario, isl, osl, found, options["model_name"]).save(save)
        click.echo(
            f"Chosen deployment written to {save} (for `build --choice` and `deploy dynamo --choice`)",
            err=True,
        )
    if result.refusals:
        click.get_current_context().exit(1)
