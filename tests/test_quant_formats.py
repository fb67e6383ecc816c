"""Closed-form checks of the quantized tensor formats."""

from __future__ import annotations

import pytest
import torch

from trt_build.common.errors import SwallowTrtError
from trt_build.quant import numerics as qf


def _weight(out_features: int = 8, in_features: int = 256, seed: int = 0) -> torch.Tensor:
    return torch.randn(out_features, in_features, generator=torch.Generator().manual_seed(seed)) * 0.05


def test_fp8_scale_is_amax_over_448_and_dtype() -> None:
    weight = _weight()
    weight[3, 7] = -1.792  # the amax
    scale = qf.fp8_weight_scale(weight)
    assert scale.dtype == torch.float32
    assert scale.item() == pytest.approx(1.792 / 448, rel=1e-6)
    quantized = qf.fp8_quantize(weight, scale)
    assert quantized.dtype == torch.float8_e4m3fn
    assert quantized.float().abs().max().item() == 448.0  # the amax lands exactly on the format's max


def test_fp8_dequantized_relative_error_bound() -> None:
    weight = _weight(64, 256)
    scale = qf.fp8_weight_scale(weight)
    deq = qf.fp8_dequantize(qf.fp8_quantize(weight, scale), scale)
    # e4m3 has 3 mantissa bits: relative rounding error <= 2**-4 for normals; subnormals
    # (|x/s| < 2**-6) have an absolute step of 2**-9 * s.
    bound = torch.maximum(weight.abs() * 2**-4, torch.full_like(weight, scale.item() * 2**-10))
    assert torch.all((weight - deq).abs() <= bound + 1e-9)


def test_fp8_clamps_beyond_the_scale() -> None:
    x = torch.tensor([-1000.0, -1.0, 0.0, 1.0, 1000.0])
    out = qf.fp8_fake_quant(x, torch.tensor(1.0))
    assert out.tolist() == [-448.0, -1.0, 0.0, 1.0, 448.0]


def test_shared_scale_is_the_max_of_the_parts() -> None:
    scales = [torch.tensor(0.5), torch.tensor([2.5]), 1.0]
    assert qf.shared_scale(scales).item() == 2.5
    k_scale = qf.fp8_kv_cache_scale(torch.tensor(10.0), torch.tensor(900.0))
    assert k_scale.item() == pytest.approx(900 / 448)  # above 1: the calibrated scale
    assert qf.fp8_kv_cache_scale(3.0, 4.0).item() == 1.0  # ModelOpt's floor of 1.0


def test_int4_scale_is_amax_over_7_per_row_and_group() -> None:
    weight = _weight(4, 256)
    weight[2, 130] = 0.7  # group 1 of row 2
    scales = qf.int4_group_scales(weight, 128)
    assert scales.shape == (4, 2)
    assert scales[2, 1].item() == pytest.approx(0.7 / 7)
    assert scales[0, 0].item() == pytest.approx(weight[0, :128].abs().max().item() / 7)


def test_int4_dequantized_error_within_half_a_step() -> None:
    weight = _weight(16, 512)
    scales = qf.int4_group_scales(weight, 128)
    q = qf.int4_group_quantize(weight, scales, 128)
    assert q.dtype == torch.int8 and q.min() >= -8 and q.max() <= 7
    deq = qf.int4_group_dequantize(q, scales, 128)
    step = scales.repeat_interleave(128, dim=1)
    assert torch.all((weight - deq).abs() <= step / 2 + 1e-7)


def test_pack_hand_written_bytes() -> None:
    # column 0: rows (1, -2) -> low 0x1, high 0xE -> 0xE1; rows (7, -8) -> 0x87; column 1: (0, -1) -> 0xF0
    q = torch.tensor([[1, 0], [-2, -1], [7, 3], [-8, -4]], dtype=torch.int8)
    packed = qf.pack_int4_rows(q)
    assert packed.dtype == torch.int8 and packed.shape == (2, 2)
    assert packed.view(torch.uint8).tolist() == [[0xE1, 0xF0], [0x87, 0xC3]]
    assert qf.pack_int4_rows_modelopt_hf(q).dtype == torch.uint8
    assert qf.pack_int4_rows_modelopt_hf(q).tolist() == [[0xE1, 0xF0], [0x87, 0xC3]]


def test_pack_unpack_round_trip_all_values() -> None:
    values = torch.arange(-8, 8, dtype=torch.int8)
    q = torch.stack(torch.meshgrid(values, values, indexing="ij"), dim=0).reshape(2, -1)  # every pair
    q = torch.cat([q, torch.randint(-8, 8, (6, 256), dtype=torch.int8)[:, : q.shape[1]]])
    assert torch.equal(qf.unpack_int4_rows(qf.pack_int4_rows(q)), q)
    assert torch.equal(qf.unpack_int4_rows(qf.pack_int4_rows_modelopt_hf(q)), q)


def test_pack_rejects_odd_rows_and_out_of_range() -> None:
    with pytest.raises(ValueError, match="even row count"):
        qf.pack_int4_rows(torch.zeros(3, 4, dtype=torch.int8))
    with pytest.raises(ValueError, match="int4 range"):
        qf.pack_int4_rows(torch.full((2, 4), 9, dtype=torch.int8))


def test_group_size_must_divide_the_input_dimension() -> None:
    with pytest.raises(SwallowTrtError, match="does not divide the input dimension 200"):
        qf.int4_group_scales(_weight(4, 200), 128)
    with pytest.raises(SwallowTrtError, match="group size 0"):
        qf.check_group_size(128, 0)


