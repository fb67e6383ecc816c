"""The ModelOpt unified checkpoint's quantization configs: the one writer and the one reader.

Two files say how a ModelOpt unified HF checkpoint is quantized (docs/modelopt-checkpoint.md §2):
`hf_quant_config.json` (nested: `{producer, quantization}`; the only file TensorRT-LLM 1.1/1.2 read, so it
always ships) and config.json's flat `quantization_config` (what vLLM, SGLang and newer TensorRT-LLM read).
`convert --target pytorch` writes both from the quantization table; plan, build, verify and the reference
runtime read them through `read_modelopt_quantization`.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.quant.schemes import PYTORCH, kv_cache_dtype_named, schemes_for
from trt_build.source.hf_config import LlamaArchitecture, hf_config_dict

# The ModelOpt release whose export this format follows. Runtimes recognise the format by
# `producer.name == "modelopt"` (vLLM's ModelOpt detection, TRT-LLM's flat-config routing), so the
# producer names the format; what actually wrote the files is in manifest.json.
MODELOPT_FORMAT_VERSION = "0.47.0"
PRODUCER = {"name": "modelopt", "version": MODELOPT_FORMAT_VERSION}
EXCLUDE_MODULES = ["lm_head", "model.embed_tokens"]  # stay in the model dtype
FP8_CONFIG_GROUP = {"num_bits": 8, "type": "float", "dynamic": False}
HF_QUANT_CONFIG = "hf_quant_config.json"
UNIFIED = {name: s for name, s in schemes_for(PYTORCH).items() if name != "none"}  # what convert writes


# ---------------------------------------------------------------- writing


def hf_quant_config(quant: str, kv_cache_dtype: str, group_size: int) -> dict[str, Any]:
    """hf_quant_config.json: the nested form TRT-LLM 1.1/1.2 read."""
    scheme = UNIFIED[quant]
    block: dict[str, Any] = {
        "quant_algo": scheme.quant_algo,
        "kv_cache_quant_algo": kv_cache_dtype_named(kv_cache_dtype).quant_algo,
        **scheme.modelopt_quantization,
        "exclude_modules": list(EXCLUDE_MODULES),
    }
    if "group_size" in block:
        block["group_size"] = group_size
    return {"producer": dict(PRODUCER), "quantization": block}


def inline_quantization_config(quant: str, kv_cache_dtype: str) -> dict[str, Any]:
    """config.json `quantization_config`: the flat form; only FP8 gets `config_groups`, and AWQ's
    group size is not inline (so hf_quant_config.json must always ship)."""
    scheme = UNIFIED[quant]
    block: dict[str, Any] = {
        "quant_method": "modelopt",
        "quant_algo": scheme.quant_algo,
        "producer": dict(PRODUCER),
        "ignore": list(EXCLUDE_MODULES),
    }
    if scheme.modelopt_config_groups:
        block["config_groups"] = {
            "group_0": {
                "weights": dict(FP8_CONFIG_GROUP),
                "input_activations": dict(FP8_CONFIG_GROUP),
                "targets": ["Linear"],
            }
        }
    if kv_cache_dtype == "fp8":
        block["kv_cache_scheme"] = dict(FP8_CONFIG_GROUP)
    return block


def unified_config(arch: LlamaArchitecture, dtype: str, quant: str, kv_cache_dtype: str) -> dict[str, Any]:
    config = hf_config_dict(dataclasses.replace(arch, dtype=dtype), "both")
    config["quantization_config"] = inline_quantization_config(quant, kv_cache_dtype)
    return config


# ---------------------------------------------------------------- reading


def _json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SwallowTrtError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(value, dict):
        raise SwallowTrtError(f"{path} holds a {type(value).__name__}, not a JSON object.")
    return value


def read_modelopt_quantization(directory: Path) -> dict[str, Any] | None:
    """The ModelOpt quantization block of an HF directory: hf_quant_config.json (authoritative for every
    TensorRT-LLM version), None for an unquantized model; a clear error for a quantization_config that is
    not ModelOpt's or ships without hf_quant_config.json."""
    quant_file = Path(directory) / HF_QUANT_CONFIG
    if quant_file.is_file():
        block = _json_object(quant_file).get("quantization")
        if not isinstance(block, dict):
            raise SwallowTrtError(f"{quant_file} has no 'quantization' block.")
        return block
    inline = _json_object(Path(directory) / "config.json").get("quantization_config")
    if not inline:
        return None
    if not str(inline.get("quant_method", "")).startswith("modelopt"):
        raise SwallowTrtError(
            f"{Path(directory) / 'config.json'}: quantization_config.quant_method "
            f"{inline.get('quant_method')!r} is not a ModelOpt checkpoint; swallow-trt plans ModelOpt "
            "unified checkpoints (`swallow-trt convert --target pytorch`)."
        )
    raise SwallowTrtError(
        f"{directory} has a ModelOpt quantization_config but no hf_quant_config.json: TensorRT-LLM 1.1/1.2 "
        "read only that file.",
        "Export the checkpoint again with it (ModelOpt writes both).",
    )
