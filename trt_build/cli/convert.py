"""Commands that make a checkpoint: `convert` (both targets) and `calibrate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from trt_build.cli.base import command
from trt_build.common.outdir import interruption_explained
from trt_build.common.targets import TARGET_CHOICES
from trt_build.convert.options import DTYPE_CHOICES, CalibrateOptions, ConvertOptions, QuantOptions
from trt_build.convert.pipeline import convert
from trt_build.quant.schemes import CALIBRATED, ENGINE, KV_CACHE_DTYPES, schemes_for

CALIBRATION_OPTIONS = (
    click.option(
        "--group-size",
        type=click.IntRange(min=1),
        default=128,
        show_default=True,
        help="int4_awq: input channels per scale; must divide every rank's input dimension.",
    ),
    click.option(
        "--calib-data",
        default="builtin",
        show_default=True,
        help="Calibration text: builtin (Japanese-first set), FILE.jsonl (text or chat messages) or FILE.txt.",
    ),
    click.option(
        "--calib-size", type=click.IntRange(min=1), default=128, show_default=True, help="Calibration rows."
    ),
    click.option(
        "--calib-seq-len", type=click.IntRange(min=2), default=512, show_default=True, help="Tokens per row."
    ),
    click.option(
        "--device",
        type=click.Choice(["cpu", "cuda"]),
        default="cpu",
        show_default=True,
        help="Where calibration runs (one decoder layer at a time).",
    ),
)


def calibration_options(function):
    """The calibration options shared by `calibrate` and `convert`."""
    for option in reversed(CALIBRATION_OPTIONS):
        function = option(function)
    return function


def quant_options(**options: Any) -> QuantOptions:
    """The calibration options (and --kv-cache-dtype / --calibration where given) as `QuantOptions`."""
    names = ("kv_cache_dtype", "group_size", "calib_data", "calib_size", "calib_seq_len", "device")
    found = {name: options[name] for name in names if name in options}
    return QuantOptions(**found, calibration_dir=options.get("calibration_dir"))


@command(name="convert")
@click.option(
    "--model-dir",
    required=True,
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Hugging Face model directory (config.json + *.safetensors).",
)
@click.option(
    "--output",
    required=True,
    type=click.Path(path_type=Path),
    help="Checkpoint dir to write: TensorRT-LLM (--target engine) or ModelOpt unified HF (--target pytorch).",
)
@click.option(
    "--dtype",
    type=click.Choice(DTYPE_CHOICES),
    default="auto",
    show_default=True,
    help="Weight/activation dtype; auto = the model's config.json dtype.",
)
@click.option(
    "--tp", type=click.IntRange(min=1), default=1, show_default=True, help="Tensor-parallel degree."
)
@click.option(
    "--pp", type=click.IntRange(min=1), default=1, show_default=True, help="Pipeline-parallel degree."
)
@click.option(
    "--quant",
    type=click.Choice(sorted(schemes_for(ENGINE))),
    default="none",
    show_default=True,
    help="Quantization scheme for linear weights.",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(list(KV_CACHE_DTYPES)),
    default="auto",
    show_default=True,
    help="fp8: FP8 KV cache, a per-layer kv_cache_scaling_factor (needs calibration).",
)
@calibration_options
@click.option(
    "--calibration",
    "calibration_dir",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Reuse a calibration directory (swallow-trt calibrate, or <checkpoint>/calibration).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Ranks converted concurrently.",
)
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
@click.option(
    "--target",
    type=click.Choice(TARGET_CHOICES),
    default="engine",
    show_default=True,
    help="engine: TensorRT-LLM checkpoint for trtllm-build; pytorch: ModelOpt unified HF checkpoint for the "
    "PyTorch backend (--quant fp8|int4_awq); auto: by the installed TensorRT-LLM version.",
)
@click.option(
    "--sha256/--no-sha256",
    default=True,
    show_default=True,
    help="Record sha256 of source and rank files in manifest.json (costs about 1 s of CPU per GB).",
)
@click.option(
    "--use-parallel-embedding",
    is_flag=True,
    help="Shard the vocab embedding over TP ranks (embedding_sharding_dim 0) instead of replicating it.",
)
def convert_command(**options: Any) -> None:
    """Convert a Hugging Face Llama checkpoint into a TensorRT-LLM checkpoint (config.json + rank files),
    or with --target pytorch into a quantized ModelOpt unified HF checkpoint for TensorRT-LLM's PyTorch backend.

    With --quant fp8 / int4_awq or --kv-cache-dtype fp8 the model is calibrated first, layer by layer.
    """
    fields = ("model_dir", "output", "target", "dtype", "tp", "pp", "quant", "workers", "overwrite")
    fields += ("use_parallel_embedding", "sha256")
    request = ConvertOptions(
        **{name: options[name] for name in fields}, quant_options=quant_options(**options)
    )
    with interruption_explained(request.output):
        output = convert(request)
    click.echo(summary(output, json.loads((output / "manifest.json").read_text())))


def summary(output: Path, manifest: dict[str, Any]) -> str:
    """The line `convert` ends with: what was written, how big, how long."""
    timings = manifest["timings"]
    calibrated = timings.get("calibration_seconds") or 0.0
    rss = f"peak RSS {manifest['peak_rss_bytes'] / 1e9:.2f} GB"
    if manifest["target"] == ENGINE:
        size = sum(rank["bytes"] for rank in manifest["ranks"])
        return (
            f"wrote {output}: {len(manifest['ranks'])} rank file(s), {size / 1e9:.2f} GB, "
            f"{timings['convert_seconds']:.1f} s"
            + (f" after {calibrated:.1f} s of calibration" if calibrated else "")
            + f", {rss}"
        )
    size = sum(entry["bytes"] for entry in manifest["files"])
    quantization = manifest["quantization"]
    return (
        f"wrote {output}: ModelOpt unified checkpoint ({quantization['quant_algo']}"
        + (", FP8 KV" if quantization["kv_cache_quant_algo"] else "")
        + f"), {len(manifest['files'])} safetensors file(s), {size / 1e9:.2f} GB, "
        f"{timings['convert_seconds']:.1f} s after {calibrated:.1f} s of calibration, {rss}"
    )


@command(name="calibrate")
@click.option(
    "--model-dir", required=True, type=click.Path(path_type=Path, file_okay=False), help="HF model directory."
)
@click.option("--quant", type=click.Choice(sorted(CALIBRATED)), default="fp8", show_default=True)
@click.option(
    "--output", required=True, type=click.Path(path_type=Path), help="Calibration directory to write."
)
@calibration_options
@click.option("--overwrite", is_flag=True, help="Replace the output directory if it exists.")
def calibrate_command(model_dir: Path, quant: str, output: Path, overwrite: bool, **options: Any) -> None:
    """Calibrate a HF model layer by layer (FP8 / KV amax, AWQ scales); write the result once, for any format."""
    from trt_build.convert.calibration import calibrate_directory  # torch: imported only when it runs

    request = CalibrateOptions(model_dir, output, quant, quant_options(**options), overwrite)
    result = calibrate_directory(request)
    click.echo(f"wrote {output}: {len(result.tensors)} tensors over {result.num_layers} layers ({quant})")
