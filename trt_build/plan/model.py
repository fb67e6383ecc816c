"""What `plan --model` names: a registry id, a HF model dir, a ModelOpt or a TRT-LLM checkpoint dir.

A checkpoint was converted with settings of its own; those its conversion fixed (FIXED_BY_SOURCE) are
taken from it, and a different value on the command line is refused with what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from trt_build.common.errors import SwallowTrtError
from trt_build.formats.modelopt_config import read_modelopt_quantization
from trt_build.formats.trtllm_config import is_trtllm_config, read_config_json, read_trtllm_checkpoint
from trt_build.plan.memory import ModelSpec
from trt_build.quant.schemes import kv_cache_dtype_for, pytorch_backend_schemes, scheme_for_quant_algo
from trt_build.source.hf_config import read_hf_config
from trt_build.source.registry import lookup


def _kv_cache_dtype(spec: ModelSpec) -> str:
    """The --kv-cache-dtype of a checkpoint's KV format (auto for none, or for one plan does not size)."""
    return kv_cache_dtype_for(spec.kv_cache_quant_algo).name


CHECKPOINT_SETTINGS: dict[str, Callable[[ModelSpec], Any]] = {  # option -> its value at conversion
    "--quant": lambda m: m.quant,
    "--kv-cache-dtype": _kv_cache_dtype,
    "--tp": lambda m: m.tp,
    "--pp": lambda m: m.pp,
}
FIXED_BY_SOURCE: dict[str, tuple[str, ...]] = {
    "trtllm-checkpoint": tuple(CHECKPOINT_SETTINGS),  # quantized, KV format and sharding all baked in
    "modelopt-checkpoint": ("--quant",),  # the KV cache may still be made FP8 at load time
}


def _checkpoint_model(directory: Path) -> ModelSpec:
    """A TRT-LLM checkpoint's config.json: shape numbers plus its own quantization and mapping."""
    checkpoint = read_trtllm_checkpoint(directory, check_ranks=False)
    return ModelSpec(
        name=directory.resolve().name,
        arch=checkpoint.arch,
        source="trtllm-checkpoint",
        quant_algo=checkpoint.quant_algo,
        kv_cache_quant_algo=checkpoint.kv_cache_quant_algo,
        tp=checkpoint.tp,
        pp=checkpoint.pp,
        quant=scheme_for_quant_algo(checkpoint.quant_algo, str(directory / "config.json")).name,
    )


def resolve_model(name: str) -> ModelSpec:
    """A registry id / short name, a Hugging Face model directory or a TRT-LLM checkpoint directory."""
    path = Path(name)
    if path.is_dir():
        config = path / "config.json"
        if not config.is_file():
            raise SwallowTrtError(f"{path} has no config.json: give a HF model or TRT-LLM checkpoint dir.")
        if is_trtllm_config(read_config_json(config)):
            return _checkpoint_model(path)
        quantization = read_modelopt_quantization(path)
        if quantization is not None:
            return ModelSpec(
                path.resolve().name,
                read_hf_config(path),
                "modelopt-checkpoint",
                quant_algo=quantization.get("quant_algo"),
                kv_cache_quant_algo=quantization.get("kv_cache_quant_algo"),
                quant=scheme_for_quant_algo(
                    quantization.get("quant_algo"),
                    str(path / "hf_quant_config.json"),
                    pytorch_backend_schemes(),
                ).name,
            )
        return ModelSpec(path.resolve().name, read_hf_config(path), "hf-dir")
    known = lookup(name)
    if known is None:
        raise SwallowTrtError(
            f"{name!r} is neither a directory nor a known Swallow model. `swallow-trt models` lists the known "
            "ones; for another model, `swallow-trt fetch` it and pass its directory."
        )
    return ModelSpec(known.short_name, known.architecture, "registry")


def checkpoint_setting(spec: ModelSpec, option: str) -> Any:
    """The value `option` had when the checkpoint was converted (None / auto where it has none)."""
    return CHECKPOINT_SETTINGS[option](spec)


def pick(spec: ModelSpec, option: str, given: Any, default: Any) -> Any:
    """`given`, else `default`; for a setting the checkpoint fixed, its own value (refusing another)."""
    if option not in FIXED_BY_SOURCE.get(spec.source, ()):
        return default if given is None else given
    fixed = checkpoint_setting(spec, option)
    if given is not None and given != fixed:
        raise SwallowTrtError(
            f"{spec.name} is a {spec.source} converted with {option} {fixed}; "
            f"convert again to plan {option} {given}, or leave {option} out."
        )
    return fixed
