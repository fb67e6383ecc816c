"""The tensors of a ModelOpt unified Hugging Face checkpoint, per `quant_algo` (docs/modelopt-checkpoint.md §2).

HF names throughout. For each quant_algo, `LINEAR_FORMATS` says what one linear becomes (names, dtypes, shapes),
how its tensors are made from a `LinearQuantInput`, and how they read back as a dense weight; the AWQ pre-quant
scales of q/k/v and gate/up live in the RMSNorm in front of them (`AWQ_FOLDED_NORM`), and an FP8 KV cache adds
`k_scale` / `v_scale` under k_proj / v_proj. The pytorch target's writer (`convert/modelopt_writer`) and the
reference runtime (`verify/modelopt_reader`) both use these definitions. The config files are
`formats/modelopt_config.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from trt_build.formats.trtllm_config import CheckpointError
from trt_build.quant import numerics as qf
from trt_build.quant.linear import LinearQuantInput

# Suffixes under a linear's HF name, e.g. model.layers.0.self_attn.q_proj.weight_scale.
WEIGHT = "weight"
WEIGHT_SCALE = "weight_scale"  # FP8: per linear, 0-d (q/k/v keep their own); AWQ: [out, in/group]
INPUT_SCALE = "input_scale"  # FP8: the static input scale, shared by linears that read the same input
PRE_QUANT_SCALE = "pre_quant_scale"  # AWQ: only where it is not folded into a norm
# An FP8 KV cache: a float32 0-d scale under k_proj and v_proj (not under self_attn).
KV_CACHE_SCALES = {"self_attn.k_proj": "k_scale", "self_attn.v_proj": "v_scale"}
# AWQ: the RMSNorm that carries the pre-quant scale of the linears it feeds, by the first of them; q/k/v share
# one pre-quant scale, gate/up another.
AWQ_FOLDED_NORM = {"input_layernorm": "self_attn.q_proj", "post_attention_layernorm": "mlp.gate_proj"}
AWQ_KEEPS_PRE_QUANT = ("self_attn.o_proj", "mlp.down_proj")
# TensorRT-LLM's PyTorch backend runs an FP8 KV cache with a fixed scale of 1.0 and ignores the checkpoint's
# k_scale / v_scale (docs/modelopt-checkpoint.md §3.5): what reading the checkpoint back simulates.
BACKEND_KV_CACHE_SCALE = 1.0

SuffixSpec = tuple[str, torch.dtype, tuple[int, ...]]


@dataclass(frozen=True)
class UnifiedLinearFormat:
    """One quant_algo's linear in the unified checkpoint."""

    # (linear name inside its layer, [out, in], checkpoint dtype, AWQ group size) -> its tensors, in file order
    layout: Callable[[str, tuple[int, ...], torch.dtype, int], list[SuffixSpec]]
    # its tensors (suffix -> tensor) -> the dense weight, with a folded pre-quant scale left in the norm
    read: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    # the tensors from a quantization input, by suffix; None: the weight as read
    emit: Callable[[LinearQuantInput], dict[str, torch.Tensor]] | None = None
    activation_scale: str | None = None  # the static input scale the backend applies, if any


def kv_cache_scales(k_amax: torch.Tensor, v_amax: torch.Tensor) -> dict[str, torch.Tensor]:
    """The FP8 KV cache scales of a layer, by the linear they hang under (amax / 448, 0-d)."""
    return {
        "self_attn.k_proj": qf.fp8_scale(k_amax).reshape(()),
        "self_attn.v_proj": qf.fp8_scale(v_amax).reshape(()),
    }


def _plain_layout(
    linear: str, shape: tuple[int, ...], dtype: torch.dtype, group_size: int
) -> list[SuffixSpec]:
    return [(WEIGHT, dtype, shape)]


# ---------------------------------------------------------------- FP8


def _fp8_layout(linear: str, shape: tuple[int, ...], dtype: torch.dtype, group_size: int) -> list[SuffixSpec]:
    return [
        (WEIGHT, torch.float8_e4m3fn, shape),
        (WEIGHT_SCALE, torch.float32, ()),
        (INPUT_SCALE, torch.float32, ()),
    ]


