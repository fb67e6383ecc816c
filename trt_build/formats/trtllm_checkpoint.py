"""The tensors of a TensorRT-LLM checkpoint's rank files, per `quant_algo` (docs/trtllm-checkpoint.md §4).

For each quant_algo, `LINEAR_FORMATS` says what one linear module becomes in a rank file (names, dtypes,
shapes: known from the rank's shape alone), how those tensors are made from a `LinearQuantInput`, and how they
read back as the dense weight the engine multiplies with. The engine target's writer (`convert/trtllm_writer`)
and the reference runtime (`verify/trtllm_reader`) both use this table, so every scale tensor's name is
written down here once.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from trt_build.formats.trtllm_config import CheckpointError
from trt_build.quant import numerics as qf
from trt_build.quant.linear import LinearQuantInput

# Suffixes under a linear module's name, e.g. transformer.layers.0.attention.qkv.weights_scaling_factor.
WEIGHT = "weight"
WEIGHTS_SCALE = "weights_scaling_factor"  # FP8: per tensor; AWQ: per output row and input group
ACTIVATION_SCALE = "activation_scaling_factor"  # FP8: the static input scale
PREQUANT_SCALE = "prequant_scaling_factor"  # AWQ: the activation multiplier, in the checkpoint dtype
# An FP8 KV cache adds one scale per layer beside the attention's linears, the same on every rank (§4.1).
KV_CACHE_SCALE = "kv_cache_scaling_factor"

SuffixSpec = tuple[str, torch.dtype, tuple[int, ...]]  # (suffix under the linear's name, dtype, shape)


@dataclass(frozen=True)
class LinearShard:
    """The tensors of one linear module of one rank, as a rank file holds them."""

    prefix: str  # e.g. transformer.layers.0.attention.qkv
    tensors: dict[str, torch.Tensor]  # suffix ("weight", "weights_scaling_factor", ...) -> tensor
    dtype: torch.dtype  # checkpoint dtype


@dataclass(frozen=True)
class LinearFormat:
    """One quant_algo's linear in a rank file."""

    # (rank shape [out, in], checkpoint dtype, AWQ group size) -> the tensors, in file order
    layout: Callable[[tuple[int, ...], torch.dtype, int], list[SuffixSpec]]
    # one rank's tensors -> the dense weight the engine computes with (dequantized, or fake-quantized the way
    # trtllm-build will quantize it)
    read: Callable[[LinearShard, dict[str, Any]], torch.Tensor]
    # the tensors from a quantization input, by suffix; None: the weight is written as read, in the checkpoint dtype
    emit: Callable[[LinearQuantInput], dict[str, torch.Tensor]] | None = None
    activation_scale: str | None = None  # the static input scale the engine applies, if any


def kv_cache_scale_name(qkv_prefix: str) -> str:
    """transformer.layers.{i}.attention.qkv -> transformer.layers.{i}.attention.kv_cache_scaling_factor."""
    return f"{qkv_prefix.rsplit('.', 1)[0]}.{KV_CACHE_SCALE}"


def kv_cache_scale(k_amax: torch.Tensor, v_amax: torch.Tensor) -> torch.Tensor:
    """The FP8 KV cache scale of a layer, float32 [1] (docs/trtllm-checkpoint.md §4.1: ModelOpt's rule, 1.0 in practice)."""
    return qf.fp8_kv_cache_scale(k_amax, v_amax).float().reshape(1)


# ---------------------------------------------------------------- unquantized and weight-only (§4.3)


def _plain_layout(shape: tuple[int, ...], dtype: torch.dtype, group_size: int) -> list[SuffixSpec]:
    return [(WEIGHT, dtype, shape)]


