"""Quantized tensor formats as pure functions with closed forms (no calibration, no file layout).

Facts: `shared/reference/trtllm-checkpoint.md` section 4 (TRT-LLM checkpoint) and
`shared/reference/trtllm-pytorch-backend.md` section 2.2 (ModelOpt unified HF checkpoint).

Conventions used throughout:
- A linear weight is `W [out, in]`; scales are float32.
- AWQ smoothing: `y = W x = (W * s) (x / s)`. The quantized weight is `W * s` (scaled along `in`); the
  stored `pre_quant_scale` is the *activation multiplier* `1 / s`, so `x_q = x * pre_quant_scale` and
  `W ~= dequant * pre_quant_scale` (the form both TRT-LLM and ModelOpt write).
- Every `*_scale(amax)` function guards amax == 0 (an all-zero tensor) with a tiny floor so quantizing
  never divides by zero; for any positive amax it is exactly amax / maxbound.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from trt_build.common.errors import SwallowTrtError

FP8_E4M3_MAX = 448.0
INT4_MIN, INT4_MAX = -8, 7
INT8_MIN, INT8_MAX = -128, 127
AMAX_FLOOR = 1e-12  # an all-zero tensor gets a tiny positive scale instead of a division by zero

# Weight-only per-channel divisors. The recommended checkpoint holds bf16 and trtllm-build quantizes it
# with `symmetric_quantize_last_axis_of_batched_matrix` (cutlass_preprocessors.cpp), whose scale is
# amax / 2**(bits-1) (128 or 8) with clamps to the full signed range; ModelOpt's W8A16 export and the
# textbook symmetric form use amax / 127 or amax / 7. Both are kept so the reference runtime can mirror
# the engine exactly (`trtllm_build`, the default) or the textbook math (`symmetric`).
WEIGHT_ONLY_DIVISORS: dict[str, dict[int, float]] = {
    "trtllm_build": {8: 128.0, 4: 8.0},
    "symmetric": {8: 127.0, 4: 7.0},
}
SIGNED_RANGE = {8: (INT8_MIN, INT8_MAX), 4: (INT4_MIN, INT4_MAX)}


def _floored(amax: torch.Tensor | float) -> torch.Tensor:
    return torch.as_tensor(amax, dtype=torch.float32).clamp_min(AMAX_FLOOR)


# ---------------------------------------------------------------- FP8 e4m3, per tensor


def fp8_scale(amax: torch.Tensor | float) -> torch.Tensor:
    """Per-tensor FP8 scale = amax / 448 (float32, same shape as amax; 0-d for a scalar)."""
    return _floored(amax) / FP8_E4M3_MAX


def fp8_weight_scale(weight: torch.Tensor) -> torch.Tensor:
    return fp8_scale(weight.detach().abs().amax().float())


def shared_scale(scales: Sequence[torch.Tensor | float]) -> torch.Tensor:
    """One scale (or amax) for a fused group (qkv, fc+gate): the max of its parts, as ModelOpt does."""
    if not scales:
        raise ValueError("shared_scale needs at least one scale")
    return torch.stack([torch.as_tensor(s, dtype=torch.float32).reshape(()) for s in scales]).amax()


def fp8_quantize(tensor: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """clamp(x / scale, +-448) cast to float8_e4m3fn (round to nearest even)."""
    scaled = tensor.float() / torch.as_tensor(scale, dtype=torch.float32)
    return scaled.clamp(-FP8_E4M3_MAX, FP8_E4M3_MAX).to(torch.float8_e4m3fn)


def fp8_dequantize(
    quantized: torch.Tensor, scale: torch.Tensor | float, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    return (quantized.float() * torch.as_tensor(scale, dtype=torch.float32)).to(dtype)


def fp8_fake_quant(tensor: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Quantize-dequantize with a static scale, in the input's dtype: FP8 activations and KV cache."""
    return fp8_dequantize(fp8_quantize(tensor, scale), scale, tensor.dtype)


def fp8_kv_cache_scale(k_amax: torch.Tensor | float, v_amax: torch.Tensor | float) -> torch.Tensor:
    """`kv_cache_scaling_factor` as ModelOpt writes it: max(amax_kv / 448, 1.0), i.e. 1.0 in practice.

    TRT-LLM 0.13 overwrites it with 1.0 and the PyTorch backend ignores it (fixed 1.0), so 1.0 is the
    value every runtime agrees on; the calibrated K/V amax stays in the calibration result.
    """
    return torch.maximum(fp8_scale(shared_scale([k_amax, v_amax])), torch.tensor(1.0))


# ---------------------------------------------------------------- INT4 symmetric, per group of the input dim


def check_group_size(in_features: int, group_size: int, name: str = "weight") -> None:
    """A precondition of the group math (stages check their options earlier, with parallel.rules)."""
    if group_size <= 0 or in_features % group_size:
        raise SwallowTrtError(
            f"{name}: group size {group_size} does not divide the input dimension {in_features}. "
            f"Use a --group-size that divides {in_features} (128 divides every Llama-3.1 / Swallow linear)."
        )


