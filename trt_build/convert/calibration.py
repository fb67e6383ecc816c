"""The calibration step of `swallow-trt convert` (both targets): run it, or reuse a saved one.

Schemes that need data (FP8 activations, AWQ, an FP8 KV cache) are calibrated first, layer by layer
(`trt_build.quant.calibrate`), or load a `CalibrationResult` from `--calibration DIR` after checking it fits
the model and scheme. The result is kept inside the output checkpoint (`CALIBRATION_SUBDIR`) so it can
be reused, and the manifest records per-layer amaxes and scales (`layer_scale_stats`).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from trt_build.common.manifest import write_manifest
from trt_build.convert.trtllm_linears import KV_CACHE_SCALE
from trt_build.quant import linear as ql
from trt_build.quant.calibrate import CalibrationResult
from trt_build.quant.schemes import SCHEMES
from trt_build.source.hf_config import LlamaArchitecture


@dataclass(frozen=True)
class QuantOptions:
    """Options of `--quant` schemes beyond the scheme name (the calibration and its inputs)."""

    kv_cache_dtype: str = "auto"  # auto (the model dtype) | fp8
    group_size: int = 128  # AWQ group size
    calib_data: str = "builtin"  # builtin | FILE.jsonl | FILE.txt
    calib_size: int = 128
    calib_seq_len: int = 512
    device: str = "cpu"  # where calibration runs
    calibration_dir: Path | None = None  # reuse a saved CalibrationResult instead of calibrating


CALIBRATION_SUBDIR = "calibration"  # inside the checkpoint: reusable with --calibration


def _load_calibration(
    directory: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    """A saved CalibrationResult that fits this model and scheme, plus the description of its data."""
    result = CalibrationResult.load(directory)
    info = result.info
    calibrated = {key: info.get("architecture", {}).get(key) for key in ("hidden_size", "num_hidden_layers")}
    expected = {"hidden_size": arch.hidden_size, "num_hidden_layers": arch.num_hidden_layers}
    if result.num_layers != arch.num_hidden_layers or calibrated != expected:
        raise click.ClickException(
            f"{directory} was calibrated for another model ({calibrated}, this one {expected}); "
            "calibrate this model or pass its own calibration directory."
        )
    missing = set(SCHEMES[quant].calibration) - set(info.get("algorithms", []))
    if missing:
        raise click.ClickException(
            f"{directory} was calibrated for --quant {result.scheme} ({', '.join(info.get('algorithms', []))}); "
            f"--quant {quant} also needs {', '.join(sorted(missing))}. Calibrate with --quant {quant}."
        )
    if "awq" in SCHEMES[quant].calibration and info.get("group_size") != options.group_size:
        raise click.ClickException(
            f"{directory} holds AWQ scales searched with group size {info.get('group_size')}; pass "
            f"--group-size {info.get('group_size')} or calibrate again with --group-size {options.group_size}."
        )
    manifest_path = Path(directory) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    data = manifest.get("calibration_data") or manifest.get("calibration", {}).get("data") or {}
    return result, data


def run_calibration(
    model_dir: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    """(result, the manifest's `calibration` record): calibrate layer by layer, or load a saved one."""
    started = time.perf_counter()
    if options.calibration_dir is not None:
        result, data = _load_calibration(options.calibration_dir, quant, options, arch)
    else:
        result, data = _calibrate(model_dir, quant, options, arch)
    seconds = time.perf_counter() - started
    record = {
        "reused_from": str(options.calibration_dir) if options.calibration_dir else None,
        "data": data,
        "tokens_sha256": result.info.get("calib_tokens_sha256"),
        "calib_size": result.info.get("calib_samples"),
        "calib_seq_len": result.info.get("calib_seq_len"),
        "device": result.info.get("device"),
        "algorithms": result.info.get("algorithms"),
        "group_size": result.info.get("group_size"),
        "seconds": round(seconds, 3),
        "seconds_per_layer": result.info.get("seconds_per_layer"),
        "layers": layer_scale_stats(result, quant, options.kv_cache_dtype == "fp8"),
    }
    click.echo(
        f"calibration: {result.num_layers} layers, "
        + ", ".join(f"{s:.2f}" for s in result.info.get("seconds_per_layer", []))
        + " s per layer",
        err=True,
    )
    return result, record


def save_calibration(checkpoint: Path, calibration: CalibrationResult, record: dict[str, Any]) -> None:
    """Keep the calibration inside the checkpoint, so `--calibration CKPT/calibration` can reuse it."""
    (checkpoint / CALIBRATION_SUBDIR).mkdir()
    calibration.save(checkpoint / CALIBRATION_SUBDIR)
    write_manifest(
        checkpoint / CALIBRATION_SUBDIR,
        "calibrate",
        scheme=calibration.scheme,
        calibration_data=record["data"],
    )


def _calibrate(
    model_dir: Path, quant: str, options: QuantOptions, arch: LlamaArchitecture
) -> tuple[CalibrationResult, dict[str, Any]]:
    from trt_build.quant.calib_data import calibration_tokens
    from trt_build.quant.calibrate import calibrate

    batch = calibration_tokens(
        options.calib_data,
        options.calib_size,
        options.calib_seq_len,
        max_position_embeddings=arch.max_position_embeddings,
    )
    result = calibrate(model_dir, quant, batch.tokens, options.device, group_size=options.group_size)
    return result, batch.describe()


def layer_scale_stats(result: CalibrationResult, quant: str, fp8_kv_cache: bool) -> list[dict[str, Any]]:
    """Per layer and fused group (qkv, o, gate_up, down): the amaxes and the scales written from them."""
    from trt_build.quant import numerics as qf
    from trt_build.quant.calibrate import FUSED_GROUPS

    layers = []
    for layer in range(result.num_layers):
        stats = result.stats.get(str(layer), {})
        entry: dict[str, Any] = {"layer": layer, "seconds": stats.get("seconds")}
        for group in FUSED_GROUPS:
            input_amax = result.group_input_amax(layer, group)
            weight_amax = result.group_weight_amax(layer, group)
            figures: dict[str, Any] = {"input_amax": input_amax.item(), "weight_amax": weight_amax.item()}
            if quant == "fp8":
                figures["activation_scaling_factor"] = qf.fp8_scale(input_amax).item()
                figures["weights_scaling_factor"] = qf.fp8_scale(weight_amax).item()
            if quant == "int4_awq":
                found = stats.get(group, {})
                keys = ("alpha", "pre_quant_min", "pre_quant_max", "pre_quant_mean", "mse_rtn", "mse_awq")
                figures.update({key: found.get(key) for key in keys})
            entry[group] = figures
        if fp8_kv_cache:
            k_amax, v_amax = result.kv_amax(layer)
            entry["kv_cache"] = {
                "k_amax": k_amax.item(),
                "v_amax": v_amax.item(),
                KV_CACHE_SCALE: ql.kv_cache_trtllm(k_amax, v_amax)[KV_CACHE_SCALE].item(),
            }
        layers.append(entry)
    return layers
