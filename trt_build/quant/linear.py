"""What a quantizer needs to know about one linear weight, and the weight a quantized linear computes with.

Convert's writers fill a `LinearQuantInput` from a `CalibrationResult` (amaxes of the *full* fused matrix for
FP8, the `pre_quant_scale` slice for AWQ: full for column linears, this rank's `in` slice for row linears);
each checkpoint format turns it into its own tensors (`formats/trtllm_checkpoint.py`,
`formats/modelopt_checkpoint.py`). The math is `numerics.py`.
"""

from __future__ import annotations

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


def awq_reference(p: LinearQuantInput) -> torch.Tensor:
    """The weight an AWQ linear computes with (smoothing undone), in the input weight's dtype."""
    q, scales = qf.awq_quantize(p.weight, p.pre_quant_scale, p.group_size)
    return qf.awq_dequantize(q, scales, p.pre_quant_scale, p.group_size, p.weight.dtype)
