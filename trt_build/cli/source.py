"""Commands about source models: `models` (the registry) and `tiny-model` (models made for tests)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from trt_build.cli.base import command
from trt_build.source.chain_model import CHAIN_PRESET, write_chain_model
from trt_build.source.registry import MODELS, parameter_count
from trt_build.source.tiny_model import PRESETS, write_tiny_model


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


@command()
@click.option("--output", required=True, type=click.Path(path_type=Path), help="Model directory to write.")
@click.option(
    "--preset",
    type=click.Choice([*sorted(PRESETS), CHAIN_PRESET]),
    default="tiny",
    show_default=True,
    help="tiny: for unit tests; 8b-shape / 70b-shape: the real layer dimensions; chain: answers a fixed "
    "Japanese sentence full of split characters to any prompt (greedy), for serving tests.",
)
@click.option(
    "--layers", type=click.IntRange(min=1), help="Number of decoder layers (default: the preset's)."
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--config-form",
    type=click.Choice(["both", "v4", "v5"]),
    default="both",
    show_default=True,
    help="config.json keys of transformers 4, 5, or both.",
)
@click.option(
    "--max-shard-size",
    "max_shard_mb",
    type=click.IntRange(min=1),
    default=2048,
    show_default=True,
    help="Largest safetensors shard, in MB.",
)
@click.option(
    "--tie-word-embeddings", is_flag=True, help="Share the embedding with lm_head (no lm_head tensor)."
)
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
def tiny_model(
    output: Path,
    preset: str,
    layers: int | None,
    seed: int,
    config_form: str,
    max_shard_mb: int,
    tie_word_embeddings: bool,
    overwrite: bool,
) -> None:
    """Write a Hugging Face model directory shaped like Llama-3.1-Swallow, with random weights."""
    if preset == CHAIN_PRESET:
        write_chain_model(output, layers=layers or 1, overwrite=overwrite)
    else:
        write_tiny_model(
            output, preset, layers, seed, config_form, max_shard_mb << 20, tie_word_embeddings, overwrite
        )
    manifest = json.loads((output / "manifest.json").read_text())
    files = sorted(path.name for path in output.iterdir())
    click.echo(
        f"wrote {output}: {manifest['num_parameters']:,} parameters, "
        f"{manifest['weight_bytes'] / 1e6:.1f} MB of weights"
    )
    click.echo("  " + "  ".join(files))
    if preset == CHAIN_PRESET:
        click.echo(f"  greedy answer to any prompt: {manifest['sentence']}")
