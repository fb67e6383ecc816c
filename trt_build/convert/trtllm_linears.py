"""The linear weights of a TensorRT-LLM rank file: which calibration values make each rank's scales.

What a linear *becomes* per quant_algo (tensor names, shapes, packing) is the format's,
`formats/trtllm_checkpoint.LINEAR_FORMATS`; this module decides what goes into it for one rank: the fused
group's amaxes over the full matrix for FP8 (the same scale on every rank, docs/trtllm-checkpoint.md §4.1),
the pre-quant scale replicated on column linears and split with the input on row linears for AWQ (§4.2).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch

from trt_build.formats.safetensors_stream import TensorSpec
from trt_build.formats.trtllm_checkpoint import WEIGHT, LinearFormat, linear_format
from trt_build.parallel.weight_map import RankTensor, Split
from trt_build.quant.calibration_result import GROUP_OF, CalibrationResult
from trt_build.quant.linear import LinearQuantInput


@dataclass(frozen=True)
class LinearWeight:
    """What a quant scheme sees of one linear weight of one rank (e.g. one rank's qkv)."""

    tensor: RankTensor  # TRT-LLM name, rule, layer, HF slices, rank shape
    dtype: torch.dtype  # checkpoint dtype of activations and unquantized weights
    tp_rank: int
    calibration: CalibrationResult | None = None  # amaxes / AWQ scales, for schemes that need data
    group_size: int = 128  # AWQ group size along the input dimension

    @property
    def prefix(self) -> str:
        """The module name, e.g. transformer.layers.0.attention.qkv (scale tensors hang off it)."""
        return self.tensor.name.removesuffix(f".{WEIGHT}")

    @property
    def hf_linear(self) -> str:
        """The first HF linear it is made of, inside the layer: self_attn.q_proj for qkv."""
        return self.tensor.rule.hf[0].removeprefix("model.layers.{L}.").removesuffix(".weight")

    def calibrated(self) -> CalibrationResult:
        if self.calibration is None:
            raise ValueError(f"{self.tensor.name}: this quantization scheme needs a calibration result")
        return self.calibration


def _fp8_input(linear: LinearWeight, weight: torch.Tensor) -> LinearQuantInput:
    """Amaxes of the whole fused group (qkv; fc+gate) over the full matrix: the same scale on every rank."""
    calibration, layer, group = linear.calibrated(), linear.tensor.layer, GROUP_OF[linear.hf_linear]
    return LinearQuantInput(
        weight,
        input_amax=calibration.group_input_amax(layer, group),
        weight_amax=calibration.group_weight_amax(layer, group),
        dtype=linear.dtype,
    )


def _awq_input(linear: LinearWeight, weight: torch.Tensor) -> LinearQuantInput:
    """The pre-quant scale is replicated on column linears and split with the input on row linears; it
    is rounded to the checkpoint dtype first, so the weight is smoothed with exactly the stored value."""
    pre_quant = linear.calibrated().pre_quant_scale(linear.tensor.layer, linear.hf_linear)
    if linear.tensor.rule.split is Split.ROW:
        piece = linear.tensor.slices[0]
        pre_quant = pre_quant[piece.col_start : piece.col_stop]
    return LinearQuantInput(
        weight,
        pre_quant_scale=pre_quant.to(linear.dtype),
        group_size=linear.group_size,
        dtype=linear.dtype,
    )


# quant_algo -> the quantization input of one rank's linear (formats that `emit` need one)
QUANT_INPUTS: dict[str, Callable[[LinearWeight, torch.Tensor], LinearQuantInput]] = {
    "FP8": _fp8_input,
    "W4A16_AWQ": _awq_input,
}


@dataclass(frozen=True)
class RankLinears:
    """How one quant_algo's linears are laid out in a rank file and produced."""

    quant_algo: str | None

    @property
    def format(self) -> LinearFormat:
        return linear_format(self.quant_algo)

    def layout(self, linear: LinearWeight) -> list[TensorSpec]:
        """The linear's tensors, from shapes alone (before any data is read)."""
        specs = self.format.layout(linear.tensor.shape, linear.dtype, linear.group_size)
        return [(f"{linear.prefix}.{suffix}", dtype, shape) for suffix, dtype, shape in specs]

    def tensors(self, linear: LinearWeight, weight: torch.Tensor) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; `weight` is this rank's slice in the checkpoint dtype."""
        emit = self.format.emit
        if emit is None:  # written as read: unquantized, or weight-only that trtllm-build quantizes (§4.3)
            yield linear.tensor.name, weight
            return
        produced = emit(QUANT_INPUTS[str(self.quant_algo)](linear, weight))
        for suffix, dtype, _ in self.format.layout(linear.tensor.shape, linear.dtype, linear.group_size):
            yield f"{linear.prefix}.{suffix}", produced[suffix].to(dtype).contiguous()
