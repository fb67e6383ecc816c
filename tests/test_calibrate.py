"""Layer-by-layer calibration on tiny models: equals a whole-model run, AWQ shares and helps."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
import torch
from safetensors.torch import load_file, save_file

from trt_build.common.errors import SwallowTrtError
from trt_build.quant import numerics as qf
from trt_build.quant.calibrate import (
    CALIB_ATTENTION,
    FUSED_GROUPS,
    LINEARS,
    CalibrationResult,
    _register_recording_attention,
    awq_search,
    calibrate,
)
from trt_build.quant.schemes import needs_calibration
from trt_build.source.tiny_model import write_tiny_model


@pytest.fixture(scope="module")
def tokens() -> torch.Tensor:
    return torch.randint(0, 128256, (5, 24), generator=torch.Generator().manual_seed(3))


@pytest.fixture(scope="module")
def awq_result(tiny_model_dir: Path, tokens: torch.Tensor) -> CalibrationResult:
    return calibrate(tiny_model_dir, "int4_awq", tokens, group_size=32, batch_size=2, show_progress=False)


def _whole_model_amax(model_dir: Path, tokens: torch.Tensor) -> dict[str, float]:
    """Hooks on the full HF model forward (the reference the layer-by-layer run must match)."""
    from transformers import AutoModelForCausalLM

    _register_recording_attention()
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config._attn_implementation = CALIB_ATTENTION
    found: dict[str, float] = {}

    def hook(name: str):
        def record(module: torch.nn.Module, args: tuple[torch.Tensor, ...]) -> None:
            found[name] = max(found.get(name, 0.0), args[0].abs().amax().item())

        return record

    for index, layer in enumerate(model.model.layers):
        for linear in LINEARS:
            layer.get_submodule(linear).register_forward_pre_hook(
                hook(f"model.layers.{index}.{linear}.input_amax")
            )
        layer.self_attn.kv_amax_recorder = {"k": 0.0, "v": 0.0}
    with torch.inference_mode():
        model(input_ids=tokens)
    for index, layer in enumerate(model.model.layers):
        found[f"model.layers.{index}.self_attn.k_amax"] = layer.self_attn.kv_amax_recorder["k"]
        found[f"model.layers.{index}.self_attn.v_amax"] = layer.self_attn.kv_amax_recorder["v"]
    return found


def test_layer_by_layer_matches_whole_model(tiny_model_dir: Path, tokens: torch.Tensor) -> None:
    result = calibrate(tiny_model_dir, "fp8", tokens, batch_size=2, show_progress=False)
    reference = _whole_model_amax(tiny_model_dir, tokens)
    assert len(reference) == 2 * (len(LINEARS) + 2)
    for name, expected in reference.items():
        assert result.tensors[name].item() == pytest.approx(expected, rel=1e-4), name
    assert "model.layers.0.self_attn.q_proj.pre_quant_scale" not in result.tensors  # fp8: max only
    # weight amax is the closed form over the stored weight
    from safetensors import safe_open

    with safe_open(tiny_model_dir / "model.safetensors", framework="pt") as handle:
        weight = handle.get_tensor("model.layers.1.mlp.down_proj.weight")
    assert result.weight_amax(1, "mlp.down_proj").item() == weight.abs().amax().float().item()
    assert result.group_input_amax(0, "qkv") == result.input_amax(0, "self_attn.q_proj")


def test_sharded_checkpoint_gives_the_same_result(
    tmp_path: Path, tiny_model_dir: Path, tokens: torch.Tensor
) -> None:
    sharded = write_tiny_model(tmp_path / "sharded", seed=0, max_shard_bytes=1 << 20)
    assert (sharded / "model.safetensors.index.json").is_file()
    one = calibrate(tiny_model_dir, "fp8", tokens[:2], show_progress=False)
    two = calibrate(sharded, "fp8", tokens[:2], show_progress=False)
    assert one.tensors.keys() == two.tensors.keys()
    assert all(torch.equal(one.tensors[k], two.tensors[k]) for k in one.tensors)
    # shards without an index are read like convert reads them
    (sharded / "model.safetensors.index.json").unlink()
    assert len(list(sharded.glob("*.safetensors"))) >= 2
    three = calibrate(sharded, "fp8", tokens[:2], show_progress=False)
    assert all(torch.equal(one.tensors[k], three.tensors[k]) for k in one.tensors)


def test_awq_pre_quant_scale_shared_by_fused_linears(awq_result: CalibrationResult) -> None:
    for layer in range(2):
        for group, members in FUSED_GROUPS.items():
            scales = [awq_result.pre_quant_scale(layer, m) for m in members]
            assert all(torch.equal(scales[0], s) for s in scales), group
            assert torch.all(scales[0] > 0)
        assert awq_result.pre_quant_scale(layer, "self_attn.q_proj").shape == (64,)
        assert awq_result.pre_quant_scale(layer, "mlp.down_proj").shape == (128,)
        stats = awq_result.stats[str(layer)]
        assert all(stats[g]["mse_awq"] <= stats[g]["mse_rtn"] for g in FUSED_GROUPS)
    assert awq_result.info["group_size"] == 32


def test_awq_beats_round_to_nearest_with_outlier_channels() -> None:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(512, 256, generator=generator)
    x[:, [5, 77, 190]] *= 30.0  # a few salient input channels, as in LLM activations
    weights = [
        torch.randn(96, 256, generator=generator) * 0.02,
        torch.randn(32, 256, generator=generator) * 0.02,
    ]
    pre_quant, stats = awq_search(x, x.abs().mean(0), weights, group_size=128)
    assert stats["alpha"] >= 0  # a real scaling won, not the identity

    def output_error(w: torch.Tensor, quantized: torch.Tensor) -> float:
        return (x @ quantized.T - x @ w.T).pow(2).mean().item()

    for w in weights:  # checked independently of the search, through the format functions
        rtn = qf.int4_group_fake_quant(w, 128)
        q, scales = qf.awq_quantize(w, pre_quant, 128)
        awq = qf.awq_dequantize(q, scales, pre_quant, 128)
        assert output_error(w, awq) < 0.8 * output_error(w, rtn)


def test_save_and_load_round_trip(tmp_path: Path, awq_result: CalibrationResult) -> None:
    awq_result.save(tmp_path)
    loaded = CalibrationResult.load(tmp_path)
    assert loaded.scheme == "int4_awq" and loaded.num_layers == 2
    assert loaded.tensors.keys() == awq_result.tensors.keys()
    assert all(torch.equal(loaded.tensors[k], awq_result.tensors[k]) for k in loaded.tensors)
    assert loaded.stats == awq_result.stats


def test_bad_inputs_are_clear_errors(tiny_model_dir: Path, tokens: torch.Tensor) -> None:
    with pytest.raises(SwallowTrtError, match="group size 48 does not divide the input dimension"):
        calibrate(tiny_model_dir, "int4_awq", tokens, group_size=48, show_progress=False)
    with pytest.raises(click.ClickException, match="exceeds the model's context"):
        calibrate(tiny_model_dir, "fp8", torch.zeros(1, 131073, dtype=torch.long), show_progress=False)
    with pytest.raises(SwallowTrtError, match="unknown quantization scheme"):
        calibrate(tiny_model_dir, "int3", tokens, show_progress=False)


def test_missing_weights_is_a_clear_error(tmp_path: Path, tiny_model_dir: Path, tokens: torch.Tensor) -> None:
    (tmp_path / "config.json").write_text((tiny_model_dir / "config.json").read_text())
    with pytest.raises(click.ClickException, match=r"no \*.safetensors files"):
        calibrate(tmp_path, "fp8", tokens, show_progress=False)
    (tmp_path / "pytorch_model.bin").write_bytes(b"never loaded")
    with pytest.raises(click.ClickException, match="pickle.*execute arbitrary code"):
        calibrate(tmp_path, "fp8", tokens, show_progress=False)


def test_damaged_or_mismatched_weights_are_refused(tmp_path: Path, tokens: torch.Tensor) -> None:
    """The checks of convert's reader apply to calibration too: inf/NaN values, shapes against config."""
    model = write_tiny_model(tmp_path / "model", seed=2)
    tensors = load_file(model / "model.safetensors")
    tensors["model.layers.1.mlp.up_proj.weight"][0, 0] = float("nan")
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(
        click.ClickException, match=r"model.layers.1.mlp.up_proj.weight .*inf/NaN values \(1 of "
    ):
        calibrate(model, "fp8", tokens[:1], show_progress=False)
    tensors["model.layers.1.mlp.up_proj.weight"] = tensors["model.layers.1.mlp.up_proj.weight"][:64]
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(click.ClickException, match="config.json implies"):
        calibrate(model, "fp8", tokens[:1], show_progress=False)


def test_needs_calibration_table() -> None:
    assert needs_calibration("fp8") and needs_calibration("int4_awq")
    assert not needs_calibration("int8_wo") and not needs_calibration("none")
    assert needs_calibration("int4_wo", kv_cache_dtype="fp8")
