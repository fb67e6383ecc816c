"""What one linear weight becomes per quantization: TRT-LLM and ModelOpt tensors, and what verify simulates.

Inputs to every emitter are already resolved by the caller (the converter): the per-rank, fused
TRT-LLM weight slice (e.g. this rank's [q; k; v] rows) plus scale inputs taken from a
`CalibrationResult` (`group_input_amax` / `group_weight_amax` over the *full* fused matrix for FP8,
the `pre_quant_scale` slice for AWQ: full for column linears, this rank's `in` slice for row linears).
Emitters return {suffix: tensor} to write as `<linear prefix>.<suffix>`.
Facts: shared/reference/trtllm-checkpoint.md sec. 1.3 and 4; trtllm-pytorch-backend.md sec. 2.2.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trt_build.quant import numerics as qf


@dataclass(frozen=True)
class LinearQuantInput:
    weight: torch.Tensor  # [out_r, in_r] in the model dtype, this rank's (fused) slice
    input_amax: torch.Tensor | None = None  # FP8: shared over the fused group, full matrix
    weight_amax: torch.Tensor | None = None  # FP8: shared over the fused group, full matrix
    pre_quant_scale: torch.Tensor | None = None  # AWQ: [in_r] activation multiplier (1/s)
    group_size: int = 128
    dtype: torch.dtype = torch.bfloat16  # the checkpoint dtype (prequant is stored in it)


def fp8_trtllm(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    weight_scale = qf.fp8_scale(p.weight_amax)
    return {
        "weight": qf.fp8_quantize(p.weight, weight_scale),
        "weights_scaling_factor": weight_scale.reshape(1),
        "activation_scaling_factor": qf.fp8_scale(p.input_amax).reshape(1),
    }


def awq_trtllm(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return {
        "weight": qf.pack_int4_rows(q),  # int8 [out_r/2, in_r]
        "weights_scaling_factor": scales,  # float32 [out_r, in_r/group]
        "prequant_scaling_factor": p.pre_quant_scale.to(p.dtype),  # [in_r] in the model dtype
    }


def fp8_modelopt_hf(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    """Unified HF: per-linear weight_scale (q/k/v keep their own), 0-d scales; input_scale shared."""
    weight_scale = qf.fp8_scale(p.weight_amax)
    return {
        "weight": qf.fp8_quantize(p.weight, weight_scale),
        "weight_scale": weight_scale.reshape(()),
        "input_scale": qf.fp8_scale(p.input_amax).reshape(()),
    }


def awq_modelopt_hf(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    """Unified HF: uint8 packing; `pre_quant_scale` written only for o_proj / down_proj (the caller
    folds the q/k/v and gate/up ones into the RMSNorms with `fold_pre_quant_scale_into_norm`)."""
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return {
        "weight": qf.pack_int4_rows_modelopt_hf(q),
        "weight_scale": scales,
        "pre_quant_scale": p.pre_quant_scale.to(p.dtype),
    }


def fp8_reference(p: LinearQuantInput) -> torch.Tensor:
    scale = qf.fp8_scale(p.weight_amax)
    return qf.fp8_dequantize(qf.fp8_quantize(p.weight, scale), scale, p.weight.dtype)


def awq_reference(p: LinearQuantInput) -> torch.Tensor:
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return qf.awq_dequantize(q, scales, p.pre_quant_scale, p.group_size, p.weight.dtype)


def weight_only_reference(bits: int) -> Callable[[LinearQuantInput], torch.Tensor]:
    """What the engine multiplies with after trtllm-build quantizes bf16 weights per channel (amax/128,
    amax/8): verify mirrors it."""
    return lambda p: qf.weight_only_fake_quant(p.weight, bits, "trtllm_build")


def kv_cache_trtllm(k_amax: torch.Tensor, v_amax: torch.Tensor) -> dict[str, torch.Tensor]:
    """`transformer.layers.{i}.attention.<suffix>` for kv_cache_quant_algo FP8 (same on every rank)."""
    return {"kv_cache_scaling_factor": qf.fp8_kv_cache_scale(k_amax, v_amax).reshape(1)}


def kv_cache_modelopt_hf(k_amax: torch.Tensor, v_amax: torch.Tensor) -> dict[str, torch.Tensor]:
    """`model.layers.{i}.self_attn.<name>`: the scales sit under k_proj / v_proj in the unified format."""
    return {
        "k_proj.k_scale": qf.fp8_scale(k_amax).reshape(()),
        "v_proj.v_scale": qf.fp8_scale(v_amax).reshape(()),
    }
