"""The calibration step (both convert targets, and `swallow-trt calibrate` on its own): run it, or reuse one.

Schemes that need data (FP8 activations, AWQ, an FP8 KV cache) are calibrated first, layer by layer
(`trt_build.quant.calibrate`) on the source convert already opened, or load a `CalibrationResult` from
`--calibration DIR` after checking it fits the model and scheme. The result is kept inside the output
checkpoint (`CALIBRATION_SUBDIR`) so it can be reused, and the manifest records per-layer amaxes and scales
(`layer_scale_stats`).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.common.outdir import atomic_output_dir, check_output
from trt_build.convert.options import CalibrateOptions, QuantOptions
from trt_build.formats import trtllm_checkpoint as trt
from trt_build.quant import numerics as qf
from trt_build.quant.calibrate import calibrate, calibration_tensors
from trt_build.quant.calibration_result import FUSED_GROUPS, CalibrationResult, save_calibration
from trt_build.quant.schemes import SCHEMES
from trt_build.source.checkpoint import SourceCheckpoint, open_source
from trt_build.source.hf_config import LlamaArchitecture, read_hf_config

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
        raise SwallowTrtError(
            f"{directory} was calibrated for another model ({calibrated}, this one {expected});",
            "calibrate this model or pass its own calibration directory.",
        )
    missing = set(SCHEMES[quant].calibration) - set(info.get("algorithms", []))
    if missing:
        raise SwallowTrtError(
            f"{directory} was calibrated for --quant {result.scheme} ({', '.join(info.get('algorithms', []))}); "
            f"--quant {quant} also needs {', '.join(sorted(missing))}.",
            f"Calibrate with --quant {quant}.",
        )
    if "awq" in SCHEMES[quant].calibration and info.get("group_size") != options.group_size:
        raise SwallowTrtError(
            f"{directory} holds AWQ scales searched with group size {info.get('group_size')};",
            f"pass --group-size {info.get('group_size')} or calibrate again with --group-size {options.group_size}.",
        )
    manifest_path = Path(directory) / "manifest.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.is_file() else {}
    data = manifest.get("calibration_data") or manifest.get("calibration", {}).get("data") or {}
    return result, data


def _calibrate(
    source: SourceCheckpoint, arch: LlamaArchitecture, quant: str, options: QuantOptions
) -> tuple[CalibrationResult, dict[str, Any]]:
    """Calibrate on the options' data; returns the result and the description of that data."""
    from trt_build.quant.calib_data import calibration_tokens

    batch = calibration_tokens(
        options.calib_data,
        options.calib_size,
        options.calib_seq_len,
        max_position_embeddings=arch.max_position_embeddings,
    )
    result = calibrate(source, arch, quant, batch.tokens, options.device, group_size=options.group_size)
    return result, batch.describe()


def run_calibration(
    source: SourceCheckpoint, arch: LlamaArchitecture, quant: str, options: QuantOptions
) -> tuple[CalibrationResult, dict[str, Any]]:
    """(result, the manifest's `calibration` record): calibrate the opened source layer by layer, or load
    `options.calibration_dir`."""
    started = time.perf_counter()
    if options.calibration_dir is not None:
        result, data = _load_calibration(options.calibration_dir, quant, options, arch)
    else:
        result, data = _calibrate(source, arch, quant, options)
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
    per_layer = ", ".join(f"{s:.2f}" for s in result.info.get("seconds_per_layer", []))
    print(f"calibration: {result.num_layers} layers, {per_layer} s per layer", file=sys.stderr)
    return result, record


def keep_calibration(checkpoint: Path, calibration: CalibrationResult, record: dict[str, Any]) -> None:
    """Keep the calibration inside the checkpoint, so `--calibration CKPT/calibration` can reuse it."""
    (checkpoint / CALIBRATION_SUBDIR).mkdir()
    save_calibration(checkpoint / CALIBRATION_SUBDIR, calibration, calibration_data=record["data"])


def calibrate_directory(options: CalibrateOptions) -> CalibrationResult:
    """`swallow-trt calibrate`: open and check the model, calibrate it, write the result as its own directory
    (atomic, with manifest.json) for any later `convert --calibration DIR`."""
    check_output(Path(options.output), options.overwrite, [options.model_dir])
    arch = read_hf_config(options.model_dir)
    source = open_source(options.model_dir, arch, calibration_tensors(arch))
    start = time.perf_counter()
    result, data = _calibrate(source, arch, options.quant, options.calibration)
    with atomic_output_dir(Path(options.output), options.overwrite, [options.model_dir]) as tmp:
        save_calibration(tmp, result, calibration_data=data, seconds=time.perf_counter() - start)
    return result


def layer_scale_stats(result: CalibrationResult, quant: str, fp8_kv_cache: bool) -> list[dict[str, Any]]:
    """Per layer and fused group (qkv, o, gate_up, down): the amaxes and the scales written from them
    (named as in a TensorRT-LLM checkpoint, whatever the target)."""
    layers = []
    for layer in range(result.num_layers):
        stats = result.stats.get(str(layer), {})
        entry: dict[str, Any] = {"layer": layer, "seconds": stats.get("seconds")}
        for group in FUSED_GROUPS:
            input_amax = result.group_input_amax(layer, group)
            weight_amax = result.group_weight_amax(layer, group)
            figures: dict[str, Any] = {"input_amax": input_amax.item(), "weight_amax": weight_amax.item()}
            if SCHEMES[quant].quant_algo == "FP8":
                figures[trt.ACTIVATION_SCALE] = qf.fp8_scale(input_amax).item()
                figures[trt.WEIGHTS_SCALE] = qf.fp8_scale(weight_amax).item()
            if "awq" in SCHEMES[quant].calibration:
                found = stats.get(group, {})
                keys = ("alpha", "pre_quant_min", "pre_quant_max", "pre_quant_mean", "mse_rtn", "mse_awq")
                figures.update({key: found.get(key) for key in keys})
            entry[group] = figures
        if fp8_kv_cache:
            k_amax, v_amax = result.kv_amax(layer)
            entry["kv_cache"] = {
                "k_amax": k_amax.item(),
                "v_amax": v_amax.item(),
                trt.KV_CACHE_SCALE: trt.kv_cache_scale(k_amax, v_amax).item(),
            }
        layers.append(entry)
    return layers
