"""How `swallow-trt convert --quant NAME` writes the linear weights of a TensorRT-LLM rank file.

`LINEAR_WRITERS` says, per scheme, what tensors a linear weight becomes (`linear_layout`, known before
reading data) and produces them (`linear_transform`). Schemes that need data (FP8 activations, AWQ, an FP8
KV cache) get a `CalibrationResult` (`trt_build.convert.calibration`); the tensor math is `quant/linear.py`
(spec §4); what each scheme is, `quant/schemes.py`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from trt_build.formats.safetensors_stream import TensorSpec
from trt_build.parallel.weight_map import RankTensor, Split
from trt_build.quant import linear as ql
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
class LinearWriter:
    """How a scheme's linear weights are laid out in a TRT-LLM rank file (known from shapes only) and made.
    What the scheme *is* (quant_algo, config block, calibration) is `quant.schemes.SCHEMES`."""

    linear_layout: Callable[[LinearWeight], list[TensorSpec]]
    # the weight it gets is already in LinearWeight.dtype, read through source_checkpoint.checked_cast
    linear_transform: Callable[[LinearWeight, torch.Tensor], Iterator[tuple[str, torch.Tensor]]]


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


def _fp8_input(linear: LinearWeight, weight: torch.Tensor) -> ql.LinearQuantInput:
    """Amaxes of the whole fused group (qkv; fc+gate) over the full matrix: the same scale on every rank."""
    calibration, layer, group = linear.calibrated(), linear.tensor.layer, GROUP_OF[linear.hf_linear]
    return ql.LinearQuantInput(
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


def _awq_input(linear: LinearWeight, weight: torch.Tensor) -> ql.LinearQuantInput:
    """The pre-quant scale is replicated on column linears and split with the input on row linears; it
    is rounded to the checkpoint dtype first, so the weight is smoothed with exactly the stored value."""
    pre_quant = linear.calibrated().pre_quant_scale(linear.tensor.layer, linear.hf_linear)
    if linear.tensor.rule.split is Split.ROW:
        piece = linear.tensor.slices[0]
        pre_quant = pre_quant[piece.col_start : piece.col_stop]
    return ql.LinearQuantInput(
        weight,
        pre_quant_scale=pre_quant.to(linear.dtype),
        group_size=linear.group_size,
        dtype=linear.dtype,
    )


def _quantized_writer(
    layout: Callable[[LinearWeight], list[TensorSpec]],
    make_input: Callable[[LinearWeight, torch.Tensor], ql.LinearQuantInput],
    emit: Callable[[ql.LinearQuantInput], dict[str, torch.Tensor]],
) -> LinearWriter:
    """A writer whose linears are made by `emit` (quant/linear.py), in layout order."""

    def transform(linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        tensors = emit(make_input(linear, weight))
        for tensor_name, dtype, _ in layout(linear):
            yield tensor_name, tensors[tensor_name.removeprefix(linear.prefix + ".")].to(dtype).contiguous()

    return LinearWriter(layout, transform)


# Weight-only schemes follow the recommended path (docs §4.3): bf16 weights, trtllm-build quantizes them.
PLAIN = LinearWriter(_plain_layout, _plain_transform)
LINEAR_WRITERS: dict[str, LinearWriter] = {
    "none": PLAIN,
    "fp8": _quantized_writer(_fp8_layout, _fp8_input, ql.fp8_trtllm),
    "int4_awq": _quantized_writer(_awq_layout, _awq_input, ql.awq_trtllm),
    "int8_wo": PLAIN,
    "int4_wo": PLAIN,
}
KV_CACHE_SCALE = "kv_cache_scaling_factor"  # per layer, beside attention.qkv (spec §4.1)
