"""The AWQ scale search for linears that share one input (Lin et al. 2024, sec. 3.2).

s = mean|x|^alpha / mean|w_normalized|^(1-alpha), normalised by sqrt(max(s) * min(s)), over a grid of 20
alphas in [0, 1); the alpha that minimises the output MSE of the quantized (round-to-nearest, group int4)
linears on the calibration inputs wins. No clipping search (ModelOpt's INT4_AWQ_CFG, awq_lite, does none
either). Identity scaling (plain RTN) is also a candidate, so AWQ never loses to RTN on the calibration data.
Why our own search rather than ModelOpt's: `quant/calibrate.py`.
"""

from __future__ import annotations

import torch

from trt_build.quant.numerics import int4_group_fake_quant

AWQ_ALPHAS = tuple(i / 20 for i in range(20))


def awq_search(
    inputs: torch.Tensor,
    act_abs_mean: torch.Tensor,
    weights: list[torch.Tensor],
    group_size: int,
    alphas: tuple[float, ...] = AWQ_ALPHAS,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The AWQ scale search for linears sharing one input; returns (pre_quant_scale = 1/s, stats).

    inputs [T, in] (a sample of calibration tokens), act_abs_mean [in] (mean |x| over all tokens),
    weights: the group's [out_k, in] weights, searched jointly (their outputs concatenated).
    """
    weight = torch.cat([w.float() for w in weights], dim=0)
    x = inputs.float()
    reference = x @ weight.T
    # mean over output rows of |W| normalised by its group amax (AutoAWQ's / ModelOpt's weight statistic)
    grouped = weight.abs().reshape(weight.shape[0], -1, group_size)
    w_mean = (grouped / grouped.amax(dim=-1, keepdim=True).clamp_min(1e-12)).reshape(weight.shape).mean(0)
    x_mean = act_abs_mean.float()

    def loss_of(s: torch.Tensor) -> float:
        quantized = int4_group_fake_quant(weight * s, group_size) / s
        return (x @ quantized.T - reference).pow(2).mean().item()

    ones = torch.ones_like(x_mean)
    best_s, best_alpha, rtn_loss = ones, -1.0, loss_of(ones)
    best_loss = rtn_loss
    for alpha in alphas:
        s = (x_mean.pow(alpha) / w_mean.pow(1 - alpha).clamp_min(1e-4)).clamp_min(1e-4)
        s = s / (s.max() * s.min()).sqrt()
        loss = loss_of(s)
        if loss < best_loss:
            best_s, best_alpha, best_loss = s, alpha, loss
    pre_quant = 1.0 / best_s
    stats = {
        "alpha": best_alpha,  # -1: identity (plain round-to-nearest) was best
        "mse_rtn": rtn_loss,
        "mse_awq": best_loss,
        "pre_quant_min": pre_quant.min().item(),
        "pre_quant_max": pre_quant.max().item(),
        "pre_quant_mean": pre_quant.mean().item(),
    }
    return pre_quant, stats