def _emit_fp8(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    """Per-linear weight scale (q/k/v keep their own), 0-d scales; the input scale is the fused group's."""
    weight_scale = qf.fp8_scale(p.weight_amax)
    return {
        WEIGHT: qf.fp8_quantize(p.weight, weight_scale),
        WEIGHT_SCALE: weight_scale.reshape(()),
        INPUT_SCALE: qf.fp8_scale(p.input_amax).reshape(()),
    }


def _read_fp8(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """e4m3 weight times its scalar weight scale."""
    return qf.fp8_dequantize(tensors[WEIGHT], tensors[WEIGHT_SCALE].reshape(()))


# ---------------------------------------------------------------- INT4 AWQ


def _awq_layout(linear: str, shape: tuple[int, ...], dtype: torch.dtype, group_size: int) -> list[SuffixSpec]:
    """uint8 [out/2, in] (two int4 per byte along out), scales [out, in/group], pre-quant [in] on o/down only."""
    out_features, in_features = shape
    specs = [
        (WEIGHT, torch.uint8, (out_features // 2, in_features)),
        (WEIGHT_SCALE, torch.float32, (out_features, in_features // group_size)),
    ]
    if linear in AWQ_KEEPS_PRE_QUANT:
        specs.append((PRE_QUANT_SCALE, dtype, (in_features,)))
    return specs


def _emit_awq(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    """The pre-quant scale is emitted for every linear; the layout keeps it only where it is not folded."""
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return {
        WEIGHT: qf.pack_int4_rows_modelopt_hf(q),
        WEIGHT_SCALE: scales,
        PRE_QUANT_SCALE: p.pre_quant_scale.to(p.dtype),
    }


def _read_awq(tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Per-group dequantized weight, times `pre_quant_scale` where the linear keeps one (o_proj, down_proj).
    For q/k/v and gate/up the scale lives in the norm weight in front, which the model applies as stored, so
    the dequantized weight alone reproduces (norm * prequant * x) @ W.T."""
    packed, scales = tensors[WEIGHT], tensors[WEIGHT_SCALE]
    group_size = packed.shape[1] // scales.shape[1]
    if group_size * scales.shape[1] != packed.shape[1]:
        raise CheckpointError(
            f"{WEIGHT_SCALE} {list(scales.shape)} does not divide the input {packed.shape[1]}."
        )
    weight = qf.int4_group_dequantize(qf.unpack_int4_rows(packed), scales, group_size)
    if PRE_QUANT_SCALE in tensors:
        weight = weight * tensors[PRE_QUANT_SCALE].float().reshape(1, -1)
    return weight


# quant_algo (hf_quant_config.json; None = unquantized) -> its linears in the unified checkpoint
LINEAR_FORMATS: dict[str | None, UnifiedLinearFormat] = {
    None: UnifiedLinearFormat(_plain_layout, lambda tensors: tensors[WEIGHT]),
    "FP8": UnifiedLinearFormat(_fp8_layout, _read_fp8, _emit_fp8, INPUT_SCALE),
    "W4A16_AWQ": UnifiedLinearFormat(_awq_layout, _read_awq, _emit_awq),
}


def linear_format(quant_algo: str | None) -> UnifiedLinearFormat:
    """The unified format of a quant_algo, or a clear error for one swallow-trt does not read or write."""
    if quant_algo not in LINEAR_FORMATS:
        raise CheckpointError(
            f"quant_algo {quant_algo!r} is not a ModelOpt unified format swallow-trt reads "
            f"(known: {', '.join(str(key) for key in LINEAR_FORMATS)})."
        )
    return LINEAR_FORMATS[quant_algo]


def fold_into_norm(
    norm: str, weight: torch.Tensor, pre_quant_of: Callable[[str], torch.Tensor]
) -> torch.Tensor:
    """An RMSNorm weight as the AWQ checkpoint stores it: times the pre-quant scale of the linears it feeds
    (`pre_quant_of(first linear)`), or unchanged for a norm that feeds none."""
    if norm not in AWQ_FOLDED_NORM:
        return weight
    return qf.fold_pre_quant_scale_into_norm(weight, pre_quant_of(AWQ_FOLDED_NORM[norm]))
