"""How `swallow-trt convert --quant NAME` writes the linear weights of a TensorRT-LLM rank file.

Quantization plugs in through `QUANT_SCHEMES`: a scheme decides what tensors a linear weight becomes
(`linear_layout`, known before reading data) and produces them (`linear_transform`). Schemes that need
data (FP8 activations, AWQ, an FP8 KV cache) get a `CalibrationResult` (`trt_build.convert.calibration`);
the tensor math is `quant_schemes` (spec §4). Also here: the config.json `quantization` block and the
AWQ group-size check, which depend only on the scheme and its options.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import click
import torch

from trt_build.formats.safetensors_stream import TensorSpec
from trt_build.parallel.weight_map import RankTensor, Split
from trt_build.quant import schemes as qs
from trt_build.quant.calibrate import GROUP_OF, CalibrationResult
from trt_build.source.checkpoint import SourceCheckpoint


@dataclass(frozen=True)
class LinearWeight:
    """What a quant scheme sees of one linear weight of one rank (e.g. one rank's qkv)."""

    tensor: RankTensor  # TRT-LLM name, rule, layer, HF slices, rank shape
    dtype: torch.dtype  # checkpoint dtype of activations and unquantized weights
    tp: int
    tp_rank: int
    source: SourceCheckpoint  # to read whole HF tensors when a scale must be shared by all ranks
    calibration: CalibrationResult | None = None  # amaxes / AWQ scales, for schemes that need data
    group_size: int = 128  # AWQ group size along the input dimension

    @property
    def prefix(self) -> str:
        """The module name, e.g. transformer.layers.0.attention.qkv (scale tensors hang off it)."""
        return self.tensor.name.removesuffix(".weight")

    @property
    def hf_linear(self) -> str:
        """The first HF linear it is made of, inside the layer: self_attn.q_proj for qkv."""
        return self.tensor.rule.hf[0].removeprefix("model.layers.{L}.").removesuffix(".weight")

    def calibrated(self) -> CalibrationResult:
        if self.calibration is None:
            raise ValueError(f"{self.tensor.name}: this quantization scheme needs a calibration result")
        return self.calibration


@dataclass(frozen=True)
class QuantScheme:
    """How `--quant NAME` writes linear weights: config block, layout (from shapes only) and transform."""

    quantization: dict[str, Any]
    linear_layout: Callable[[LinearWeight], list[TensorSpec]]
    # the weight it gets is already in LinearWeight.dtype, read through source_checkpoint.checked_cast
    linear_transform: Callable[[LinearWeight, torch.Tensor], Iterator[tuple[str, torch.Tensor]]]
    description: str = ""


def _plain_layout(linear: LinearWeight) -> list[TensorSpec]:
    return [(linear.tensor.name, linear.dtype, linear.tensor.shape)]


def _plain_transform(linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
    yield linear.tensor.name, weight


def _fp8_layout(linear: LinearWeight) -> list[TensorSpec]:
    """Spec §4.1: e4m3 weight, per-tensor f32 [1] weight and activation scales."""
    return [
        (f"{linear.prefix}.weight", torch.float8_e4m3fn, linear.tensor.shape),
        (f"{linear.prefix}.weights_scaling_factor", torch.float32, (1,)),
        (f"{linear.prefix}.activation_scaling_factor", torch.float32, (1,)),
    ]


def _fp8_input(linear: LinearWeight, weight: torch.Tensor) -> qs.LinearQuantInput:
    """Amaxes of the whole fused group (qkv; fc+gate) over the full matrix: the same scale on every rank."""
    calibration, layer, group = linear.calibrated(), linear.tensor.layer, GROUP_OF[linear.hf_linear]
    return qs.LinearQuantInput(
        weight,
        input_amax=calibration.group_input_amax(layer, group),
        weight_amax=calibration.group_weight_amax(layer, group),
        dtype=linear.dtype,
    )


def _awq_layout(linear: LinearWeight) -> list[TensorSpec]:
    """Spec §4.2: int4 packed along out into int8 [out/2, in], scales [out, in/group], prequant [in]."""
    out_features, in_features = linear.tensor.shape
    return [
        (f"{linear.prefix}.weight", torch.int8, (out_features // 2, in_features)),
        (
            f"{linear.prefix}.weights_scaling_factor",
            torch.float32,
            (out_features, in_features // linear.group_size),
        ),
        (f"{linear.prefix}.prequant_scaling_factor", linear.dtype, (in_features,)),
    ]


def _awq_input(linear: LinearWeight, weight: torch.Tensor) -> qs.LinearQuantInput:
    """The pre-quant scale is replicated on column linears and split with the input on row linears; it
    is rounded to the checkpoint dtype first, so the weight is smoothed with exactly the stored value."""
    pre_quant = linear.calibrated().pre_quant_scale(linear.tensor.layer, linear.hf_linear)
    if linear.tensor.rule.split is Split.ROW:
        piece = linear.tensor.slices[0]
        pre_quant = pre_quant[piece.col_start : piece.col_stop]
    return qs.LinearQuantInput(
        weight,
        pre_quant_scale=pre_quant.to(linear.dtype),
        group_size=linear.group_size,
        dtype=linear.dtype,
    )


def _quantized_scheme(
    name: str,
    layout: Callable[[LinearWeight], list[TensorSpec]],
    make_input: Callable[[LinearWeight, torch.Tensor], qs.LinearQuantInput],
    description: str,
) -> QuantScheme:
    """A scheme whose linears are written by `quant_schemes.SCHEMES[name].trtllm_linear`, in layout order."""
    emit = qs.SCHEMES[name].trtllm_linear
    assert emit is not None

    def transform(linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        tensors = emit(make_input(linear, weight))
        for tensor_name, dtype, _ in layout(linear):
            yield tensor_name, tensors[tensor_name.removeprefix(linear.prefix + ".")].to(dtype).contiguous()

    return QuantScheme(dict(qs.SCHEMES[name].quantization), layout, transform, description)


def _weight_only_scheme(name: str, description: str) -> QuantScheme:
    """Spec §4.3, the recommended path: bf16 weights, trtllm-build quantizes them per channel."""
    return QuantScheme(dict(qs.SCHEMES[name].quantization), _plain_layout, _plain_transform, description)


QUANT_SCHEMES: dict[str, QuantScheme] = {
    "none": QuantScheme(
        quantization={"quant_algo": None, "kv_cache_quant_algo": None},
        linear_layout=_plain_layout,
        linear_transform=_plain_transform,
        description="unquantized weights in --dtype",
    ),
    "fp8": _quantized_scheme(
        "fp8", _fp8_layout, _fp8_input, "FP8 e4m3 weights and activations, per-tensor static scales"
    ),
    "int4_awq": _quantized_scheme(
        "int4_awq", _awq_layout, _awq_input, "INT4 AWQ weights (group-wise), bf16 activations"
    ),
    "int8_wo": _weight_only_scheme("int8_wo", "INT8 weight-only per channel, quantized by trtllm-build"),
    "int4_wo": _weight_only_scheme("int4_wo", "INT4 weight-only per channel, quantized by trtllm-build"),
}
KV_CACHE_DTYPES = ("auto", "fp8")
KV_CACHE_SCALE = "kv_cache_scaling_factor"  # per layer, beside attention.qkv (spec §4.1)


def quantization_block(quant: str, group_size: int = 128, kv_cache_dtype: str = "auto") -> dict[str, Any]:
    """The config.json `quantization` block of spec §1.3 for these options."""
    block = dict(QUANT_SCHEMES[quant].quantization)
    if "group_size" in block:
        block["group_size"] = group_size
    block["kv_cache_quant_algo"] = "FP8" if kv_cache_dtype == "fp8" else None
    return block


def check_group_size_per_rank(plans: list[list[RankTensor]], group_size: int, tp: int) -> None:
    """AWQ groups run along each rank's input slice, so the group size must divide every rank's `in`."""
    for tensor in (tensor for plan in plans for tensor in plan if tensor.rule.linear):
        in_features = tensor.shape[1]
        if in_features % group_size:
            full = in_features * tp if tensor.rule.split is Split.ROW else in_features
            raise click.ClickException(
                f"--group-size {group_size} does not divide the input dimension {in_features} of "
                f"{tensor.name} on a rank (full input {full}, --tp {tp}). Use a --group-size that divides "
                f"{in_features} (for example {math.gcd(in_features, group_size)}), or a smaller --tp."
            )