def test_awq_quantize_round_trip_and_tp_slices() -> None:
    weight = _weight(8, 256)
    pre_quant = torch.rand(256, generator=torch.Generator().manual_seed(1)) + 0.5
    q, scales = qf.awq_quantize(weight, pre_quant, 128)
    deq = qf.awq_dequantize(q, scales, pre_quant, 128)
    smoothed_step = scales.repeat_interleave(128, dim=1) * pre_quant  # the step in W units
    assert torch.all((weight - deq).abs() <= smoothed_step / 2 + 1e-6)
    # a row-parallel slice (split on `in`, group-aligned) quantizes exactly like the full matrix's slice
    q_half, scales_half = qf.awq_quantize(weight[:, 128:], pre_quant[128:], 128)
    assert torch.equal(q_half, q[:, 128:]) and torch.equal(scales_half, scales[:, 1:])
    # a column-parallel slice (split on `out`) too
    q_rows, _ = qf.awq_quantize(weight[4:], pre_quant, 128)
    assert torch.equal(q_rows, q[4:])


def test_fold_pre_quant_scale_into_norm_matches_explicit_multiplier() -> None:
    norm = torch.rand(16) + 0.5
    pre_quant = torch.rand(16) + 0.5
    x = torch.randn(3, 16)
    folded = qf.fold_pre_quant_scale_into_norm(norm, pre_quant)
    assert torch.allclose(x * folded, (x * norm) * pre_quant)


@pytest.mark.parametrize(("bits", "convention", "divisor"), [(8, "trtllm_build", 128), (4, "symmetric", 7)])
def test_weight_only_per_channel(bits: int, convention: str, divisor: int) -> None:
    weight = _weight(6, 64)
    scales = qf.weight_only_scales(weight, bits, convention)
    assert scales.shape == (6,)
    assert torch.allclose(scales, weight.abs().amax(dim=1) / divisor)
    fake = qf.weight_only_fake_quant(weight, bits, convention)
    low, high = qf.SIGNED_RANGE[bits]
    step = scales.unsqueeze(1)
    error = (weight - fake).abs()
    # half a step inside the range; amax / 2**(bits-1) puts a positive amax at 2**(bits-1), which the
    # engine clamps to 2**(bits-1) - 1: one full step at most there
    inside = (weight / step <= high + 0.5) & (weight / step >= low - 0.5)
    assert torch.all(error[inside] <= step.expand_as(error)[inside] / 2 + 1e-7)
    assert torch.all(error <= step + 1e-7)
    levels = torch.round(fake / scales.unsqueeze(1))
    assert levels.min() >= low and levels.max() <= high


def test_scheme_table_emits_the_spec_tensors() -> None:
    from trt_build.quant.linear import (
        LinearQuantInput,
        awq_modelopt_hf,
        awq_reference,
        awq_trtllm,
        fp8_trtllm,
        kv_cache_modelopt_hf,
        kv_cache_trtllm,
    )
    from trt_build.quant.schemes import SCHEMES

    q, k, v = _weight(16, 256, 1), _weight(4, 256, 2), _weight(4, 256, 3)
    qkv = torch.cat([q, k, v]).to(torch.bfloat16)
    weight_amax = qf.shared_scale([w.abs().amax() for w in (q, k, v)])
    fp8 = fp8_trtllm(LinearQuantInput(qkv, torch.tensor(3.5), weight_amax))
    assert fp8["weight"].dtype == torch.float8_e4m3fn and fp8["weight"].shape == (24, 256)
    assert (
        fp8["weights_scaling_factor"].shape == (1,) and fp8["weights_scaling_factor"].dtype == torch.float32
    )
    assert fp8["activation_scaling_factor"].item() == pytest.approx(3.5 / 448)
    # TP: quantizing a rank's rows with the full-matrix scale equals slicing the full quantized tensor
    rank0 = fp8_trtllm(LinearQuantInput(qkv[:12], torch.tensor(3.5), weight_amax))
    assert torch.equal(rank0["weight"].view(torch.uint8), fp8["weight"][:12].view(torch.uint8))

    pre_quant = torch.rand(256, generator=torch.Generator().manual_seed(4)) + 0.5
    awq = awq_trtllm(LinearQuantInput(qkv, pre_quant_scale=pre_quant))
    assert awq["weight"].dtype == torch.int8 and awq["weight"].shape == (12, 256)
    assert (
        awq["weights_scaling_factor"].shape == (24, 2)
        and awq["weights_scaling_factor"].dtype == torch.float32
    )
    assert awq["prequant_scaling_factor"].dtype == torch.bfloat16 and awq[
        "prequant_scaling_factor"
    ].shape == (256,)
    hf = awq_modelopt_hf(LinearQuantInput(qkv, pre_quant_scale=pre_quant))
    assert hf["weight"].dtype == torch.uint8 and torch.equal(hf["weight"].view(torch.int8), awq["weight"])
    assert (
        SCHEMES["int8_wo"].trtllm_block()["exclude_modules"] is None
    )  # the bf16 path: trtllm-build quantizes
    reference = awq_reference(LinearQuantInput(qkv, pre_quant_scale=pre_quant))
    step = awq["weights_scaling_factor"].repeat_interleave(128, dim=1) * pre_quant
    assert reference.dtype == torch.bfloat16
    assert torch.all((reference.float() - qkv.float()).abs() <= step / 2 + 1e-3)  # + bf16 rounding

    assert kv_cache_trtllm(torch.tensor(2.0), torch.tensor(3.0))["kv_cache_scaling_factor"].tolist() == [1.0]
    hf_kv = kv_cache_modelopt_hf(torch.tensor(2.0), torch.tensor(3.0))
    assert hf_kv["k_proj.k_scale"].item() == pytest.approx(2 / 448) and hf_kv["v_proj.v_scale"].shape == ()