def _read_plain(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    return shard.tensors[WEIGHT]


def _weight_only_reader(bits: int) -> Callable[[LinearShard, dict[str, Any]], torch.Tensor]:
    """The weight is written in bf16 and trtllm-build quantizes each rank's weight per output channel (amax/128,
    amax/8), so reading it back applies the same fake quant, per shard, before merging."""

    def read(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
        return qf.weight_only_fake_quant(shard.tensors[WEIGHT], bits, "trtllm_build")

    return read


# ---------------------------------------------------------------- FP8 per tensor (§4.1)


def _fp8_layout(shape: tuple[int, ...], dtype: torch.dtype, group_size: int) -> list[SuffixSpec]:
    """e4m3 weight, per-tensor float32 [1] weight and activation scales."""
    return [
        (WEIGHT, torch.float8_e4m3fn, shape),
        (WEIGHTS_SCALE, torch.float32, (1,)),
        (ACTIVATION_SCALE, torch.float32, (1,)),
    ]


def _emit_fp8(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    weight_scale = qf.fp8_scale(p.weight_amax)
    return {
        WEIGHT: qf.fp8_quantize(p.weight, weight_scale),
        WEIGHTS_SCALE: weight_scale.reshape(1),
        ACTIVATION_SCALE: qf.fp8_scale(p.input_amax).reshape(1),
    }


def _read_fp8(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    """e4m3 weight times its per-tensor scale."""
    return qf.fp8_dequantize(shard.tensors[WEIGHT], shard.tensors[WEIGHTS_SCALE].reshape(()))


# ---------------------------------------------------------------- INT4 AWQ (§4.2)


def _awq_layout(shape: tuple[int, ...], dtype: torch.dtype, group_size: int) -> list[SuffixSpec]:
    """int4 packed along out into int8 [out/2, in], scales [out, in/group], pre-quant scale [in] in the dtype."""
    out_features, in_features = shape
    return [
        (WEIGHT, torch.int8, (out_features // 2, in_features)),
        (WEIGHTS_SCALE, torch.float32, (out_features, in_features // group_size)),
        (PREQUANT_SCALE, dtype, (in_features,)),
    ]


def _emit_awq(p: LinearQuantInput) -> dict[str, torch.Tensor]:
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return {
        WEIGHT: qf.pack_int4_rows(q),
        WEIGHTS_SCALE: scales,
        PREQUANT_SCALE: p.pre_quant_scale.to(p.dtype),
    }


def _read_awq(shard: LinearShard, quantization: dict[str, Any]) -> torch.Tensor:
    """Unpack int4 rows, dequantize per group, multiply by the stored pre-quant scale: the weight the engine
    applies to `x` (it computes (x * prequant) @ dequant.T)."""
    packed, scales = shard.tensors[WEIGHT], shard.tensors[WEIGHTS_SCALE]
    pre_quant = shard.tensors[PREQUANT_SCALE].reshape(-1)
    in_features = packed.shape[1]
    group_size = in_features // scales.shape[1]
    if (
        group_size * scales.shape[1] != in_features
        or quantization.get("group_size", group_size) != group_size
    ):
        raise CheckpointError(
            f"{shard.prefix}: {WEIGHTS_SCALE} {list(scales.shape)} does not match input "
            f"{in_features} with group_size {quantization.get('group_size')}."
        )
    return qf.awq_dequantize(qf.unpack_int4_rows(packed), scales, pre_quant, group_size)


# quant_algo (None = unquantized) -> its linears in a rank file
LINEAR_FORMATS: dict[str | None, LinearFormat] = {
    None: LinearFormat(_plain_layout, _read_plain),
    "FP8": LinearFormat(_fp8_layout, _read_fp8, _emit_fp8, ACTIVATION_SCALE),
    "W4A16_AWQ": LinearFormat(_awq_layout, _read_awq, _emit_awq),
    "W8A16": LinearFormat(_plain_layout, _weight_only_reader(8)),
    "W4A16": LinearFormat(_plain_layout, _weight_only_reader(4)),
}


def linear_format(quant_algo: str | None) -> LinearFormat:
    """The rank-file format of a quant_algo, or a clear error for one swallow-trt does not read or write."""
    if quant_algo not in LINEAR_FORMATS:
        raise CheckpointError(
            f"quant_algo {quant_algo!r} is not a TensorRT-LLM checkpoint format swallow-trt reads "
            f"(known: {', '.join(str(key) for key in LINEAR_FORMATS)})."
        )
    return LINEAR_FORMATS[quant_algo]
