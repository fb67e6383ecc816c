"""`swallow-trt deploy`: deployment directories for serving frameworks beyond one server (dynamo_deploy/)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from dynamo_deploy.request import (
    DEFAULT_HTTP_PORT,
    DEFAULT_IMAGE,
    DEFAULT_PVC,
    DeployRequest,
    agg_roles,
    disagg_roles,
    request_from_choice,
)
from dynamo_deploy.spec import MODES, ROUTERS
from dynamo_deploy.write import deploy_dynamo
from trt_build.build.limits import (
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_NUM_TOKENS,
    DEFAULT_MAX_SEQ_LEN,
    GPUS_PER_NODE,
)
from trt_build.cli.base import SwallowTrtCommand
from trt_build.common.errors import UsageError
from trt_build.common.gpus import PROFILES, get_profile
from trt_build.plan.deployment import load_choice
from trt_build.quant.schemes import KV_CACHE_DTYPES

DISAGG_ONLY = ("prefill_workers", "decode_workers", "prefill_tp", "prefill_pp", "decode_tp", "decode_pp")
# What a deployment choice (`plan --slo --save`) sets, so not given beside --choice
CHOSEN = ("gpu_name", "mode", "tp", "pp", "replicas", *DISAGG_ONLY, "kv_cache_dtype", "max_batch_size",
          "max_num_tokens", "max_seq_len")  # fmt: skip
# What the graph is, beside its roles: taken from the command line with or without --choice
GRAPH = ("gpus_per_node", "router", "image", "served_model_name", "host", "http_port", "pvc")


@click.group()
def deploy() -> None:
    """Write a deployment directory for a serving framework (NVIDIA Dynamo)."""


def _roles(o: dict[str, Any]):
    limits = (o["max_batch_size"], o["max_num_tokens"])
    if o["mode"] == "agg":
        given = [f"--{name.replace('_', '-')}" for name in DISAGG_ONLY if o[name] is not None]
        if given:
            raise UsageError(f"{', '.join(given)}: only for --mode disagg.")
        return agg_roles(o["replicas"], o["tp"], o["pp"], *limits)
    if o["replicas"] != 1:
        raise UsageError("--replicas applies to --mode agg; use --prefill-workers and --decode-workers.")
    return disagg_roles(
        (o["prefill_workers"] or 1, o["prefill_tp"] or o["tp"], o["prefill_pp"] or o["pp"]),
        (o["decode_workers"] or 1, o["decode_tp"] or o["tp"], o["decode_pp"] or o["pp"]),
        *limits,
    )


@deploy.command("dynamo", cls=SwallowTrtCommand)
@click.option(
    "--checkpoint",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="Hugging Face / ModelOpt checkpoint (convert --target pytorch output, or an HF model).",
)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Deployment directory to write."
)
@click.option(
    "--gpu",
    "gpu_name",
    default="h100",
    show_default=True,
    type=click.Choice(sorted(PROFILES), case_sensitive=False),
)
@click.option("--gpus-per-node", type=click.IntRange(1, 64), default=GPUS_PER_NODE, show_default=True)
@click.option(
    "--mode",
    type=click.Choice(MODES),
    default="agg",
    show_default=True,
    help="agg: workers do prefill and decode; disagg: separate prefill and decode workers.",
)
@click.option(
    "--tp", type=click.IntRange(1, 64), default=1, show_default=True, help="Tensor parallelism per worker."
)
@click.option(
    "--pp", type=click.IntRange(1, 64), default=1, show_default=True, help="Pipeline parallelism per worker."
)
@click.option("--replicas", type=click.IntRange(1), default=1, show_default=True, help="agg: workers.")
@click.option("--prefill-workers", type=click.IntRange(1), default=None, help="disagg [1].")
@click.option("--decode-workers", type=click.IntRange(1), default=None, help="disagg [1].")
@click.option("--prefill-tp", type=click.IntRange(1, 64), default=None, help="disagg [--tp].")
@click.option("--prefill-pp", type=click.IntRange(1, 64), default=None, help="disagg [--pp].")
@click.option("--decode-tp", type=click.IntRange(1, 64), default=None, help="disagg [--tp].")
@click.option("--decode-pp", type=click.IntRange(1, 64), default=None, help="disagg [--pp].")
@click.option("--router", type=click.Choice(ROUTERS), default="kv", show_default=True)
@click.option(
    "--image", default=DEFAULT_IMAGE, show_default=True, help="Runtime image of the k8s / Slurm files."
)
@click.option("--served-model-name", default=None, help="[default: the checkpoint directory's name]")
@click.option("--kv-cache-dtype", type=click.Choice(list(KV_CACHE_DTYPES)), default="auto", show_default=True)
@click.option("--max-batch-size", type=click.IntRange(1), default=DEFAULT_MAX_BATCH_SIZE, show_default=True)
@click.option("--max-num-tokens", type=click.IntRange(1), default=DEFAULT_MAX_NUM_TOKENS, show_default=True)
@click.option("--max-seq-len", type=click.IntRange(1), default=DEFAULT_MAX_SEQ_LEN, show_default=True)
@click.option("--host", default="127.0.0.1", show_default=True, help="What local/launch.sh's frontend binds.")
@click.option("--http-port", type=click.IntRange(1, 65535), default=DEFAULT_HTTP_PORT, show_default=True)
@click.option("--pvc", default=DEFAULT_PVC, show_default=True, help="k8s: the claim holding the checkpoint.")
@click.option(
    "--choice",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A deployment chosen by `plan --slo ... --save`: its GPU, roles, TP/PP, batch, tokens, sequence, "
    "KV dtype and share, exactly as predicted (the role and limit flags are then not given).",
)
@click.option("--overwrite", is_flag=True, help="Replace an existing deployment directory.")
@click.option(
    "--dry-run", is_flag=True, help="Print the files and options with their reasons; write nothing."
)
def dynamo(**o: Any) -> None:
    """A Dynamo deployment: options per worker role, local/launch.sh, k8s/ and slurm/ files."""
    graph = {name: o[name] for name in GRAPH}
    if o["choice"] is not None:
        context = click.get_current_context()
        flags = {p.name: p.opts[0] for p in context.command.params}
        given = [flags[n] for n in CHOSEN if context.get_parameter_source(n) is ParameterSource.COMMANDLINE]
        if given:
            raise UsageError(
                f"--choice {o['choice']} sets {', '.join(given)}: drop them to deploy the choice as predicted, "
                "or choose again with `swallow-trt plan ... --slo ... --save`."
            )
        request = request_from_choice(load_choice(o["choice"]), o["checkpoint"], o["output"], **graph)
    else:
        request = DeployRequest(
            checkpoint=o["checkpoint"],
            output=o["output"],
            gpu=get_profile(o["gpu_name"]),
            roles=_roles(o),
            kv_cache_dtype=o["kv_cache_dtype"],
            max_seq_len=o["max_seq_len"],
            **graph,
        )
    click.echo(deploy_dynamo(request, o["overwrite"], o["dry_run"]))
