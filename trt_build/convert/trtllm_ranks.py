"""One rank file of a conversion that makes new values (a cast, or linears quantized from a calibration): tensors
are read in the checkpoint dtype with torch, then quantized per `quant_algo` (`trtllm_linears`), one group at a
time. A conversion that changes no value writes its ranks without torch (`trtllm_writer.CopiedRank`).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from trt_build.convert.streaming import row_blocks
from trt_build.convert.trtllm_linears import LinearWeight, RankLinears
from trt_build.formats.safetensors_stream import TensorSpec
from trt_build.formats.trtllm_checkpoint import kv_cache_scale, kv_cache_scale_name
from trt_build.parallel.weight_map import RankTensor, Split
from trt_build.quant.calibration_result import CalibrationResult
from trt_build.source.checkpoint import SourceCheckpoint


@dataclass(frozen=True)
class RankJob:
    """Everything that decides one rank file: its layout is a function of this alone."""

    rank: int
    tp_rank: int
    plan: list[RankTensor]
    dtype: torch.dtype
    linears: RankLinears
    source: SourceCheckpoint
    calibration: CalibrationResult | None = None
    group_size: int = 128
    fp8_kv_cache: bool = False  # add attention.kv_cache_scaling_factor after each layer's qkv

    def linear(self, tensor: RankTensor) -> LinearWeight:
        return LinearWeight(tensor, self.dtype, self.tp_rank, self.calibration, self.group_size)

    def _kv_scale_name(self, tensor: RankTensor) -> str | None:
        """The KV cache scale that follows this tensor (the qkv of a layer), if any."""
        if not (self.fp8_kv_cache and tensor.rule.split is Split.QKV):
            return None
        return kv_cache_scale_name(tensor.name.removesuffix(".weight"))

    def layout(self) -> list[TensorSpec]:
        """Every (name, dtype, shape) of the rank file, computed before any data is read."""
        specs: list[TensorSpec] = []
        for tensor in self.plan:
            if tensor.rule.linear:
                specs += self.linears.layout(self.linear(tensor))
            else:
                specs.append((tensor.name, self.dtype, tensor.shape))
            if kv_name := self._kv_scale_name(tensor):
                specs.append((kv_name, torch.float32, (1,)))
        return specs

    def tensors(self) -> Iterator[tuple[str, torch.Tensor]]:
        """(name, tensor) in layout order; large plain tensors come as consecutive row blocks."""
        for tensor in self.plan:
            if tensor.rule.linear:
                parts = [self.source.read(piece, dtype=self.dtype) for piece in tensor.slices]
                weight = parts[0] if len(parts) == 1 else torch.cat(parts)
                del parts
                yield from self.linears.tensors(self.linear(tensor), weight)
                del weight
                if kv_name := self._kv_scale_name(tensor):
                    assert self.calibration is not None
                    yield kv_name, kv_cache_scale(*self.calibration.kv_amax(tensor.layer))
            else:
                for piece in tensor.slices:
                    for block in row_blocks(self.source, piece, self.dtype):
                        yield tensor.name, block