def _grouped(weight: torch.Tensor, group_size: int) -> torch.Tensor:
    out_features, in_features = weight.shape
    check_group_size(in_features, group_size)
    return weight.float().reshape(out_features, in_features // group_size, group_size)


def int4_group_scales(weight: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """Per output row and input group: amax / 7, float32 [out, in / group_size]."""
    return _grouped(weight, group_size).abs().amax(dim=-1).clamp_min(AMAX_FLOOR) / INT4_MAX


def int4_group_quantize(weight: torch.Tensor, scales: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """q = clamp(round(W / s), -8, 7) as int8 [out, in] (one int4 value per element, not yet packed)."""
    grouped = _grouped(weight, group_size)
    q = torch.round(grouped / scales.float().unsqueeze(-1)).clamp(INT4_MIN, INT4_MAX)
    return q.to(torch.int8).reshape(weight.shape)


def int4_group_dequantize(
    quantized: torch.Tensor, scales: torch.Tensor, group_size: int = 128, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    grouped = _grouped(quantized, group_size)
    return (grouped * scales.float().unsqueeze(-1)).reshape(quantized.shape).to(dtype)


def int4_group_fake_quant(weight: torch.Tensor, group_size: int = 128) -> torch.Tensor:
    """Round-to-nearest group quantize-dequantize in float32 (reference runtime, AWQ search objective)."""
    scales = int4_group_scales(weight, group_size)
    return int4_group_dequantize(int4_group_quantize(weight, scales, group_size), scales, group_size)


def pack_int4_rows(quantized: torch.Tensor) -> torch.Tensor:
    """Pack int4 values [out, in] along `out` into int8 [out/2, in]: row 2j low nibble, 2j+1 high nibble.

    Two's-complement nibbles; this is the TRT-LLM checkpoint layout (ModelOpt `pack_linear_weights`,
    the GPTQ loader) before any SM-specific interleaving, which trtllm-build applies itself.
    """
    if quantized.dim() != 2 or quantized.shape[0] % 2:
        raise ValueError(
            f"pack_int4_rows needs a 2-D tensor with an even row count, got {tuple(quantized.shape)}"
        )
    q = quantized.to(torch.int16)
    if q.numel() and (q.min() < INT4_MIN or q.max() > INT4_MAX):
        raise ValueError("pack_int4_rows: values outside the int4 range [-8, 7]")
    packed = (q[0::2] & 0x0F) | ((q[1::2] & 0x0F) << 4)
    return packed.to(torch.uint8).view(torch.int8)


def unpack_int4_rows(packed: torch.Tensor) -> torch.Tensor:
    """Exact inverse of `pack_int4_rows` (accepts the int8 or the uint8 view): int8 [2 * rows, in]."""
    raw = packed.view(torch.uint8).to(torch.int16)
    low, high = raw & 0x0F, (raw >> 4) & 0x0F
    low, high = torch.where(low > 7, low - 16, low), torch.where(high > 7, high - 16, high)
    return torch.stack([low, high], dim=1).reshape(2 * raw.shape[0], raw.shape[1]).to(torch.int8)


def pack_int4_rows_modelopt_hf(quantized: torch.Tensor) -> torch.Tensor:
    """ModelOpt unified HF AWQ `weight`: the same bytes as `pack_int4_rows`, stored as uint8 [out/2, in]."""
    return pack_int4_rows(quantized).view(torch.uint8)


# ---------------------------------------------------------------- AWQ (smoothing + group int4)


def awq_quantize(
    weight: torch.Tensor, pre_quant_scale: torch.Tensor, group_size: int = 128
) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth with the activation multiplier `pre_quant_scale` [in], then group-quantize.

    Returns (q int8 [out, in] unpacked, scales float32 [out, in/group]); dequant * pre_quant_scale ~= W.
    Works on a TP slice too: column slices keep the full pre_quant_scale, row slices take its `in` slice.
    """
    if pre_quant_scale.numel() != weight.shape[1]:
        raise ValueError(
            f"pre_quant_scale has {pre_quant_scale.numel()} elements, weight has {weight.shape[1]} inputs"
        )
    smoothed = weight.float() / pre_quant_scale.float().reshape(1, -1)
    scales = int4_group_scales(smoothed, group_size)
    return int4_group_quantize(smoothed, scales, group_size), scales


def awq_dequantize(
    quantized: torch.Tensor,
    scales: torch.Tensor,
    pre_quant_scale: torch.Tensor,
    group_size: int = 128,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The weight the engine effectively multiplies `x` with: dequant(q) * pre_quant_scale."""
    deq = int4_group_dequantize(quantized, scales, group_size)
    return (deq * pre_quant_scale.float().reshape(1, -1)).to(dtype)


def fold_pre_quant_scale_into_norm(norm_weight: torch.Tensor, pre_quant_scale: torch.Tensor) -> torch.Tensor:
    """ModelOpt unified HF AWQ folds the q/k/v (gate/up) pre_quant_scale into the preceding RMSNorm."""
    return (norm_weight.float() * pre_quant_scale.float()).to(norm_weight.dtype)


# ---------------------------------------------------------------- weight-only, per output channel


def weight_only_scales(weight: torch.Tensor, bits: int, convention: str = "trtllm_build") -> torch.Tensor:
    """Per output channel: amax / divisor, float32 [out]; see WEIGHT_ONLY_DIVISORS."""
    divisor = WEIGHT_ONLY_DIVISORS[convention][bits]
    return weight.float().abs().amax(dim=1).clamp_min(AMAX_FLOOR) / divisor


def weight_only_quantize(weight: torch.Tensor, scales: torch.Tensor, bits: int) -> torch.Tensor:
    low, high = SIGNED_RANGE[bits]
    return torch.round(weight.float() / scales.float().unsqueeze(1)).clamp(low, high).to(torch.int8)


def weight_only_fake_quant(weight: torch.Tensor, bits: int, convention: str = "trtllm_build") -> torch.Tensor:
    """What an int8/int4 weight-only engine multiplies with, in the weight's dtype (reference runtime)."""
    scales = weight_only_scales(weight, bits, convention)
    return (weight_only_quantize(weight, scales, bits).float() * scales.unsqueeze(1)).to(weight.dtype)
