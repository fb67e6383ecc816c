"""The TensorRT-LLM checkpoint `config.json`, read back into the architecture numbers.

Kept free of torch so the planner can read a checkpoint without the reference runtime.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trt_build.source.hf_config import LlamaArchitecture


class CheckpointError(ValueError):
    """The checkpoint directory is incomplete or not one this runtime understands."""


def read_checkpoint_config(checkpoint_dir: Path) -> dict[str, Any]:
    path = Path(checkpoint_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path} not found: is {checkpoint_dir} a TensorRT-LLM checkpoint directory?")
    return json.loads(path.read_text())


def _rope_scaling(config: dict[str, Any]) -> tuple[float, dict[str, Any] | None]:
    """(rope theta, HF rope_scaling) from either `rotary_base`/`rotary_scaling` (with `type` or
    `rope_type`) or an HF-5 style `rope_parameters` dict."""
    parameters = config.get("rope_parameters")
    if isinstance(parameters, dict):
        theta = float(parameters.get("rope_theta", config.get("rotary_base", 10000.0)))
        scaling = {key: value for key, value in parameters.items() if key != "rope_theta"}
    else:
        theta = float(config.get("rotary_base", 10000.0))
        scaling = dict(config.get("rotary_scaling") or {})
    if "type" in scaling:
        scaling.setdefault("rope_type", scaling.pop("type"))
    if scaling.get("rope_type", "default") in ("default", "none"):
        return theta, None
    return theta, scaling


def architecture_from_checkpoint(config: dict[str, Any]) -> LlamaArchitecture:
    """The HF architecture numbers of a TensorRT-LLM checkpoint config.json."""
    if config.get("architecture") not in ("LlamaForCausalLM", "MistralForCausalLM"):
        raise CheckpointError(f"architecture {config.get('architecture')!r} is not a Llama checkpoint.")
    heads = int(config["num_attention_heads"])
    theta, scaling = _rope_scaling(config)
    return LlamaArchitecture(
        vocab_size=int(config["vocab_size"]),
        hidden_size=int(config["hidden_size"]),
        intermediate_size=int(config["intermediate_size"]),
        num_hidden_layers=int(config["num_hidden_layers"]),
        num_attention_heads=heads,
        num_key_value_heads=int(config.get("num_key_value_heads") or heads),
        head_dim=int(config.get("head_size") or int(config["hidden_size"]) // heads),
        rms_norm_eps=float(config.get("norm_epsilon", 1e-5)),
        rope_theta=theta,
        rope_scaling=scaling,
        max_position_embeddings=int(config.get("max_position_embeddings") or 131072),
        tie_word_embeddings=bool(config.get("tie_word_embeddings", False)),
        dtype=str(config.get("dtype", "bfloat16")),
    )
