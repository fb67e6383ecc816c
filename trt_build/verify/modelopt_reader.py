"""A ModelOpt unified HF checkpoint (`convert --target pytorch`) read back as a dense HF state dict.

Each linear is read through its quant_algo's `formats.modelopt_checkpoint.LINEAR_FORMATS` entry (the table the
converter writes with); FP8 input scales and the FP8 KV cache become a `FakeQuant`, the KV cache at the scale
TensorRT-LLM's PyTorch backend really uses.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from trt_build.formats.modelopt_checkpoint import BACKEND_KV_CACHE_SCALE, WEIGHT, linear_format
from trt_build.formats.modelopt_config import read_modelopt_quantization
from trt_build.formats.trtllm_config import CheckpointError
from trt_build.source.checkpoint import STORED_AS, SourceCheckpoint, torch_dtype
from trt_build.source.hf_config import LLAMA_LINEARS, LlamaArchitecture, read_hf_config
from trt_build.verify.fake_quant import FakeQuant


def unified_quantization(directory: Path) -> dict[str, Any]:
    """The checkpoint's quantization block: hf_quant_config.json (what TensorRT-LLM reads), {} if none."""
    return dict(read_modelopt_quantization(Path(directory)) or {})


def unified_state_dict(
    directory: Path, dtype: torch.dtype | None = None
) -> tuple[LlamaArchitecture, dict[str, torch.Tensor], FakeQuant]:
    """HF state dict (dequantized), architecture and run-time fake quant of a ModelOpt unified checkpoint."""
    directory = Path(directory)
    arch = read_hf_config(directory)
    quantization = unified_quantization(directory)
    quant_algo = quantization.get("quant_algo")
    linear = linear_format(quant_algo)
    kv_fp8 = quantization.get("kv_cache_quant_algo") == "FP8"
    target = dtype or (torch_dtype(arch.dtype) if arch.dtype in STORED_AS else torch.bfloat16)
    raw = SourceCheckpoint(directory).tensors()
    state: dict[str, torch.Tensor] = {}
    activations: dict[str, float] = {}
    kv_cache: dict[str, float] = {}
    consumed: set[str] = set()
    for layer in range(arch.num_hidden_layers):
        for name in LLAMA_LINEARS:
            prefix = f"model.layers.{layer}.{name}"
            tensors = {key[len(prefix) + 1 :]: t for key, t in raw.items() if key.startswith(prefix + ".")}
            if WEIGHT not in tensors:
                raise CheckpointError(f"{prefix}.{WEIGHT} is missing from {directory}.")
            state[f"{prefix}.{WEIGHT}"] = linear.read(tensors).to(target).contiguous()
            consumed.update(f"{prefix}.{suffix}" for suffix in tensors)
            if linear.activation_scale:
                if linear.activation_scale not in tensors:
                    raise CheckpointError(
                        f"{prefix}.{linear.activation_scale} is missing ({quant_algo} needs it)."
                    )
                activations[prefix] = float(tensors[linear.activation_scale].reshape(()))
        if kv_fp8:
            kv_cache[f"model.layers.{layer}.self_attn"] = BACKEND_KV_CACHE_SCALE
    for name, tensor in raw.items():
        if name not in consumed:
            state[name] = tensor.to(target).contiguous()
    return arch, state, FakeQuant(activations, kv_cache)
