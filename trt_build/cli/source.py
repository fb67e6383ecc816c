"""Commands about source models: `models` (the registry)."""

from __future__ import annotations

import click

from trt_build.cli.base import command
from trt_build.source.registry import MODELS, parameter_count


@command()
def models() -> None:
    """List the known Swallow checkpoints."""
    click.echo(f"{'hub id':52} {'kind':8} {'params':>7} {'layers':>6} {'hidden':>6} {'heads':>5} {'kv':>3}")
    for model in MODELS.values():
        arch = model.architecture
        kind = "instruct" if model.instruct else "base"
        params = f"{parameter_count(arch) / 1e9:.1f}B"
        click.echo(
            f"{model.hub_id:52} {kind:8} {params:>7} {arch.num_hidden_layers:>6} {arch.hidden_size:>6} "
            f"{arch.num_attention_heads:>5} {arch.num_key_value_heads:>3}"
        )
